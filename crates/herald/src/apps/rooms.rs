//! Chat rooms as Spring chat-room apps build them, reachable three ways that all meet on the room's topic,
//! `{first of broker.topic_prefixes}chat/room/{id}` (`/topic/chat/room/{id}`):
//! - STOMP: `/app/chat/join` {chatRoomId}, `/app/chat/message` {chatRoomId, message},
//!   `/app/chat/leave` {chatRoomId};
//! - the plain JSON WebSocket `/ws/chat`: {chatRoomId, type: JOIN|CHAT|LEAVE,
//!   message}, answered with the same JSON the STOMP subscribers get; the same chat
//!   over SockJS at `/ws/chat-sockjs` (one JSON message per SockJS message);
//! - REST: `GET /api/rooms`, `POST /api/rooms` {name}, `GET /api/rooms/{id}`.
//!
//! The writer of every event is the session's principal; a `writer` in the payload
//! (the seed's clients send one) is ignored, so nobody speaks under another's name.
//! `/ws/chat` is admitted like `/ws` and its principal made the way a CONNECT's is,
//! its `?login=` standing for the CONNECT `login` header.
//!
//! The registry and presence are the cluster's ([`crate::cluster::Bus`]): a room
//! created on one node exists on all of them (a shared map), and its members are the
//! sessions of every node that joined it (presence scope `room:{id}`, entries of a
//! node that died expire). JOIN and LEAVE events carry the member list; a session
//! that ends leaves every room it was in. At most `apps.max_rooms` rooms exist; one
//! without members for `apps.room_idle_timeout` is removed by every node's sweep.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::BytesMut;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::now_rfc3339;
use crate::broker::{AckMode, Outbox, Recipient, Subscription};
use crate::cluster::Bus;
use crate::cluster::presence::tally;
use crate::config::Config;
use crate::error::ApiError;
use crate::handler::{
    HandlerError, Handlers, Messaging, Reply, Request as AppRequest, SessionInfo,
};
use crate::ops::metrics;
use crate::transport::Context;
use crate::transport::Transport;
use crate::transport::websocket::{self, WebSocket};

const MAX_NAME: usize = 100;
/// The shared map holding the rooms (id → [`Room`] as JSON).
const MAP: &str = "rooms";
/// The seed's three starting rooms, with the same ids on every node.
const SEEDS: [(&str, &str); 3] = [
    ("00000000-0000-4000-8000-000000000001", "Room 1"),
    ("00000000-0000-4000-8000-000000000002", "Room 2"),
    ("00000000-0000-4000-8000-000000000003", "Room 3"),
];

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
struct Room {
    id: String,
    name: String,
    created_at: String,
}

fn presence_scope(room_id: &str) -> String {
    format!("room:{room_id}")
}

/// The room apps' state on this node: which rooms this node's sessions joined, under
/// which name (for LEAVE events and leaving on disconnect), and since when this node
/// has seen rooms empty (for expiry). Rooms and members themselves live in the cluster.
#[derive(Clone, Debug)]
pub(crate) struct Rooms {
    /// Session id → room id → the name it joined under.
    joined: Arc<Mutex<HashMap<String, HashMap<String, String>>>>,
    /// Room id → when this node first saw it without members.
    idle: Arc<Mutex<HashMap<String, Instant>>>,
    max_rooms: usize,
    idle_timeout: Duration,
    /// The broker prefix room topics are under; `None` when none is configured.
    topic_prefix: Option<String>,
}

/// Why a room was not created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CreateError {
    /// The name is empty or too long.
    Invalid(String),
    /// `apps.max_rooms` rooms exist.
    TooMany(String),
    /// The cluster's registry did not answer.
    Unavailable(String),
}

impl CreateError {
    fn answer(&self) -> ApiError {
        let (status, code, msg) = match self {
            CreateError::Invalid(m) => (StatusCode::BAD_REQUEST, "invalid", m),
            CreateError::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, "max_rooms", m),
            CreateError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
        };
        ApiError::new(status, code, msg.clone())
    }
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoomInfo {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub members: Vec<String>,
}

