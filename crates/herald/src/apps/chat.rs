//! The chat of Spring's STOMP chat tutorials: public messages with a server timestamp, and private messages to
//! one user's `/user/queue/messages`. The sender is always the session's principal:
//! a `sender` in the payload (the seed's clients send one) is ignored.

use serde::{Deserialize, Serialize};

use super::{Destinations, now_rfc3339};
use crate::handler::{HandlerError, Handlers, Reply, Request};

#[derive(Deserialize)]
pub(crate) struct ChatMessage {
    pub content: String,
}

#[derive(Deserialize)]
pub(crate) struct PrivateMessage {
    pub recipient: String,
    pub content: String,
}

#[derive(Serialize)]
struct Stamped<'a> {
    sender: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<&'a str>,
    content: &'a str,
    timestamp: String,
}

pub(crate) fn handlers(to: &Destinations) -> Handlers {
    let (chat, messages) = (to.topic("chat"), to.queue("messages"));
    Handlers::new()
        .route("/chat.send", move |req: Request<ChatMessage>| {
            let chat = chat.clone();
            async move {
                Ok::<_, HandlerError>(Reply::to(
                    chat,
                    &Stamped {
                        sender: &req.session.principal.name,
                        recipient: None,
                        content: &req.payload.content,
                        timestamp: now_rfc3339(),
                    },
                ))
            }
        })
        .route("/chat.private", move |req: Request<PrivateMessage>| {
            let messages = messages.clone();
            async move {
                let p = &req.payload;
                if p.recipient.trim().is_empty() {
                    return Err(HandlerError::new("recipient must not be empty"));
                }
                Ok(Reply::to_user(
                    p.recipient.clone(),
                    messages,
                    &Stamped {
                        sender: &req.session.principal.name,
                        recipient: Some(&p.recipient),
                        content: &p.content,
                        timestamp: now_rfc3339(),
                    },
                ))
            }
        })
}
