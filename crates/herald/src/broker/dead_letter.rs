//! Dead letters: queue messages that will not be redelivered again.
//!
//! A queue message given back by its consumer (NACK, or its session ended or
//! unsubscribed before an ACK) is redelivered at most `broker.max_redeliveries`
//! times; given back once more, or NACKed with `requeue:false`, it becomes a dead
//! letter. A dead letter is a new message on the dead-letter queue
//! (`broker.dead_letter`), with the body and sender headers of the original and
//! headers saying where it came from and why. It is published like any other: the
//! dead-letter queue's budgets apply, and a full one drops it. A message that is in a
//! dead-letter queue already is dropped rather than dead-lettered again, so nothing
//! circles between `dlq.` queues; so is every dead letter when `broker.dead_letter`
//! is empty. Both outcomes are counted (`herald_messages_dead_lettered_total`).

use herald_stomp::Headers;

use super::config::BrokerConfig;
use crate::message::{Kind, Message, Target};

/// The destination the message was published to.
pub const ORIGINAL_DESTINATION: &str = "original-destination";
/// The original's `message-id`.
pub const ORIGINAL_MESSAGE_ID: &str = "original-message-id";
/// Why it was dead-lettered: a [`Reason`].
pub const REASON: &str = "dead-letter-reason";
/// How many times it was delivered and given back.
pub const DELIVERY_COUNT: &str = "delivery-count";

/// Why a message became a dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A consumer NACKed it with `requeue:false`.
    Rejected,
    /// It was given back more than `broker.max_redeliveries` times.
    MaxRedeliveries,
}

impl Reason {
    /// The `dead-letter-reason` header value and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "nack",
            Reason::MaxRedeliveries => "max-redeliveries",
        }
    }
}

/// Where the dead letters of each queue go (`broker.dead_letter`).
#[derive(Clone, Debug)]
pub struct DeadLetters {
    queue_prefixes: Vec<String>,
    setting: String,
}

impl DeadLetters {
    pub fn new(config: &BrokerConfig) -> DeadLetters {
        DeadLetters {
            queue_prefixes: config.queue_prefixes.clone(),
            setting: config.dead_letter.clone(),
        }
    }

