//! Seed 001's chat rooms, reachable three ways that all meet on `/topic/chat/room/{id}`:
//! - STOMP: `/app/chat/join` {chatRoomId, writer}, `/app/chat/message`
//!   {chatRoomId, writer, message}, `/app/chat/leave` {chatRoomId};
//! - the plain JSON WebSocket `/ws/chat`: {chatRoomId, type: JOIN|CHAT|LEAVE, writer,
//!   message}, answered with the same JSON the STOMP subscribers get; the same chat
//!   over SockJS at `/ws/chat-sockjs` (one JSON message per SockJS message);
//! - REST: `GET /api/rooms`, `POST /api/rooms` {name}, `GET /api/rooms/{id}`.
//!
//! Presence: a room knows which sessions joined under which name; JOIN and LEAVE
//! events carry the member list, and a session that ends leaves every room it was in.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::BytesMut;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::now_rfc3339;
use crate::broker::{AckMode, Outbox, Recipient, Subscription};
use crate::handler::{
    HandlerError, Handlers, Messaging, Reply, Request as AppRequest, SessionInfo,
};
use crate::http::HttpState;
use crate::transport::Transport;
use crate::transport::websocket::{self, WebSocket};

const MAX_NAME: usize = 100;

#[derive(Debug)]
struct Room {
    id: String,
    name: String,
    created_at: String,
    /// Session id → the name it joined under.
    members: HashMap<String, String>,
}

impl Room {
    fn member_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.members.values().cloned().collect();
        names.sort();
        names.dedup();
        names
    }
}

