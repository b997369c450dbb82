//! Notifications over a plain JSON WebSocket (no STOMP), at each of
//! `notifications.socket_paths` (`/ws/notify`, `/notifications`): what a Spring
//! `TextWebSocketHandler` pushing JSON to a user's sessions gives its browser.
//!
//! - The session is the principal's: a token (cookie, bearer or query) names the
//!   user. Without credentials configured, in protected mode (loopback clients
//!   only), the seed's `?userId=` or an `{"type":"INIT","userId":…}` names it
//!   instead; never over a token, and never where anyone may connect anonymously.
//! - It receives `{"type":"notification", …}` (the stored notification, its own
//!   type as `kind`), `{"type":"read", …}` and `{"type":"job", …}` for its user, and
//!   every broadcast, from any node.
//! - It may send `{"type":"INIT","device":…}` (kept as metadata the admin API shows),
//!   `{"type":"READ","ids":[…]}` or `{"type":"READ","all":true}` (marks read; every
//!   session of the user gets the read event), and `{"type":"PING"}` (answered
//!   `{"type":"PONG"}`). Anything else is answered `{"type":"ERROR","message":…}`
//!   and the session stays open.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::node::Node;
use crate::transport::plain::{self, Delivery, Endpoint, Message, MessageError, Socket};

/// Session id → the user it delivers for, once known.
type Users = Arc<Mutex<HashMap<String, String>>>;

/// What a client may send.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "UPPERCASE")]
enum Request {
    Init {
        #[serde(rename = "userId")]
        user_id: Option<Value>,
        device: Option<String>,
        role: Option<String>,
        status: Option<String>,
    },
    Read {
        #[serde(default)]
        ids: Vec<i64>,
        #[serde(default)]
        all: bool,
    },
    Ping,
}

/// Longest device, role or status kept for the admin API.
const MAX_META: usize = 64;

/// One endpoint per `notifications.socket_paths`, sharing what they know of sessions.
pub(crate) fn endpoints(node: &Arc<Node>) -> Vec<Endpoint> {
    let users: Users = Arc::default();
    node.config
        .notifications
        .socket_paths
        .iter()
        .map(|path| endpoint(path, node.clone(), users.clone()))
        .collect()
}

fn endpoint(path: &str, node: Arc<Node>, users: Users) -> Endpoint {
    let (open_node, open_users) = (node.clone(), users.clone());
    let close_users = users.clone();
    Endpoint::new(path)
        .on_open(move |socket: Socket| {
            let (node, users) = (open_node.clone(), open_users.clone());
            async move { open(&node, &users, &socket) }
        })
        .on_message(move |socket: Socket, text: String| {
            let (node, users) = (node.clone(), users.clone());
            async move { message(&node, &users, &socket, &text).await }
        })
        .on_close(move |socket: Socket| {
            let users = close_users.clone();
            async move {
                users.lock().remove(socket.id());
            }
        })
}

/// Broadcasts always; the user's own events once the user is known.
fn open(node: &Node, users: &Users, socket: &Socket) -> Result<(), MessageError> {
    socket.subscribe_with(&node.config.notifications.broadcast_destination, shaped())?;
    let principal = socket.principal();
    let user = if principal.authenticated || !node.gate.is_protected() {
        // A token's user; or, where anyone may connect, the name any client may take
        // (`?login=`), as a STOMP CONNECT's login header.
        Some(principal.name.clone())
    } else {
        socket.query("userId").filter(|u| !u.trim().is_empty())
    };
    if let Some(user) = user {
        deliver_for(node, users, socket, &user)?;
    }
    Ok(())
}

fn deliver_for(
    node: &Node,
    users: &Users,
    socket: &Socket,
    user: &str,
) -> Result<(), MessageError> {
    let n = &node.config.notifications;
    let prefix = node.config.routing.user_prefix.trim_end_matches('/');
    for destination in [&n.destination, &n.jobs_destination] {
        socket.subscribe_as(user, &format!("{prefix}{destination}"), shaped())?;
    }
    socket.set_meta("user", user);
    users.lock().insert(socket.id().to_owned(), user.to_owned());
    Ok(())
}

/// The STOMP body (`{"event": …, "type": <kind>, …}`) as the plain client reads it:
/// `type` says which event, the notification's own type is `kind`.
fn shaped() -> Delivery {
    Delivery::Shaped(Arc::new(|m: &Message| {
        let mut body: Map<String, Value> = serde_json::from_slice(&m.body).ok()?;
        let event = body
            .remove("event")
            .or_else(|| m.headers.get("herald-event").map(Value::from))?;
        if let Some(kind) = body.remove("type")
            && kind != event
        {
            body.insert("kind".into(), kind);
        }
        body.insert("type".into(), event);
        Some(Bytes::from(Value::Object(body).to_string()))
    }))
}

async fn message(
    node: &Node,
    users: &Users,
    socket: &Socket,
    text: &str,
) -> Result<(), MessageError> {
    let user = users.lock().get(socket.id()).cloned();
    match plain::parse::<Request>(text, "message (INIT, READ or PING)")? {
        Request::Ping => {
            socket.send(&json!({ "type": "PONG" }));
        }
        Request::Init {
            user_id,
            device,
            role,
            status,
        } => {
            for (key, value) in [("device", device), ("role", role), ("status", status)] {
                if let Some(v) = value {
                    let v: String = v.chars().take(MAX_META).collect();
                    socket.set_meta(key, &v);
                }
            }
            if let Some(named) = user_id.map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            }) {
                init_user(node, users, socket, user.as_deref(), &named)?;
            }
        }
        Request::Read { ids, all } => {
            let user = user.ok_or_else(|| {
                MessageError::new("READ before the session has a user: INIT with a userId first")
            })?;
            let notifier = node
                .notifications
                .get()
                .ok_or_else(|| MessageError::new("notifications are turned off"))?;
            let failed = |e: crate::notify::NotifyError| MessageError::new(e.to_string());
            if all {
                notifier.mark_all_read(&user).await.map_err(failed)?;
            } else if ids.is_empty() || ids.len() > 200 {
                return Err(MessageError::new(
                    "READ needs 1 to 200 ids, or \"all\": true",
                ));
            } else {
                for id in ids {
                    notifier.mark_read(&user, id).await.map_err(failed)?;
                }
            }
        }
    }
    Ok(())
}

/// INIT's `userId`: the session's user, where the seed's protocol is trusted
/// (protected mode without a token); elsewhere refused unless it names the user the
/// session already is.
fn init_user(
    node: &Node,
    users: &Users,
    socket: &Socket,
    current: Option<&str>,
    named: &str,
) -> Result<(), MessageError> {
    match current {
        Some(user) if user == named => Ok(()),
        Some(user) => Err(MessageError::new(format!(
            "INIT userId '{named}' refused: this session is {user}'s"
        ))),
        None if named.trim().is_empty() => Err(MessageError::new("INIT userId is empty")),
        None => deliver_for(node, users, socket, named),
    }
}