    /// Whether `broker.dead_letter` names queues dead letters can go to: a name part
    /// without wildcards, or a queue destination. The problem otherwise.
    pub fn check(config: &BrokerConfig) -> Result<(), String> {
        let d = config.dead_letter.as_str();
        if d.is_empty() {
            return Ok(());
        }
        if d.chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '*' | '#'))
        {
            return Err(format!(
                "'{d}' may not hold wildcards, spaces or control characters"
            ));
        }
        if d.starts_with('/') {
            let routed = config
                .queue_prefixes
                .iter()
                .any(|p| d.len() > p.len() && d.starts_with(p.as_str()));
            if !routed {
                return Err(format!(
                    "'{d}' is not a queue: it must start with a queue prefix (broker.queue_prefixes: {}) and name a queue, or be a name part like \"dlq.\", or \"\" to drop dead letters",
                    config.queue_prefixes.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The dead-letter queue of queue `key`; `None` when its dead letters are dropped
    /// (dead-lettering is off, or `key` is a dead-letter queue itself).
    pub fn queue_for(&self, key: &str) -> Option<String> {
        let d = self.setting.as_str();
        if d.is_empty() {
            return None;
        }
        if d.starts_with('/') {
            return (key != d).then(|| d.to_owned());
        }
        let (prefix, name) = self
            .queue_prefixes
            .iter()
            .find_map(|p| Some((p, key.strip_prefix(p.as_str())?)))?;
        if name.starts_with(d) {
            return None;
        }
        Some(format!("{prefix}{d}{name}"))
    }
}

/// The dead letter of `original` on queue `queue`: its body, content type and sender
/// headers, plus where it came from and why.
pub fn letter(original: &Message, queue: String, reason: Reason, id: String) -> Message {
    let mut headers: Headers = original
        .headers
        .iter()
        .filter(|(k, _)| {
            ![
                ORIGINAL_DESTINATION,
                ORIGINAL_MESSAGE_ID,
                REASON,
                DELIVERY_COUNT,
            ]
            .contains(k)
        })
        .collect();
    headers.push(ORIGINAL_DESTINATION, original.destination.as_str());
    headers.push(ORIGINAL_MESSAGE_ID, original.id.as_str());
    headers.push(REASON, reason.as_str());
    headers.push(DELIVERY_COUNT, original.given_back().to_string());
    let Target {
        kind,
        key,
        destination,
    } = Target::broker(Kind::Queue, &queue);
    Message::from_parts(
        id,
        kind,
        key,
        destination,
        original.content_type.clone(),
        headers,
        original.body.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn config(dead_letter: &str) -> BrokerConfig {
        BrokerConfig {
            queue_prefixes: vec!["/queue/".into(), "/jobs/".into()],
            dead_letter: dead_letter.into(),
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn a_name_part_goes_after_the_queue_prefix_and_never_twice() {
        let d = DeadLetters::new(&config("dlq."));
        assert_eq!(
            d.queue_for("/queue/orders").as_deref(),
            Some("/queue/dlq.orders")
        );
        assert_eq!(
            d.queue_for("/jobs/eu.daily").as_deref(),
            Some("/jobs/dlq.eu.daily"),
            "each queue prefix keeps its dead letters"
        );
        assert_eq!(
            d.queue_for("/queue/dlq.orders"),
            None,
            "a DLQ's are dropped"
        );
        assert_eq!(d.queue_for("/topic/x"), None);
    }

    #[test]
    fn a_destination_is_one_queue_for_all_and_empty_drops() {
        let d = DeadLetters::new(&config("/queue/dead-letters"));
        assert_eq!(
            d.queue_for("/jobs/a").as_deref(),
            Some("/queue/dead-letters")
        );
        assert_eq!(d.queue_for("/queue/dead-letters"), None);
        assert_eq!(DeadLetters::new(&config("")).queue_for("/queue/a"), None);
    }

    #[test]
    fn settings_that_route_nowhere_are_refused() {
        for ok in ["", "dlq.", "dead/", "/queue/dlq", "/jobs/dead"] {
            assert_eq!(DeadLetters::check(&config(ok)), Ok(()), "{ok}");
        }
        for bad in ["/topic/dlq", "/queue/", "/elsewhere", "dlq.*", "d l q", "#"] {
            assert!(DeadLetters::check(&config(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_letter_keeps_the_body_and_sender_headers_and_says_why() {
        let sent: Headers = [
            ("content-type", "text/plain"),
            ("x-order", "42"),
            (REASON, "forged"),
        ]
        .into_iter()
        .collect();
        let m = Message::new(
            "n-7".into(),
            Target::broker(Kind::Queue, "/queue/orders"),
            &sent,
            Bytes::from_static(b"poison"),
        );
        m.give_back();
        m.give_back();
        let l = letter(
            &m,
            "/queue/dlq.orders".into(),
            Reason::MaxRedeliveries,
            "n-8".into(),
        );
        assert_eq!(
            (l.kind, l.key.as_str(), l.destination.as_str()),
            (Kind::Queue, "/queue/dlq.orders", "/queue/dlq.orders")
        );
        assert_eq!(&l.body[..], b"poison");
        assert_eq!(l.content_type.as_deref(), Some("text/plain"));
        assert_eq!(l.headers.get("x-order"), Some("42"));
        assert_eq!(l.headers.get(ORIGINAL_DESTINATION), Some("/queue/orders"));
        assert_eq!(l.headers.get(ORIGINAL_MESSAGE_ID), Some("n-7"));
        assert_eq!(l.headers.get(REASON), Some("max-redeliveries"));
        assert_eq!(l.headers.get(DELIVERY_COUNT), Some("2"));
        assert_eq!(l.headers.iter().filter(|(k, _)| *k == REASON).count(), 1);
        assert!(
            !l.redelivered(),
            "a letter's first delivery is a first delivery"
        );
    }
}