/// The room registry, shared by the handlers, the REST API and `/ws/chat`.
#[derive(Clone, Debug)]
pub struct Rooms {
    inner: Arc<RwLock<BTreeMap<String, Room>>>,
    order: Arc<RwLock<Vec<String>>>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoomInfo {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub members: Vec<String>,
}

/// What every subscriber of a room's topic receives.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RoomEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub chat_room_id: String,
    pub writer: String,
    pub message: String,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinMessage {
    pub chat_room_id: String,
    pub writer: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub chat_room_id: String,
    pub writer: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaveMessage {
    pub chat_room_id: String,
}

pub fn room_topic(id: &str) -> String {
    format!("/topic/chat/room/{id}")
}

impl Default for Rooms {
    fn default() -> Self {
        Rooms::new()
    }
}

impl Rooms {
    /// A registry with the seed's three starting rooms.
    pub fn new() -> Rooms {
        let rooms = Rooms {
            inner: Arc::default(),
            order: Arc::default(),
        };
        for name in ["Room 1", "Room 2", "Room 3"] {
            rooms.create(name).expect("valid name");
        }
        rooms
    }

    pub fn create(&self, name: &str) -> Result<RoomInfo, String> {
        let name = name.trim();
        if name.is_empty() {
            return Err("room name must not be empty".into());
        }
        if name.chars().count() > MAX_NAME {
            return Err(format!("room name longer than {MAX_NAME} characters"));
        }
        let room = Room {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            created_at: now_rfc3339(),
            members: HashMap::new(),
        };
        let info = info(&room);
        self.order.write().push(room.id.clone());
        self.inner.write().insert(room.id.clone(), room);
        Ok(info)
    }

    pub fn list(&self) -> Vec<RoomInfo> {
        let rooms = self.inner.read();
        self.order
            .read()
            .iter()
            .filter_map(|id| rooms.get(id))
            .map(info)
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<RoomInfo> {
        self.inner.read().get(id).map(info)
    }

    fn unknown(id: &str) -> HandlerError {
        HandlerError::new(format!("unknown room '{id}'"))
    }

    /// Adds the session under `writer` and returns the JOIN event.
    pub fn join(&self, room_id: &str, session: &str, writer: &str) -> Result<Reply, HandlerError> {
        let writer = non_empty(writer, "writer")?;
        let mut rooms = self.inner.write();
        let room = rooms
            .get_mut(room_id)
            .ok_or_else(|| Rooms::unknown(room_id))?;
        room.members.insert(session.to_owned(), writer.to_owned());
        Ok(event(
            room,
            "JOIN",
            writer,
            format!("{writer} joined"),
            true,
        ))
    }

    pub fn chat(&self, room_id: &str, writer: &str, message: &str) -> Result<Reply, HandlerError> {
        let writer = non_empty(writer, "writer")?;
        let rooms = self.inner.read();
        let room = rooms.get(room_id).ok_or_else(|| Rooms::unknown(room_id))?;
        Ok(event(room, "CHAT", writer, message.to_owned(), false))
    }

    /// Removes the session from the room; the LEAVE event when it was a member.
    pub fn leave(&self, room_id: &str, session: &str) -> Result<Option<Reply>, HandlerError> {
        let mut rooms = self.inner.write();
        let room = rooms
            .get_mut(room_id)
            .ok_or_else(|| Rooms::unknown(room_id))?;
        Ok(room
            .members
            .remove(session)
            .map(|writer| event(room, "LEAVE", &writer, format!("{writer} left"), true)))
    }

    /// Leaves every room the session is in (it disconnected).
    pub fn leave_all(&self, session: &str) -> Vec<Reply> {
        let mut rooms = self.inner.write();
        rooms
            .values_mut()
            .filter_map(|room| {
                room.members
                    .remove(session)
                    .map(|writer| event(room, "LEAVE", &writer, format!("{writer} left"), true))
            })
            .collect()
    }

    pub fn handlers(&self) -> Handlers {
        let (join, chat, leave, gone) = (self.clone(), self.clone(), self.clone(), self.clone());
        Handlers::new()
            .route("/chat/join", move |req: AppRequest<JoinMessage>| {
                let rooms = join.clone();
                async move {
                    rooms.join(
                        &req.payload.chat_room_id,
                        &req.session.id,
                        &req.payload.writer,
                    )
                }
            })
            .route("/chat/message", move |req: AppRequest<ChatMessage>| {
                let rooms = chat.clone();
                async move {
                    let p = &req.payload;
                    rooms.chat(&p.chat_room_id, &p.writer, &p.message)
                }
            })
            .route("/chat/leave", move |req: AppRequest<LeaveMessage>| {
                let rooms = leave.clone();
                async move { rooms.leave(&req.payload.chat_room_id, &req.session.id) }
            })
            .on_disconnect(move |session: SessionInfo, messaging: Messaging| {
                let rooms = gone.clone();
                async move { publish_all(&messaging, rooms.leave_all(&session.id), None) }
            })
    }

    /// REST routes: `GET/POST /api/rooms`, `GET /api/rooms/{id}`, `/ws/chat`, and (when
    /// `sockjs` is on, as `sockjs.enabled` says) the SockJS endpoint `/ws/chat-sockjs`.
    pub(crate) fn routes(&self, sockjs: bool) -> axum::Router<HttpState> {
        let (list, create, one) = (self.clone(), self.clone(), self.clone());
        let ws = self.clone();
        let sockjs_rooms = self.clone();
        let sockjs_chat: crate::transport::sockjs::App = Arc::new(move |conn, opened| {
            let rooms = sockjs_rooms.clone();
            Box::pin(async move {
                let crate::transport::sockjs::Opened { state, admission } = opened;
                plain_chat(conn, rooms, state.node, state.shutdown).await;
                drop(admission);
            })
        });
        let router = if sockjs {
            crate::transport::sockjs::Service::new("/ws/chat-sockjs", None, sockjs_chat).routes()
        } else {
            axum::Router::new()
        };
        router
            .route(
                "/api/rooms",
                get(move || {
                    let rooms = list.clone();
                    async move { Json(rooms.list()) }
                })
                .post(
                    move |body: Result<
                        Json<CreateRoom>,
                        axum::extract::rejection::JsonRejection,
                    >| {
                        let rooms = create.clone();
                        async move {
                            let Json(body) = body.map_err(|e| bad_request(&e.body_text()))?;
                            rooms
                                .create(&body.name)
                                .map(|r| (StatusCode::CREATED, Json(r)))
                                .map_err(|e| bad_request(&e))
                        }
                    },
                ),
            )
            .route(
                "/api/rooms/{id}",
                get(move |Path(id): Path<String>| {
                    let rooms = one.clone();
                    async move {
                        rooms.get(&id).map(Json).ok_or_else(|| {
                            (
                                StatusCode::NOT_FOUND,
                                Json(json!({ "error": format!("unknown room '{id}'") })),
                            )
                        })
                    }
                }),
            )
            .route(
                "/ws/chat",
                get(
                    move |State(state): State<HttpState>,
                          ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
                          req: Request<Body>| {
                        let rooms = ws.clone();
                        async move {
                            match crate::http::admit(&state, peer, &req).await {
                                Ok(admission) => plain_chat_upgrade(rooms, state, req, admission),
                                Err(response) => response,
                            }
                        }
                    },
                ),
            )
    }
}

#[derive(Deserialize)]
pub(crate) struct CreateRoom {
    name: String,
}

fn bad_request(msg: &str) -> (StatusCode, Json<serde_json::Value>) {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": msg })))
}

fn info(room: &Room) -> RoomInfo {
    RoomInfo {
        id: room.id.clone(),
        name: room.name.clone(),
        created_at: room.created_at.clone(),
        members: room.member_names(),
    }
}

fn event(room: &Room, kind: &'static str, writer: &str, message: String, members: bool) -> Reply {
    Reply::to(
        room_topic(&room.id),
        &RoomEvent {
            kind,
            chat_room_id: room.id.clone(),
            writer: writer.to_owned(),
            message,
            timestamp: now_rfc3339(),
            members: members.then(|| room.member_names()),
        },
    )
}

fn non_empty<'a>(value: &'a str, field: &str) -> Result<&'a str, HandlerError> {
    let v = value.trim();
    if v.is_empty() {
        Err(HandlerError::new(format!("{field} must not be empty")))
    } else {
        Ok(v)
    }
}

fn publish_all(
    messaging: &Messaging,
    replies: impl IntoIterator<Item = Reply>,
    sender: Option<&SessionInfo>,
) {
    for r in replies {
        if let Err(e) = messaging.publish(r, sender) {
            tracing::warn!(error = %e, "room event not published");
        }
    }
}

/// One message of the plain JSON chat (seed 001's `ChatMessage`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlainMessage {
    chat_room_id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    writer: String,
    #[serde(default)]
    message: String,
}

