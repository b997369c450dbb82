//! The rooms over a plain JSON WebSocket, `/ws/chat` (and SockJS below it, as the
//! seed's `withSockJS()` serves it, and at `/ws/chat-sockjs`), written on `transport::plain`: the client sends {chatRoomId,
//! type: JOIN|CHAT|LEAVE, message} and receives the room events' JSON, the same the
//! STOMP subscribers get. JOIN subscribes the connection to the room's topic, LEAVE
//! ends that; a bad message gets `{"type":"ERROR","error":...}` and the connection
//! stays open; a connection that ends leaves every room it was in.

use serde::Deserialize;
use serde_json::json;

use super::{Rooms, publish_all};
use crate::transport::plain::{self, Endpoint, MessageError, Socket};

/// One message of the plain JSON chat (a Spring chat-room app's `ChatMessage`); the
/// seed's clients also send a `writer`: ignored, the principal writes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlainMessage {
    chat_room_id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

pub(super) fn endpoint(rooms: &Rooms) -> Endpoint {
    let (talk, gone) = (rooms.clone(), rooms.clone());
    Endpoint::new("/ws/chat")
        .sockjs("/ws/chat")
        .sockjs("/ws/chat-sockjs")
        .errors(|message| json!({ "type": "ERROR", "error": message }))
        .on_message(move |socket: Socket, text: String| {
            let rooms = talk.clone();
            async move { message(&rooms, &socket, &text).await }
        })
        .on_close(move |socket: Socket| {
            let rooms = gone.clone();
            async move {
                let messaging = socket.messaging();
                let left = rooms.leave_all(messaging.cluster(), socket.id()).await;
                publish_all(messaging, left, None);
            }
        })
}

async fn message(rooms: &Rooms, socket: &Socket, text: &str) -> Result<(), MessageError> {
    let m: PlainMessage = plain::parse(text, "chat message")?;
    let bus = socket.messaging().cluster();
    let room = &m.chat_room_id;
    let writer = &socket.principal().name;
    let event = match m.kind.as_str() {
        "JOIN" => {
            let topic = rooms.topic(room)?;
            let event = rooms.join(bus, room, socket.id(), writer).await?;
            // Subscribed before the JOIN goes out, so the joiner sees it too.
            socket.subscribe(&topic)?;
            Some(event)
        }
        "CHAT" | "TALK" => Some(rooms.chat(bus, room, writer, &m.message).await?),
        "LEAVE" => {
            let event = rooms.leave(bus, room, socket.id()).await?;
            socket.unsubscribe(&rooms.topic(room)?);
            event
        }
        other => {
            return Err(MessageError::new(format!(
                "unknown message type '{other}': use JOIN, CHAT or LEAVE"
            )));
        }
    };
    if let Some(event) = event {
        socket.publish(event)?;
    }
    Ok(())
}
