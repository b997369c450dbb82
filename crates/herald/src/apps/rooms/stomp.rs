//! The rooms over STOMP: `/app/chat/join` {chatRoomId}, `/app/chat/message`
//! {chatRoomId, message}, `/app/chat/leave` {chatRoomId}, each answered with the
//! room's event on its topic; a SUBSCRIBE to `/app/chat/rooms/{id}` is answered once
//! with the room, its members and its recent messages (the snapshot before the
//! topic's live events); a session that ends leaves every room it was in.

use serde::Deserialize;

use super::{Rooms, publish_all};
use crate::handler::{Handlers, Messaging, Request as AppRequest, SessionInfo};

/// The seed's clients also send a `writer`: ignored, the principal writes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JoinMessage {
    pub chat_room_id: String,
}

/// The seed's clients also send a `writer`: ignored, the principal writes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChatMessage {
    pub chat_room_id: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeaveMessage {
    pub chat_room_id: String,
}

/// The rooms' application handlers.
pub(super) fn handlers(rooms: &Rooms) -> Handlers {
    let (join, chat, leave, gone) = (rooms.clone(), rooms.clone(), rooms.clone(), rooms.clone());
    let snapshot = rooms.clone();
    Handlers::new()
        .subscribe("/chat/rooms/{id}", move |req: AppRequest<()>| {
            let rooms = snapshot.clone();
            async move {
                let id = req.param("id")?.to_owned();
                rooms.snapshot(req.messaging.cluster(), &id).await
            }
        })
        .route("/chat/join", move |req: AppRequest<JoinMessage>| {
            let rooms = join.clone();
            async move {
                let bus = req.messaging.cluster();
                let s = &req.session;
                rooms
                    .join(bus, &req.payload.chat_room_id, &s.id, &s.principal.name)
                    .await
            }
        })
        .route("/chat/message", move |req: AppRequest<ChatMessage>| {
            let rooms = chat.clone();
            async move {
                let p = &req.payload;
                rooms
                    .chat(
                        req.messaging.cluster(),
                        &p.chat_room_id,
                        &req.session.principal.name,
                        &p.message,
                    )
                    .await
            }
        })
        .route("/chat/leave", move |req: AppRequest<LeaveMessage>| {
            let rooms = leave.clone();
            async move {
                let bus = req.messaging.cluster();
                rooms
                    .leave(bus, &req.payload.chat_room_id, &req.session.id)
                    .await
            }
        })
        .on_disconnect(move |session: SessionInfo, messaging: Messaging| {
            let rooms = gone.clone();
            async move {
                let replies = rooms.leave_all(messaging.cluster(), &session.id).await;
                publish_all(&messaging, replies, None)
            }
        })
}