/// What every subscriber of a room's topic receives.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoomEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub chat_room_id: String,
    pub writer: String,
    pub message: String,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
}

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

/// A room name, trimmed, or why it cannot be one.
fn check_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("room name must not be empty".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("room name longer than {MAX_NAME} characters"));
    }
    Ok(name)
}

fn unavailable(e: String) -> HandlerError {
    HandlerError::new(format!("rooms unavailable: {e}"))
}

impl Rooms {
    pub(crate) fn new(config: &Config) -> Rooms {
        Rooms {
            joined: Arc::default(),
            idle: Arc::default(),
            max_rooms: config.apps.max_rooms,
            idle_timeout: config.apps.room_idle_timeout,
            topic_prefix: config.broker.topic_prefixes.first().cloned(),
        }
    }

    /// The topic a room's events go to.
    pub(crate) fn topic(&self, room_id: &str) -> Result<String, HandlerError> {
        self.topic_prefix
            .as_ref()
            .map(|p| format!("{p}chat/room/{room_id}"))
            .ok_or_else(|| {
                HandlerError::new(
                    "chat rooms need a topic prefix for their events (broker.topic_prefixes is empty)",
                )
            })
    }

    fn seed(id: &str) -> Option<Room> {
        SEEDS
            .iter()
            .find(|(sid, _)| *sid == id)
            .map(|(id, name)| Room {
                id: (*id).to_owned(),
                name: (*name).to_owned(),
                created_at: now_rfc3339(),
            })
    }

    /// Creates a room with a fresh id, on every node, unless `apps.max_rooms` exist.
    /// (Nodes creating rooms at the same moment may pass the count together: the
    /// limit can be exceeded by as many rooms as are created at once.)
    pub(crate) async fn create(
        &self,
        bus: &Arc<dyn Bus>,
        name: &str,
    ) -> Result<RoomInfo, CreateError> {
        let name = check_name(name).map_err(CreateError::Invalid)?;
        let down = |e: String| CreateError::Unavailable(format!("rooms unavailable: {e}"));
        let count = bus.map_len(MAP).await.map_err(down)?;
        metrics::rooms(count);
        if count >= self.max_rooms {
            metrics::limit_hit("apps.max_rooms");
            return Err(CreateError::TooMany(format!(
                "too many rooms (apps.max_rooms = {}); an empty room is removed after apps.room_idle_timeout",
                self.max_rooms
            )));
        }
        let room = Room {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            created_at: now_rfc3339(),
        };
        bus.map_put(MAP, &room.id, &room_json(&room), true)
            .await
            .map_err(down)?;
        self.idle.lock().insert(room.id.clone(), Instant::now());
        metrics::rooms(count + 1);
        Ok(RoomInfo::of(room, Vec::new()))
    }

    /// Removes every room that has had no members for `apps.room_idle_timeout` (the
    /// starting rooms stay); returns how many this call removed.
    pub(crate) async fn expire_idle(&self, bus: &Arc<dyn Bus>) -> Result<usize, HandlerError> {
        let stored = bus.map_all(MAP).await.map_err(unavailable)?;
        let mut count = stored.len();
        let mut removed = 0;
        let mut present = HashSet::with_capacity(stored.len());
        for (id, _) in stored {
            if Rooms::seed(&id).is_some() {
                continue;
            }
            let empty = bus
                .presence(&presence_scope(&id))
                .await
                .map_err(unavailable)?
                .is_empty();
            let now = Instant::now();
            let expired = {
                let mut idle = self.idle.lock();
                if empty {
                    let since = *idle.entry(id.clone()).or_insert(now);
                    now.duration_since(since) >= self.idle_timeout
                } else {
                    idle.remove(&id);
                    false
                }
            };
            if expired && bus.map_remove(MAP, &id).await.map_err(unavailable)? {
                self.forget(&id);
                count -= 1;
                removed += 1;
                tracing::debug!(room = %id, "idle room removed");
            } else if !expired {
                present.insert(id);
            }
        }
        // Rooms another node removed are forgotten here too.
        let removed_elsewhere: Vec<String> = self
            .idle
            .lock()
            .keys()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect();
        for id in &removed_elsewhere {
            self.forget(id);
        }
        metrics::rooms(count);
        Ok(removed)
    }

