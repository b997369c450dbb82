//! The STOMP side as a contract: an AsyncAPI 3.0 document at `GET /api/asyncapi.json`,
//! made from this server's configuration (its destinations are settings): where to
//! connect, the destinations the server itself publishes to and takes SENDs at
//! (notifications, read events, job progress, broadcasts; the demo apps' chat, rooms
//! and greeting), their payload schemas, and the rules that guard them.
//!
//! The notification's schema is the one the OpenAPI document has, taken from it, so
//! the REST and the live shapes cannot part.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::transport::Context;

/// This server's AsyncAPI document.
#[utoipa::path(
    get, path = "/api/asyncapi.json", tag = "operations",
    responses((status = 200, description = "AsyncAPI 3.0 of the STOMP destinations", content_type = "application/json", body = Object)),
)]
pub(crate) async fn spec(State(state): State<Context>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document(&state.node.config).to_string(),
    )
}

/// One destination: its address, what the server does there, the messages it carries.
struct Channel {
    id: &'static str,
    address: String,
    description: String,
    messages: &'static [&'static str],
    /// `receive`: clients SUBSCRIBE; `send`: clients SEND.
    action: &'static str,
    rule: String,
}

/// The document for `config`.
pub(crate) fn document(config: &Config) -> Value {
    let user = &config.routing.user_prefix;
    let topics = config
        .broker
        .topic_prefixes
        .first()
        .cloned()
        .unwrap_or_default();
    let queues = config
        .broker
        .queue_prefixes
        .first()
        .cloned()
        .unwrap_or_else(|| topics.clone());
    let apps: Vec<&String> = config.routing.app_prefixes.iter().collect();
    let app = apps
        .first()
        .map(|p| p.trim_end_matches('/'))
        .unwrap_or("/app");
    let (service, admin) = (&config.auth.service_role, &config.auth.admin_role);
    let server_only = format!(
        "SEND only by `auth.service_role` ({service}) or `auth.admin_role` ({admin}): the server's own destination (a reserved rule, before `auth.rules`); what arrives here is the server's word"
    );
    let own =
        format!("SUBSCRIBE by anyone authenticated as the user: `{user}…` is the subscriber's own");

    let mut channels = vec![Channel {
        id: "token",
        address: crate::session::refresh::TOKEN_DESTINATION.to_owned(),
        description: "A fresh token for the live session, before its own expires: the token in a `token` header (or `Authorization: Bearer …`), no body, best with a `receipt`. The session's roles and expiry become the new token's; a token that does not verify, has expired or names another user is an ERROR that ends the session".into(),
        messages: &["tokenRefresh"],
        action: "send",
        rule: "SEND by a session that connected with a token, naming its own user".into(),
    }];
    let n = &config.notifications;
    if n.enabled {
        let user_dest = |d: &str| format!("{}{}", user.trim_end_matches('/'), d);
        channels.push(Channel {
            id: "notifications",
            address: user_dest(&n.destination),
            description: format!(
                "The user's notifications as they are stored (`POST /api/notifications`), and read events when one of the user's sessions marks some read (`herald-event: notification | read`). Published to `{user}{{user}}{}`.",
                n.destination
            ),
            messages: &["notification", "read"],
            action: "receive",
            rule: format!("{own}. {server_only}."),
        });
        channels.push(Channel {
            id: "jobs",
            address: user_dest(&n.jobs_destination),
            description:
                "Progress of the user's jobs (`POST /api/jobs/{id}/progress`, `herald-event: job`)"
                    .into(),
            messages: &["job"],
            action: "receive",
            rule: format!("{own}. {server_only}."),
        });
        channels.push(Channel {
            id: "broadcasts",
            address: n.broadcast_destination.clone(),
            description: "Notifications to everyone (`\"broadcast\": true`)".into(),
            messages: &["notification"],
            action: "receive",
            rule: format!("SUBSCRIBE by anyone the rules admit. {server_only}."),
        });
    }
    if config.apps.demo {
        channels.extend([
            Channel {
                id: "chatSend",
                address: format!("{app}/chat.send"),
                description: format!("A chat message to everyone on `{topics}chat`; the sender is the session's principal"),
                messages: &["chatSend"],
                action: "send",
                rule: "SEND by anyone the rules admit (application destination)".into(),
            },
            Channel {
                id: "chat",
                address: format!("{topics}chat"),
                description: "The public chat".into(),
                messages: &["chatMessage"],
                action: "receive",
                rule: "SUBSCRIBE by anyone the rules admit".into(),
            },
            Channel {
                id: "chatPrivate",
                address: format!("{app}/chat.private"),
                description: format!("A private message to `recipient`'s `{user}{queues}messages`"),
                messages: &["chatPrivate"],
                action: "send",
                rule: "SEND by anyone the rules admit (application destination)".into(),
            },
            Channel {
                id: "privateMessages",
                address: format!("{}{queues}messages", user.trim_end_matches('/')),
                description: "Private messages to the user".into(),
                messages: &["chatMessage"],
                action: "receive",
                rule: format!("{own}. SEND to `{user}{{user}}/**` by its owner, a service or an admin (a default rule)"),
            },
            Channel {
                id: "roomJoin",
                address: format!("{app}/chat/join"),
                description: "Join a room (`/api/rooms`); its topic gets a `JOIN` event".into(),
                messages: &["roomCommand"],
                action: "send",
                rule: "SEND by anyone the rules admit".into(),
            },
            Channel {
                id: "roomMessage",
                address: format!("{app}/chat/message"),
                description: "Talk in a room one has joined".into(),
                messages: &["roomMessage"],
                action: "send",
                rule: "SEND by anyone the rules admit".into(),
            },
            Channel {
                id: "roomLeave",
                address: format!("{app}/chat/leave"),
                description: "Leave a room; its topic gets a `LEAVE` event".into(),
                messages: &["roomCommand"],
                action: "send",
                rule: "SEND by anyone the rules admit".into(),
            },
            Channel {
                id: "room",
                address: format!("{topics}chat/room/{{roomId}}"),
                description: "A room's events: who joined or left, and what was said".into(),
                messages: &["roomEvent"],
                action: "receive",
                rule: "SUBSCRIBE by anyone the rules admit".into(),
            },
            Channel {
                id: "roomSnapshot",
                address: format!("{app}/chat/rooms/{{roomId}}"),
                description: "SUBSCRIBE to open a room: answered once, to this subscription alone, with the room, its members and its recent messages (then subscribe to its topic for the live events)".into(),
                messages: &["roomSnapshot"],
                action: "receive",
                rule: "SUBSCRIBE by anyone the rules admit (answered by the rooms' subscribe handler)".into(),
            },
            Channel {
                id: "hello",
                address: format!("{app}/hello"),
                description: format!("Spring's greeting guide: answered on `{topics}greetings`"),
                messages: &["hello"],
                action: "send",
                rule: "SEND by anyone the rules admit".into(),
            },
            Channel {
                id: "greetings",
                address: format!("{topics}greetings"),
                description: "Greetings".into(),
                messages: &["greeting"],
                action: "receive",
                rule: "SUBSCRIBE by anyone the rules admit".into(),
            },
        ]);
    }

    let mut channel_map = Map::new();
    let mut operations = Map::new();
    for c in &channels {
        let messages: Map<String, Value> = c
            .messages
            .iter()
            .map(|m| {
                (
                    m.to_string(),
                    json!({ "$ref": format!("#/components/messages/{m}") }),
                )
            })
            .collect();
        let mut channel = json!({
            "address": c.address,
            "description": c.description,
            "messages": messages,
        });
        if c.address.contains("{roomId}") {
            channel["parameters"] =
                json!({ "roomId": { "description": "The room's id (`GET /api/rooms`)" } });
        }
        channel_map.insert(c.id.to_owned(), channel);
        let verb = if c.action == "receive" {
            "SUBSCRIBE to"
        } else {
            "SEND to"
        };
        operations.insert(
            format!("{}{}", c.action, capitalized(c.id)),
            json!({
                "action": c.action,
                "channel": { "$ref": format!("#/channels/{}", c.id) },
                "summary": format!("{verb} {}", c.address),
                "description": format!("Rules: {}.", c.rule.trim_end_matches('.')),
                "messages": c.messages.iter().map(|m| json!({ "$ref": format!("#/channels/{}/messages/{m}", c.id) })).collect::<Vec<_>>(),
            }),
        );
    }

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Herald STOMP destinations",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "STOMP 1.0, 1.1 and 1.2 over WebSocket, SockJS and TCP. A client CONNECTs (a token in the CONNECT `Authorization` or `passcode` header, or at the handshake), then SUBSCRIBEs and SENDs. Destinations start with a topic prefix ({}), a queue prefix ({}), an application prefix ({}) or the user prefix (`{user}`: SUBSCRIBE `{user}queue/x` receives what is sent to `{user}{{name}}/queue/x`). Rules (`auth.rules`, first match wins, between the reserved rules and the default ones) decide who may SUBSCRIBE or SEND where; a refusal is an ERROR frame. Headers named `herald-*` are the server's: a SEND carrying one is refused. These are the destinations the server itself serves; applications add their own.",
                config.broker.topic_prefixes.join(", "),
                config.broker.queue_prefixes.join(", "),
                config.routing.app_prefixes.join(", "),
            ),
        },
        "defaultContentType": "application/json",
        "servers": servers(config),
        "channels": channel_map,
        "operations": operations,
        "components": { "messages": messages(), "schemas": schemas() },
    })
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn servers(config: &Config) -> Value {
    let http = config.server.http.port();
    let mut servers = Map::new();
    for (i, path) in config.server.websocket_paths.iter().enumerate() {
        let id = if i == 0 {
            "websocket".to_owned()
        } else {
            format!("websocket{}", i + 1)
        };
        servers.insert(
            id,
            json!({
                "host": format!("localhost:{http}"),
                "protocol": "ws",
                "pathname": path,
                "description": "STOMP over WebSocket: subprotocols v12.stomp, v11.stomp, v10.stomp (none: 1.0 by the CONNECT's accept-version)",
            }),
        );
    }
    if config.sockjs.enabled {
        servers.insert(
            "sockjs".into(),
            json!({
                "host": format!("localhost:{http}"),
                "protocol": "http",
                "pathname": config.sockjs.path,
                "description": "STOMP over SockJS 0.3.3 (sockjs-client 1.6)",
            }),
        );
    }
    if let Some(stomp) = config.server.stomp {
        servers.insert(
            "tcp".into(),
            json!({
                "host": format!("localhost:{}", stomp.port()),
                "protocol": "stomp",
                "description": "STOMP over TCP",
            }),
        );
    }
    Value::Object(servers)
}