fn plain_chat_upgrade(
    rooms: Rooms,
    state: HttpState,
    req: Request<Body>,
    admission: crate::transport::Admission,
) -> Response {
    let upgrade = match websocket::accept(req) {
        Ok(u) => u,
        Err(response) => return response,
    };
    let HttpState {
        node,
        shutdown,
        tasks,
    } = state;
    tasks.spawn(async move {
        if let Ok(upgraded) = upgrade.on_upgrade.await {
            let ws = WebSocket::new(upgraded, node.config.stomp.max_frame);
            plain_chat(ws, rooms, node, shutdown).await;
        }
        drop(admission);
    });
    upgrade.response.into_response()
}

/// A plain chat client (a WebSocket, or SockJS: any transport whose reads are whole
/// messages): it joins rooms by JSON message and receives each room event's JSON
/// body. Bad messages get `{"type":"ERROR","error":...}` and the connection stays open.
async fn plain_chat<T: Transport>(
    mut ws: T,
    rooms: Rooms,
    node: Arc<crate::node::Node>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let session = SessionInfo {
        id: node.next_session_id(),
        principal: crate::handler::Principal::anonymous(String::new()),
    };
    let outbox = Arc::new(Outbox::new(node.config.stomp.outbound_queue));
    let recipient = Arc::new(Recipient::bodies_only(session.id.clone(), outbox.clone()));
    let mut subscriptions: HashMap<String, Arc<Subscription>> = HashMap::new();
    let mut buf = BytesMut::new();
    let mut pending = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = outbox.ready() => {
                if outbox.drain(&mut pending) == crate::broker::outbox::Drained::Overflowed {
                    break;
                }
                if ws.write(&pending).await.is_err() {
                    break;
                }
                pending.clear();
            }
            read = ws.read(&mut buf) => {
                if !matches!(read, Ok(true)) {
                    break;
                }
                let text = std::mem::take(&mut buf);
                let result = serde_json::from_slice::<PlainMessage>(&text)
                    .map_err(|e| HandlerError::new(format!("invalid chat message: {e}")))
                    .and_then(|m| {
                        let room = m.chat_room_id.clone();
                        let reply = match m.kind.as_str() {
                            "JOIN" => {
                                let reply = rooms.join(&room, &session.id, &m.writer)?;
                                subscriptions.entry(room.clone()).or_insert_with(|| {
                                    let target = node.router.broker_target(&room_topic(&room)).expect("room topic is a broker destination");
                                    let sub = Arc::new(Subscription::new(room.clone(), target, AckMode::Auto, recipient.clone()));
                                    node.broker.subscribe(sub.clone());
                                    sub
                                });
                                Some(reply)
                            }
                            "CHAT" | "TALK" => Some(rooms.chat(&room, &m.writer, &m.message)?),
                            "LEAVE" => {
                                if let Some(sub) = subscriptions.remove(&room) {
                                    node.broker.unsubscribe(&sub);
                                }
                                rooms.leave(&room, &session.id)?
                            }
                            other => return Err(HandlerError::new(format!(
                                "unknown message type '{other}': use JOIN, CHAT or LEAVE"
                            ))),
                        };
                        Ok(reply)
                    });
                match result {
                    Ok(replies) => publish_all(&node.messaging, replies, None),
                    Err(e) => {
                        let body = json!({ "type": "ERROR", "error": e.message }).to_string();
                        let _ = outbox.push(crate::broker::OutFrame::text(body.into()));
                    }
                }
            }
        }
    }
    outbox.close();
    for sub in subscriptions.into_values() {
        node.broker.unsubscribe(&sub);
    }
    publish_all(&node.messaging, rooms.leave_all(&session.id), None);
    ws.close().await;
}
