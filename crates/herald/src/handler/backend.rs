//! The HTTP backend proxy: a team's existing service (any language) owns application
//! destinations. Herald POSTs each SEND as JSON and publishes what the backend answers.
//!
//! Request:  `{"frame": "SEND", "destination", "path", "headers": {..}, "body": "...",
//! "user", "roles", "session"}`
//! Response: 2xx with `{"messages": [{"destination", "body", "headers"?, "user"?}]}` (or a
//! bare array, or 204 / empty for nothing). `body` may be a string (sent as is) or any
//! JSON value (serialized, `content-type: application/json`); with `user`, the message
//! goes to that user's destination (`/queue/x` of `user`). A non-2xx answer's
//! `{"error": "..."}` (or its text) and a timeout reach the sender as its error.
//!
//! A SUBSCRIBE to a destination the backend owns (Spring's `@SubscribeMapping`) is
//! posted the same way with `"frame": "SUBSCRIBE"`, `"subscription": <id>` and an empty
//! body; the answer's messages without a `destination` (or with the subscribed one) go
//! to that subscription alone, once; others are published as for a SEND.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use herald_stomp::Headers;
use serde::{Deserialize, Serialize};

use super::config::BackendConfig;
use super::{BoxFuture, Call, HandlerError, Reply, ReplyTarget};
use crate::destination::Pattern;

#[derive(Debug)]
pub struct Backend {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
    patterns: Vec<Pattern>,
}

#[derive(Serialize)]
struct Outgoing<'a> {
    /// "SEND", or "SUBSCRIBE" for a subscription the answer is for.
    frame: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription: Option<&'a str>,
    destination: &'a str,
    path: &'a str,
    headers: BTreeMap<&'a str, &'a str>,
    body: String,
    user: &'a str,
    roles: &'a [String],
    session: &'a str,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Answer {
    Wrapped { messages: Vec<Outbound> },
    Bare(Vec<Outbound>),
}

#[derive(Deserialize)]
struct Outbound {
    /// Empty: the subscription a SUBSCRIBE's answer is for.
    #[serde(default)]
    destination: String,
    body: serde_json::Value,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    user: Option<String>,
}

impl Backend {
    /// `None` when no backend URL is configured.
    pub fn new(cfg: &BackendConfig) -> Option<Backend> {
        if cfg.url.is_empty() {
            return None;
        }
        Some(Backend {
            client: reqwest::Client::builder()
                .connect_timeout(cfg.timeout)
                .build()
                .expect("HTTP client"),
            url: cfg.url.clone(),
            timeout: cfg.timeout,
            patterns: cfg.destinations.iter().map(|p| Pattern::path(p)).collect(),
        })
    }

    pub fn owns(&self, path: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(path))
    }

    pub fn call(&self, call: Call) -> BoxFuture<Result<Vec<Reply>, HandlerError>> {
        self.post(call, None)
    }

    /// A SUBSCRIBE of subscription `id`: what the backend answers for it goes to it.
    pub fn call_subscribe(
        &self,
        call: Call,
        id: &str,
    ) -> BoxFuture<Result<Vec<Reply>, HandlerError>> {
        self.post(call, Some(id))
    }

    fn post(
        &self,
        call: Call,
        subscription: Option<&str>,
    ) -> BoxFuture<Result<Vec<Reply>, HandlerError>> {
        let outgoing = Outgoing {
            frame: if subscription.is_some() {
                "SUBSCRIBE"
            } else {
                "SEND"
            },
            subscription,
            destination: &call.destination,
            path: &call.path,
            headers: call.headers.iter_first().collect(),
            body: String::from_utf8_lossy(&call.body).into_owned(),
            user: &call.session.principal.name,
            roles: &call.session.principal.roles,
            session: &call.session.id,
        };
        let request = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .json(&outgoing);
        let (destination, timeout) = (call.destination.clone(), self.timeout);
        let subscribing = subscription.is_some();
        Box::pin(async move {
            let response = request.send().await.map_err(|e| {
                if e.is_timeout() {
                    HandlerError::new(format!(
                        "backend for {destination} timed out after {timeout:?}"
                    ))
                } else {
                    HandlerError::new(format!("backend for {destination} unreachable: {e}"))
                }
            })?;
            let status = response.status();
            let text = response.text().await.map_err(|e| {
                HandlerError::new(format!(
                    "backend for {destination} answered unreadably: {e}"
                ))
            })?;
            if !status.is_success() {
                let reason = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| text.chars().take(200).collect());
                return Err(HandlerError::new(format!(
                    "backend for {destination} answered {}: {reason}",
                    status.as_u16()
                )));
            }
            if text.trim().is_empty() {
                return Ok(Vec::new());
            }
            let answer: Answer = serde_json::from_str(&text).map_err(|e| {
                HandlerError::new(format!(
                    "backend for {destination} answered invalid JSON: {e}"
                ))
            })?;
            let messages = match answer {
                Answer::Wrapped { messages } | Answer::Bare(messages) => messages,
            };
            messages
                .into_iter()
                .map(|m| {
                    let to_subscriber = subscribing
                        && m.user.is_none()
                        && (m.destination.is_empty() || m.destination == destination);
                    if m.destination.is_empty() && !to_subscriber {
                        return Err(HandlerError::new(format!(
                            "backend for {destination} answered a message without a destination"
                        )));
                    }
                    Ok(to_reply(m, to_subscriber))
                })
                .collect()
        })
    }
}

fn to_reply(m: Outbound, to_subscriber: bool) -> Reply {
    let mut headers: Headers = m.headers.into_iter().collect();
    let body = match m.body {
        serde_json::Value::String(s) => {
            if !headers.contains("content-type") {
                headers.push("content-type", "text/plain;charset=UTF-8");
            }
            Bytes::from(s)
        }
        other => {
            if !headers.contains("content-type") {
                headers.push("content-type", "application/json");
            }
            Bytes::from(other.to_string())
        }
    };
    let target = match m.user {
        _ if to_subscriber => ReplyTarget::Subscriber,
        Some(user) => ReplyTarget::User {
            user,
            destination: m.destination,
        },
        None => ReplyTarget::Destination(m.destination),
    };
    Reply {
        target,
        headers,
        body,
    }
}