fn message(name: &str, title: &str, event: Option<&str>, schema: &str) -> Value {
    let mut m = json!({
        "name": name,
        "title": title,
        "payload": { "$ref": format!("#/components/schemas/{schema}") },
    });
    if let Some(event) = event {
        m["headers"] = json!({
            "type": "object",
            "properties": { "herald-event": { "const": event, "description": "Set by the server only" } },
            "required": ["herald-event"],
        });
    }
    m
}

fn messages() -> Value {
    json!({
        "notification": message("notification", "A stored notification", Some("notification"), "Notification"),
        "read": message("read", "Notifications marked read on one of the user's sessions", Some("read"), "ReadEvent"),
        "job": message("job", "A job's progress", Some("job"), "JobEvent"),
        "chatSend": message("chatSend", "A chat message", None, "ChatSend"),
        "chatPrivate": message("chatPrivate", "A private chat message", None, "ChatPrivate"),
        "chatMessage": message("chatMessage", "A chat message, stamped by the server", None, "ChatMessage"),
        "roomCommand": message("roomCommand", "Join or leave a room", None, "RoomCommand"),
        "roomMessage": message("roomMessage", "Talk in a room", None, "RoomMessage"),
        "roomEvent": message("roomEvent", "A room's event", None, "RoomEvent"),
        "hello": message("hello", "A name to greet", None, "Hello"),
        "greeting": message("greeting", "A greeting", None, "Greeting"),
        "roomSnapshot": message("roomSnapshot", "A room as a page opens it", None, "RoomSnapshot"),
        "tokenRefresh": {
            "name": "tokenRefresh",
            "title": "A fresh token",
            "headers": {
                "type": "object",
                "properties": {
                    "token": { "type": "string", "description": "The JWT (or `Authorization: Bearer <JWT>`, or `passcode`)" },
                    "receipt": { "type": "string", "description": "Answered by a RECEIPT once the token is taken" },
                },
            },
            "payload": { "type": "string", "maxLength": 0 },
        },
    })
}