    /// Drops what this node keeps about a room that no longer exists.
    fn forget(&self, room_id: &str) {
        self.idle.lock().remove(room_id);
        let mut joined = self.joined.lock();
        joined.retain(|_, rooms| {
            rooms.remove(room_id);
            !rooms.is_empty()
        });
    }

    /// Sweeps idle rooms away (see [`Rooms::expire_idle`]) until `shutdown`.
    pub(crate) fn spawn_expiry(
        &self,
        bus: Arc<dyn Bus>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let rooms = self.clone();
        let period =
            (self.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = every.tick() => {
                        if let Err(e) = rooms.expire_idle(&bus).await {
                            tracing::warn!(error = %e.message, "idle rooms not swept");
                        }
                    }
                }
            }
        })
    }

    /// Every room, oldest first, with its members.
    pub(crate) async fn list(&self, bus: &Arc<dyn Bus>) -> Result<Vec<RoomInfo>, HandlerError> {
        let stored = bus.map_all(MAP).await.map_err(unavailable)?;
        let mut rooms: Vec<Room> = stored
            .iter()
            .filter_map(|(_, v)| serde_json::from_str(v).ok())
            .collect();
        // The starting rooms exist on every node, even after Redis lost them.
        for (id, _) in SEEDS {
            if !rooms.iter().any(|r| r.id == id)
                && let Some(seed) = self.ensure_seed(bus, id).await?
            {
                rooms.push(seed);
            }
        }
        // The starting rooms first, then by age.
        let key = |r: &Room| {
            (
                Rooms::seed(&r.id).is_none(),
                r.created_at.clone(),
                r.id.clone(),
            )
        };
        rooms.sort_by_cached_key(key);
        let mut out = Vec::with_capacity(rooms.len());
        for room in rooms {
            let members = members(bus, &room.id).await?;
            out.push(RoomInfo::of(room, members));
        }
        Ok(out)
    }

    /// One room with its members; `None` when there is no such room.
    pub(crate) async fn get(
        &self,
        bus: &Arc<dyn Bus>,
        id: &str,
    ) -> Result<Option<RoomInfo>, HandlerError> {
        let Some(room) = self.room(bus, id).await? else {
            return Ok(None);
        };
        let members = members(bus, id).await?;
        Ok(Some(RoomInfo::of(room, members)))
    }

    async fn ensure_seed(
        &self,
        bus: &Arc<dyn Bus>,
        id: &str,
    ) -> Result<Option<Room>, HandlerError> {
        let Some(seed) = Rooms::seed(id) else {
            return Ok(None);
        };
        if bus
            .map_put(MAP, id, &room_json(&seed), true)
            .await
            .map_err(unavailable)?
        {
            return Ok(Some(seed));
        }
        // Another node wrote it first: theirs it is.
        Ok(bus
            .map_get(MAP, id)
            .await
            .map_err(unavailable)?
            .and_then(|v| serde_json::from_str(&v).ok())
            .or(Some(seed)))
    }

    async fn room(&self, bus: &Arc<dyn Bus>, id: &str) -> Result<Option<Room>, HandlerError> {
        match bus.map_get(MAP, id).await.map_err(unavailable)? {
            Some(v) => Ok(serde_json::from_str(&v).ok()),
            None => self.ensure_seed(bus, id).await,
        }
    }

    async fn existing(&self, bus: &Arc<dyn Bus>, id: &str) -> Result<Room, HandlerError> {
        self.room(bus, id)
            .await?
            .ok_or_else(|| HandlerError::new(format!("unknown room '{id}'")))
    }

    /// Adds the session under `writer` (its principal's name) and returns the JOIN event.
    pub(crate) async fn join(
        &self,
        bus: &Arc<dyn Bus>,
        room_id: &str,
        session: &str,
        writer: &str,
    ) -> Result<Reply, HandlerError> {
        let writer = non_empty(writer, "writer")?;
        let room = self.existing(bus, room_id).await?;
        let topic = self.topic(&room.id)?;
        self.idle.lock().remove(&room.id);
        self.joined
            .lock()
            .entry(session.to_owned())
            .or_default()
            .insert(room.id.clone(), writer.to_owned());
        bus.presence_join(&presence_scope(&room.id), session, writer);
        let members = members(bus, &room.id).await?;
        Ok(event(
            topic,
            &room.id,
            "JOIN",
            writer,
            format!("{writer} joined"),
            Some(members),
        ))
    }

    pub(crate) async fn chat(
        &self,
        bus: &Arc<dyn Bus>,
        room_id: &str,
        writer: &str,
        message: &str,
    ) -> Result<Reply, HandlerError> {
        let writer = non_empty(writer, "writer")?;
        let room = self.existing(bus, room_id).await?;
        let topic = self.topic(&room.id)?;
        Ok(event(
            topic,
            &room.id,
            "CHAT",
            writer,
            message.to_owned(),
            None,
        ))
    }

    /// Removes the session from the room; the LEAVE event when it was a member.
    pub(crate) async fn leave(
        &self,
        bus: &Arc<dyn Bus>,
        room_id: &str,
        session: &str,
    ) -> Result<Option<Reply>, HandlerError> {
        let room = self.existing(bus, room_id).await?;
        let writer = {
            let mut joined = self.joined.lock();
            let writer = joined
                .get_mut(session)
                .and_then(|rooms| rooms.remove(&room.id));
            if joined.get(session).is_some_and(HashMap::is_empty) {
                joined.remove(session);
            }
            writer
        };
        let Some(writer) = writer else {
            return Ok(None);
        };
        self.left(bus, &room.id, session, &writer).await.map(Some)
    }

    async fn left(
        &self,
        bus: &Arc<dyn Bus>,
        room_id: &str,
        session: &str,
        writer: &str,
    ) -> Result<Reply, HandlerError> {
        bus.presence_leave(&presence_scope(room_id), session);
        // A LEAVE goes out even when the member list cannot be read.
        let members = members(bus, room_id).await.ok();
        if members.as_ref().is_some_and(Vec::is_empty) {
            self.idle
                .lock()
                .entry(room_id.to_owned())
                .or_insert_with(Instant::now);
        }
        let topic = self.topic(room_id)?;
        Ok(event(
            topic,
            room_id,
            "LEAVE",
            writer,
            format!("{writer} left"),
            members,
        ))
    }

    /// Leaves every room the session is in (it disconnected).
    pub(crate) async fn leave_all(&self, bus: &Arc<dyn Bus>, session: &str) -> Vec<Reply> {
        let rooms = self.joined.lock().remove(session).unwrap_or_default();
        let mut replies = Vec::with_capacity(rooms.len());
        for (room_id, writer) in rooms {
            if let Ok(reply) = self.left(bus, &room_id, session, &writer).await {
                replies.push(reply);
            }
        }
        replies
    }

    pub(crate) fn handlers(&self) -> Handlers {
        let (join, chat, leave, gone) = (self.clone(), self.clone(), self.clone(), self.clone());
        Handlers::new()
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

    /// REST routes: `GET/POST /api/rooms`, `GET /api/rooms/{id}`, `/ws/chat`, and (when
    /// `sockjs` is on, as `sockjs.enabled` says) the SockJS endpoint `/ws/chat-sockjs`.
    pub(crate) fn routes(&self, sockjs: bool) -> axum::Router<Context> {
        let (list, create, one) = (self.clone(), self.clone(), self.clone());
        let ws = self.clone();
        let sockjs_rooms = self.clone();
        let sockjs_chat: crate::transport::sockjs::App = Arc::new(move |conn, opened| {
            let rooms = sockjs_rooms.clone();
            Box::pin(async move {
                let crate::transport::sockjs::Opened { state, admission } = opened;
                let handshake = admission.handshake.clone();
                plain_chat(conn, rooms, state.node, state.shutdown, handshake, None).await;
                drop(admission);
            })
        });
        let router = if sockjs {
            crate::transport::sockjs::Service::new(
                "/ws/chat-sockjs",
                crate::admission::Entry::Plain,
                None,
                sockjs_chat,
            )
            .routes()
        } else {
            axum::Router::new()
        };
        router
            .route(
                "/api/rooms",
                get(move |State(state): State<Context>| {
                    let rooms = list.clone();
                    async move {
                        rooms
                            .list(state.node.messaging.cluster())
                            .await
                            .map(Json)
                            .map_err(|e| unavailable_response(&e))
                    }
                })
                .post(
                    move |State(state): State<Context>,
                          body: Result<
                        Json<CreateRoom>,
                        axum::extract::rejection::JsonRejection,
                    >| {
                        let rooms = create.clone();
                        async move {
                            let Json(body) = body.map_err(|e| bad_request(&e.body_text()))?;
                            rooms
                                .create(state.node.messaging.cluster(), &body.name)
                                .await
                                .map(|r| (StatusCode::CREATED, Json(r)))
                                .map_err(|e| e.answer())
                        }
                    },
                ),
            )
            .route(
                "/api/rooms/{id}",
                get(
                    move |State(state): State<Context>, Path(id): Path<String>| {
                        let rooms = one.clone();
                        async move {
                            match rooms.get(state.node.messaging.cluster(), &id).await {
                                Ok(Some(room)) => Ok(Json(room)),
                                Ok(None) => {
                                    Err(ApiError::not_found(format!("unknown room '{id}'")))
                                }
                                Err(e) => Err(unavailable_response(&e)),
                            }
                        }
                    },
                ),
            )
            .route(
                "/ws/chat",
                get(
                    move |State(state): State<Context>,
                          ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
                          req: Request<Body>| {
                        let rooms = ws.clone();
                        async move {
                            let entry = crate::admission::Entry::Plain;
                            match state.admit(peer, &req, entry).await {
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

fn bad_request(msg: &str) -> ApiError {
    ApiError::bad_request(msg)
}

fn unavailable_response(e: &HandlerError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        e.message.clone(),
    )
}

impl RoomInfo {
    fn of(room: Room, members: Vec<String>) -> RoomInfo {
        RoomInfo {
            id: room.id,
            name: room.name,
            created_at: room.created_at,
            members,
        }
    }
}

/// The names of a room's members on every node, sorted, each once.
async fn members(bus: &Arc<dyn Bus>, room_id: &str) -> Result<Vec<String>, HandlerError> {
    let entries = bus
        .presence(&presence_scope(room_id))
        .await
        .map_err(unavailable)?;
    Ok(tally(&entries).into_iter().map(|(name, _)| name).collect())
}

fn event(
    topic: String,
    room_id: &str,
    kind: &'static str,
    writer: &str,
    message: String,
    members: Option<Vec<String>>,
) -> Reply {
    Reply::to(
        topic,
        &RoomEvent {
            kind,
            chat_room_id: room_id.to_owned(),
            writer: writer.to_owned(),
            message,
            timestamp: now_rfc3339(),
            members,
        },
    )
}

fn room_json(room: &Room) -> String {
    json!({ "id": room.id, "name": room.name, "createdAt": room.created_at }).to_string()
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

/// One message of the plain JSON chat (a Spring chat-room app's `ChatMessage`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlainMessage {
    chat_room_id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

fn plain_chat_upgrade(
    rooms: Rooms,
    state: Context,
    req: Request<Body>,
    admission: crate::transport::Admission,
) -> Response {
    let login = crate::params::query_value(req.uri().query(), "login");
    let upgrade = match websocket::accept(req) {
        Ok(u) => u,
        Err(response) => return response,
    };
    let Context {
        node,
        shutdown,
        tasks,
    } = state;
    let handshake = admission.handshake.clone();
    tasks.spawn(async move {
        if let Ok(upgraded) = upgrade.on_upgrade.await {
            let ws = WebSocket::new(upgraded, node.config.stomp.max_frame, None);
            plain_chat(ws, rooms, node, shutdown, handshake, login).await;
        }
        drop(admission);
    });
    upgrade.response.into_response()
}

/// A plain chat client (a WebSocket, or SockJS: any transport whose reads are whole
/// messages): it joins rooms by JSON message and receives each room event's JSON
/// body. Bad messages get `{"type":"ERROR","error":...}` and the connection stays open.
/// Its principal is made as a CONNECT's would be, from the handshake and `login` (the
/// `?login=` of `/ws/chat`, which names the session in anonymous mode only).
async fn plain_chat<T: Transport>(
    mut ws: T,
    rooms: Rooms,
    node: Arc<crate::node::Node>,
    shutdown: tokio_util::sync::CancellationToken,
    handshake: Option<crate::auth::Handshake>,
    login: Option<String>,
) {
    let id = node.next_session_id();
    let fallback = format!("anonymous-{id}");
    let principal = match node
        .auth
        .connect(handshake.as_ref(), login.as_deref(), None, None, fallback)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            // Admission refuses what this would; a token the handshake lacked ends here.
            let body = json!({ "type": "ERROR", "error": format!("authentication failed: {e}") });
            let _ = ws
                .write(&[crate::broker::OutFrame::text(body.to_string().into())])
                .await;
            ws.close().await;
            return;
        }
    };
    let session = SessionInfo { id, principal };
    let outbox = Arc::new(node.config.stomp.outbox());
    let recipient = Arc::new(Recipient::bodies_only(session.id.clone(), outbox.clone()));
    let mut subscriptions: HashMap<String, Arc<Subscription>> = HashMap::new();
    let mut buf = BytesMut::new();
    let mut pending = Vec::new();
    let progress = ws.progress();
    let send_timeout = node.config.stomp.send_timeout;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = outbox.ready() => {
                if outbox.drain(&mut pending) == crate::broker::outbox::Drained::Overflowed {
                    break;
                }
                // A client that reads nothing is let go like a STOMP slow consumer, so
                // it holds neither its task nor the publishers paced to it.
                let written = crate::transport::progress::write_watched(
                    &mut ws, &pending, progress.as_ref(), send_timeout,
                ).await;
                if !matches!(written, Ok(Ok(()))) {
                    break;
                }
                let bytes = Outbox::bytes_of(&pending);
                pending.clear();
                outbox.written(bytes);
            }
            read = ws.read(&mut buf) => {
                if !matches!(read, Ok(true)) {
                    break;
                }
                let text = std::mem::take(&mut buf);
                let result = plain_message(&text, &rooms, &node, &session, &recipient, &mut subscriptions).await;
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
    let left = rooms.leave_all(node.messaging.cluster(), &session.id).await;
    publish_all(&node.messaging, left, None);
    ws.close().await;
}

/// One message of a plain chat client: JOIN subscribes it to the room's topic.
async fn plain_message(
    text: &[u8],
    rooms: &Rooms,
    node: &crate::node::Node,
    session: &SessionInfo,
    recipient: &Arc<Recipient>,
    subscriptions: &mut HashMap<String, Arc<Subscription>>,
) -> Result<Option<Reply>, HandlerError> {
    let m = serde_json::from_slice::<PlainMessage>(text)
        .map_err(|e| HandlerError::new(format!("invalid chat message: {e}")))?;
    let bus = node.messaging.cluster();
    let room = m.chat_room_id.clone();
    let writer = &session.principal.name;
    match m.kind.as_str() {
        "JOIN" => {
            // The subscription's target first: a room this node cannot route to is
            // refused before anyone joins it.
            let target = node
                .router
                .broker_target(&rooms.topic(&room)?)
                .map_err(|e| HandlerError::new(e.message))?;
            let reply = rooms.join(bus, &room, &session.id, writer).await?;
            subscriptions.entry(room.clone()).or_insert_with(|| {
                let sub = Arc::new(Subscription::new(
                    room.clone(),
                    target,
                    AckMode::Auto,
                    recipient.clone(),
                ));
                node.broker.subscribe(sub.clone());
                sub
            });
            Ok(Some(reply))
        }
        "CHAT" | "TALK" => Ok(Some(rooms.chat(bus, &room, writer, &m.message).await?)),
        "LEAVE" => {
            if let Some(sub) = subscriptions.remove(&room) {
                node.broker.unsubscribe(&sub);
            }
            rooms.leave(bus, &room, &session.id).await
        }
        other => Err(HandlerError::new(format!(
            "unknown message type '{other}': use JOIN, CHAT or LEAVE"
        ))),
    }
}
