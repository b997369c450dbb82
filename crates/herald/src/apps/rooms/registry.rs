//! The rooms themselves: the registry in the cluster's shared map `rooms` (a room made
//! on one node exists on all), membership as presence scopes `room:{id}` (a dead
//! node's members expire), which rooms this node's sessions joined under which name,
//! the events a room's topic carries, and the sweep that removes rooms left empty
//! for `apps.room_idle_timeout`. Knows nothing of how a client reaches it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::apps::now_rfc3339;
use crate::cluster::presence::tally;
use crate::cluster::{Bus, Recovery, Since};
use crate::config::Config;
use crate::handler::{HandlerError, Reply};
use crate::ops::metrics;

const MAX_NAME: usize = 100;
/// Chat messages a room's snapshot shows, at most (fewer when its history keeps fewer).
const RECENT: u64 = 20;
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

    /// What a page opening the room shows before its topic's live events: the room,
    /// its members, and its most recent chat messages (from the topic's history).
    pub(crate) async fn snapshot(
        &self,
        bus: &Arc<dyn Bus>,
        id: &str,
    ) -> Result<serde_json::Value, HandlerError> {
        let info = self
            .get(bus, id)
            .await?
            .ok_or_else(|| HandlerError::new(format!("unknown room '{id}'")))?;
        let recent = recent_chat(bus, &self.topic(&info.id)?).await;
        Ok(json!({
            "chatRoomId": info.id,
            "name": info.name,
            "createdAt": info.created_at,
            "members": info.members,
            "recent": recent,
        }))
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

/// The last [`RECENT`] CHAT events of a room's topic, oldest first; none when its
/// history is gone or cannot be read now (the snapshot still shows the room).
async fn recent_chat(bus: &Arc<dyn Bus>, topic: &str) -> Vec<serde_json::Value> {
    let Ok(Some(top)) = bus.position(topic).await else {
        return Vec::new();
    };
    let since = Since {
        offset: top.offset.saturating_sub(RECENT),
        epoch: Some(top.epoch.to_string()),
    };
    let replay = match bus.recover(topic, since) {
        Recovery::Ready(r) => r,
        Recovery::Later(r) => r.await,
    };
    replay
        .missed
        .iter()
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.body).ok())
        .filter(|v| v["type"] == "CHAT")
        .collect()
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