/// The notification as the OpenAPI document has it (`notify::View`): one schema for
/// the REST API and the live message.
fn notification_schema() -> Value {
    let openapi: Value = serde_json::from_str(super::openapi::document()).unwrap_or_default();
    let mut schema = openapi["components"]["schemas"]["Notification"].clone();
    if let Some(event) = schema.pointer_mut("/properties/event") {
        *event = json!({ "const": "notification", "description": "Set on live messages only" });
    }
    schema
}

fn schemas() -> Value {
    let string = json!({ "type": "string" });
    json!({
        "Notification": notification_schema(),
        "ReadEvent": {
            "type": "object",
            "required": ["event", "type", "memberId", "ids", "unreadCount", "all"],
            "properties": {
                "event": { "const": "read" },
                "type": { "const": "read" },
                "memberId": string,
                "ids": { "type": "array", "items": { "type": "integer" }, "description": "The notifications now read" },
                "unreadCount": { "type": "integer" },
                "all": { "type": "boolean", "description": "Everything was marked read" },
            },
        },
        "JobEvent": {
            "type": "object",
            "required": ["event", "jobId", "memberId", "percent", "status"],
            "properties": {
                "event": { "const": "job" },
                "jobId": string,
                "memberId": string,
                "percent": { "type": "number", "minimum": 0, "maximum": 100 },
                "status": { "type": "string", "description": "`done` and `failed` are final and stored as a notification" },
                "result": { "description": "What the job reported, any JSON" },
                "notificationId": { "type": ["integer", "null"] },
            },
        },
        "ChatSend": {
            "type": "object", "required": ["content"],
            "properties": { "content": string },
        },
        "ChatPrivate": {
            "type": "object", "required": ["recipient", "content"],
            "properties": { "recipient": { "type": "string", "minLength": 1 }, "content": string },
        },
        "ChatMessage": {
            "type": "object", "required": ["sender", "content", "timestamp"],
            "properties": {
                "sender": { "type": "string", "description": "The sending session's principal" },
                "recipient": string,
                "content": string,
                "timestamp": { "type": "string", "format": "date-time" },
            },
        },
        "RoomCommand": {
            "type": "object", "required": ["chatRoomId"],
            "properties": { "chatRoomId": string },
        },
        "RoomMessage": {
            "type": "object", "required": ["chatRoomId", "message"],
            "properties": { "chatRoomId": string, "message": string },
        },
        "RoomEvent": {
            "type": "object",
            "required": ["type", "chatRoomId", "writer", "message", "timestamp"],
            "properties": {
                "type": { "type": "string", "description": "JOIN, CHAT or LEAVE" },
                "chatRoomId": string,
                "writer": { "type": "string", "description": "The session's principal" },
                "message": string,
                "timestamp": { "type": "string", "format": "date-time" },
                "members": { "type": "array", "items": string },
            },
        },
        "RoomSnapshot": {
            "type": "object",
            "required": ["chatRoomId", "name", "createdAt", "members", "recent"],
            "properties": {
                "chatRoomId": string,
                "name": string,
                "createdAt": { "type": "string", "format": "date-time" },
                "members": { "type": "array", "items": string },
                "recent": { "type": "array", "items": { "$ref": "#/components/schemas/RoomEvent" }, "description": "The room's last CHAT events, oldest first" },
            },
        },
        "Hello": { "type": "object", "required": ["name"], "properties": { "name": string } },
        "Greeting": { "type": "object", "required": ["content"], "properties": { "content": string } },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in `v`.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_the_notification_destinations_are_there() {
        let doc = document(&Config::default());
        assert_eq!(doc["asyncapi"], "3.0.0");
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 30);
        for r in found {
            let pointer = r.strip_prefix('#').unwrap().replace("~1", "/");
            assert!(doc.pointer(&pointer).is_some(), "{r} does not resolve");
        }
        let address = |id: &str| doc["channels"][id]["address"].as_str().unwrap().to_owned();
        assert_eq!(address("notifications"), "/user/queue/notifications");
        assert_eq!(address("jobs"), "/user/queue/jobs");
        assert_eq!(address("broadcasts"), "/topic/notifications");
        assert_eq!(address("room"), "/topic/chat/room/{roomId}");
        let notification = &doc["components"]["schemas"]["Notification"];
        assert!(
            notification["properties"]["notificationId"].is_object(),
            "{notification}"
        );
        let rule = doc["operations"]["receiveNotifications"]["description"]
            .as_str()
            .unwrap();
        assert!(rule.contains("SERVICE") && rule.contains("ADMIN"), "{rule}");
    }

    #[test]
    fn the_destinations_follow_the_configuration() {
        let mut config = Config::default();
        config.routing.user_prefix = "/member/".into();
        config.notifications.destination = "/queue/notification".into();
        config.apps.demo = false;
        let doc = document(&config);
        assert_eq!(
            doc["channels"]["notifications"]["address"],
            "/member/queue/notification"
        );
        assert!(doc["channels"]["chat"].is_null());
        assert_eq!(doc["channels"]["token"]["address"], "/herald/token");
        let with_demo = document(&Config::default());
        assert_eq!(
            with_demo["channels"]["roomSnapshot"]["address"],
            "/app/chat/rooms/{roomId}"
        );
    }
}
