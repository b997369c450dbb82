//! Topics over Pub/Sub: channels subscribed while local subscriptions need them,
//! messages received and de-duplicated, and what Pub/Sub missed filled from history.

use std::collections::VecDeque;
use std::sync::Arc;

use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};

use super::history::history;
use super::keys::glob_matches;
use super::presence::REFRESH_CHUNK;
use super::replies::as_string;
use super::wire::{decode, split_published};
use super::writer::{ANSWER_TIMEOUT, Cmd};
use super::{Inner, RedisBus};
use crate::cluster::BoxFuture;
use crate::cluster::{Confirm, Outcome, PubSub, Recovery, Since};
use crate::message::{Message, Position};

/// What this node heard last on one exact topic routing key.
#[derive(Default)]
pub(super) struct Heard {
    /// Local subscriptions to the key.
    subscriptions: usize,
    last: Option<Position>,
    /// Nothing heard yet, but a replay read the history up to here: a first message
    /// past the next offset means those between were missed.
    floor: Option<Position>,
    /// The offsets and message ids heard last: an offset heard again with another
    /// message is not a duplicate but a new message, after a failover lost the
    /// newest entries (Pub/Sub had carried them; the promoted replica never got
    /// them, so its offsets run over them again).
    recent: VecDeque<(u64, String)>,
}

/// Offsets [`Heard::recent`] remembers.
const RECENT: usize = 256;

impl Heard {
    /// The last position heard is now `p`; offsets of another epoch are forgotten.
    fn moved_to(&mut self, p: &Position) {
        if self.last.as_ref().is_some_and(|l| l.epoch != p.epoch) {
            self.recent.clear();
        }
        self.last = Some(p.clone());
    }

    fn remember(&mut self, offset: u64, id: &str) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((offset, id.to_owned()));
    }
}

/// How a message heard on Pub/Sub relates to what came before on its key.
pub(super) enum Sequence {
    /// The next one (or the key is not followed).
    Next,
    /// Heard already (filled from history first).
    Again,
    /// Messages from this offset on were missed.
    After(u64),
}

impl Inner {
    pub(super) async fn subscribe(&self, ch: String, pattern: bool) {
        // Still wanted? (a quick subscribe/unsubscribe pair needs no round trip)
        if !self.channels.lock().contains_key(&(ch.clone(), pattern)) {
            return;
        }
        if !self.is_up() {
            return; // the health task subscribes what is missing once Redis is back
        }
        let mut conn = self.conn();
        let mut r = conn.subscribe(&ch, pattern).await;
        if r.is_ok() && pattern && self.keys.tagged {
            r = self.announce(&ch).await;
        }
        match r {
            Ok(()) => {
                self.listening.lock().insert((ch, pattern));
            }
            Err(e) => {
                // The manager resubscribes what it tracked; what failed is retried
                // by the health task.
                tracing::debug!(channel = %ch, error = %e, "Redis SUBSCRIBE failed; will retry");
                self.set_connected(false, &e.to_string());
            }
        }
    }

    pub(super) async fn unsubscribe(&self, ch: String, pattern: bool) {
        if self.channels.lock().contains_key(&(ch.clone(), pattern)) {
            return;
        }
        self.listening.lock().remove(&(ch.clone(), pattern));
        if !self.is_up() {
            self.unsubscribe_later.lock().push((ch, pattern));
            return;
        }
        let mut conn = self.conn();
        let _ = conn.unsubscribe(&ch, pattern).await;
    }

    pub(super) async fn receive(self: Arc<Self>, mut pushes: mpsc::UnboundedReceiver<PushInfo>) {
        loop {
            let push = tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.resync.notified() => {
                    self.catch_up().await;
                    continue;
                }
                p = pushes.recv() => match p { Some(p) => p, None => return },
            };
            let payload = match (push.kind, &push.data[..]) {
                (PushKind::Message, [channel, Value::BulkString(p)])
                    if as_string(channel).is_some_and(|c| self.is_announcement(&c)) =>
                {
                    if let Ok(glob) = std::str::from_utf8(p) {
                        self.wildcard_announced(glob.to_owned());
                    }
                    continue;
                }
                (PushKind::Message | PushKind::SMessage, [_, Value::BulkString(p)]) => p,
                (PushKind::PMessage, [pattern, channel, Value::BulkString(p)]) => {
                    match (as_string(pattern), as_string(channel)) {
                        (Some(pat), Some(ch)) if self.first_listener(&pat, &ch) => p,
                        _ => continue,
                    }
                }
                (PushKind::SUnsubscribe, [channel, ..]) => {
                    if let Some(ch) = as_string(channel) {
                        self.slot_moved(ch);
                    }
                    continue;
                }
                (PushKind::Disconnection, _) => {
                    self.set_connected(false, "the connection to Redis was lost");
                    continue;
                }
                _ => continue,
            };
            let Some((offset, epoch, payload)) = split_published(payload) else {
                continue;
            };
            let Some((origin, mut m)) = decode(payload) else {
                tracing::warn!("undecodable message on a Herald channel");
                continue;
            };
            let position = Position {
                offset,
                epoch: epoch.into(),
            };
            match self.sequence(&m.key, &position, &m.id) {
                Sequence::Next => {}
                Sequence::Again => continue,
                Sequence::After(from) => {
                    self.fill(&m.key, &position.epoch, from, offset - 1).await;
                }
            }
            if origin == self.node_id {
                continue; // our own echo: delivered when the script answered
            }
            m.position = Some(position);
            if let Some(s) = self.sink() {
                s.deliver(Arc::new(m));
            }
        }
    }

    /// Redis unsubscribes a sharded channel itself when its slot moves to another
    /// shard (resharding), and the cluster connection then forgets it: subscribed
    /// again, the cluster connection finds the new owner. What was published in
    /// between is filled from the history when the next message shows the gap.
    fn slot_moved(&self, ch: String) {
        let key = (ch, false);
        if self.channels.lock().contains_key(&key) && self.listening.lock().remove(&key) {
            tracing::debug!(channel = %key.0, "sharded channel unsubscribed by Redis (its slot moved): subscribing again");
            let _ = self.tx.send(Cmd::Subscribe(key.0, false));
        }
    }

    /// Records that `key`'s message `id` at `p` was heard, and how it follows the last
    /// one (keys with exact local subscriptions only).
    pub(super) fn sequence(&self, key: &str, p: &Position, id: &str) -> Sequence {
        let mut heard = self.heard.lock();
        let Some(h) = heard.get_mut(key) else {
            return Sequence::Next;
        };
        let seq = match (&h.last, &h.floor) {
            (None, Some(f)) if f.epoch == p.epoch && p.offset > f.offset + 1 => {
                Sequence::After(f.offset + 1)
            }
            (None, _) => Sequence::Next,
            (Some(l), _) if l.epoch == p.epoch && p.offset <= l.offset => {
                let same_offset = |(o, _): &&(u64, String)| *o == p.offset;
                let again = h.recent.iter().filter(same_offset).count() == 0
                    || h.recent
                        .iter()
                        .filter(same_offset)
                        .any(|(_, seen)| seen == id);
                if again {
                    return Sequence::Again;
                }
                // The offsets run again from here: what was heard past it is gone.
                h.recent.retain(|(o, _)| *o < p.offset);
                Sequence::Next
            }
            (Some(l), _) if l.epoch == p.epoch && p.offset > l.offset + 1 => {
                Sequence::After(l.offset + 1)
            }
            // A new epoch began after the last message heard (Redis lost the history,
            // or it expired): all of it is news.
            (Some(l), _) if l.epoch != p.epoch && p.offset > 1 => Sequence::After(1),
            _ => Sequence::Next,
        };
        h.moved_to(p);
        h.remember(p.offset, id);
        seq
    }

    /// A replay read `key`'s history up to `offset` of `epoch`: when nothing was heard
    /// on it yet, a message published between the read and the channel's subscription
    /// is noticed as missed (and filled) by the next one heard. Messages up to the
    /// floor still count as news: other local subscribers may not have them.
    pub(super) fn heard_at_least(&self, key: &str, offset: u64, epoch: &str) {
        if let Some(h) = self.heard.lock().get_mut(key)
            && h.last.is_none()
        {
            h.floor = Some(Position {
                offset,
                epoch: epoch.into(),
            });
        }
    }

    /// Delivers from `key`'s history what this node missed, offsets `from..=to` of
    /// `epoch` (other nodes' messages: this node's own were delivered when sent).
    pub(super) async fn fill(&self, key: &str, epoch: &Arc<str>, from: u64, to: u64) {
        let (hist, meta) = self.keys.history_keys(key);
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        pipe.cmd("HGET")
            .arg(&meta)
            .arg("e")
            .cmd("XRANGE")
            .arg(&hist)
            .arg(format!("{from}-0"))
            .arg(format!("{to}-0"))
            .arg("COUNT")
            .arg(self.history_size.max(1));
        let r: Result<redis::RedisResult<(Option<String>, Value)>, _> =
            tokio::time::timeout(ANSWER_TIMEOUT, pipe.query_async(&mut conn)).await;
        let (Ok(Ok((Some(e), entries))), Some(sink)) = (r, self.sink()) else {
            tracing::debug!(destination = %key, from, to, "missed messages could not be read from history");
            return;
        };
        if *e != **epoch {
            return;
        }
        let mut filled = 0;
        for (origin, m) in history(entries, epoch) {
            if let (Some(h), Some(p)) = (self.heard.lock().get_mut(key), &m.position) {
                h.remember(p.offset, &m.id);
            }
            if origin != self.node_id {
                sink.deliver(Arc::new(m));
                filled += 1;
            }
        }
        if filled > 0 {
            tracing::debug!(destination = %key, filled, "delivered from history what Pub/Sub missed");
        }
    }

    /// After an outage: what each followed key got meanwhile that this node did not
    /// hear (Pub/Sub does not keep messages for a node that was away).
    pub(super) async fn catch_up(&self) {
        let followed: Vec<(String, Position)> = self
            .heard
            .lock()
            .iter()
            .filter_map(|(k, h)| h.last.clone().map(|l| (k.clone(), l)))
            .collect();
        for chunk in followed.chunks(REFRESH_CHUNK) {
            let mut pipe = redis::pipe();
            for (key, _) in chunk {
                pipe.cmd("HMGET")
                    .arg(self.keys.history_keys(key).1)
                    .arg("o")
                    .arg("e");
            }
            // The keys live in many slots on a cluster: `Conn::pipeline` splits them.
            let mut conn = self.conn();
            let tops: Vec<(Option<u64>, Option<String>)> =
                match tokio::time::timeout(ANSWER_TIMEOUT, conn.pipeline(&pipe, None, &|_| false))
                    .await
                {
                    Ok(Ok(a)) => a
                        .replies
                        .into_iter()
                        .map(|r| {
                            r.ok()
                                .and_then(|v| redis::from_redis_value(v).ok())
                                .unwrap_or((None, None))
                        })
                        .collect(),
                    _ => return,
                };
            for ((key, last), top) in chunk.iter().zip(tops) {
                let (Some(top), Some(epoch)) = top else {
                    continue;
                };
                let from = if *epoch == *last.epoch {
                    if top <= last.offset {
                        continue;
                    }
                    last.offset + 1
                } else {
                    1
                };
                let epoch: Arc<str> = epoch.into();
                match self.heard.lock().get_mut(key) {
                    Some(h) => h.moved_to(&Position {
                        offset: top,
                        epoch: epoch.clone(),
                    }),
                    None => continue,
                }
                self.fill(key, &epoch, from, top).await;
            }
        }
    }

    /// Redis sends a message once per matching subscription (the exact channel and
    /// each matching pattern); the broker matches every local subscription itself,
    /// so only one of them counts: the exact channel, else the least pattern.
    pub(super) fn first_listener(&self, pattern: &str, channel: &str) -> bool {
        let listening = self.listening.lock();
        let exact = self.keys.exact_of_pattern_channel(channel);
        if exact.is_some_and(|e| listening.contains(&(e, false))) {
            return false;
        }
        listening
            .iter()
            .filter(|(p, is_pattern)| *is_pattern && glob_matches(p, channel))
            .map(|(p, _)| p.as_str())
            .min()
            == Some(pattern)
    }
}

impl PubSub for RedisBus {
    fn publish(&self, message: Message, confirm: Option<Confirm>) -> Option<Arc<Message>> {
        // The writer decides: Redis now, or the outage spool.
        let waiter = confirm.map(|c| (c, tokio::time::Instant::now()));
        if let Err(mpsc::error::SendError(Cmd::Publish(_, Some((c, _))))) =
            self.inner.tx.send(Cmd::Publish(message, waiter))
        {
            crate::ops::metrics::bus_refused("shutdown", 1);
            let _ = c.send(Outcome::refused("the server is shutting down"));
        }
        None
    }

    fn confirms_later(&self) -> bool {
        true
    }

    fn flushed(&self) -> Option<BoxFuture<()>> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inner.tx.send(Cmd::Barrier(tx));
        Some(Box::pin(async move {
            let _ = rx.await;
        }))
    }

    fn subscribed(&self, key: &str) {
        let inner = &self.inner;
        let ch = inner.keys.channel_for(key);
        if !crate::destination::is_wildcard(key) {
            inner
                .heard
                .lock()
                .entry(key.to_owned())
                .or_default()
                .subscriptions += 1;
        }
        let mut channels = inner.channels.lock();
        let n = channels.entry(ch.clone()).or_default();
        *n += 1;
        if *n == 1 {
            let _ = inner.tx.send(Cmd::Subscribe(ch.0, ch.1));
        }
    }

    fn unsubscribed(&self, key: &str) {
        let inner = &self.inner;
        let ch = inner.keys.channel_for(key);
        {
            let mut heard = inner.heard.lock();
            if let Some(h) = heard.get_mut(key) {
                h.subscriptions -= 1;
                if h.subscriptions == 0 {
                    heard.remove(key);
                }
            }
        }
        let mut channels = inner.channels.lock();
        if let Some(n) = channels.get_mut(&ch) {
            *n -= 1;
            if *n == 0 {
                channels.remove(&ch);
                let _ = inner.tx.send(Cmd::Unsubscribe(ch.0, ch.1));
            }
        }
    }

    fn recover(&self, key: &str, since: Since) -> Recovery {
        self.inner.recover(key, since)
    }

    fn position(&self, key: &str) -> BoxFuture<Result<Option<Position>, String>> {
        let heard = self
            .inner
            .heard
            .lock()
            .get(key)
            .and_then(|h| h.last.clone());
        if let Some(p) = heard {
            return Box::pin(std::future::ready(Ok(Some(p))));
        }
        // Nothing heard since this node listens: the history's own newest.
        let inner = self.inner.clone();
        let meta = inner.keys.history_keys(key).1;
        Box::pin(async move {
            let mut conn = inner.conn();
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(&meta).arg("o").arg("e");
            let top: (Option<u64>, Option<String>) =
                tokio::time::timeout(ANSWER_TIMEOUT, cmd.query_async(&mut conn))
                    .await
                    .map_err(|_| "Redis did not answer".to_owned())?
                    .map_err(|e| e.to_string())?;
            Ok(match top {
                (Some(offset), Some(epoch)) => Some(Position {
                    offset,
                    epoch: epoch.into(),
                }),
                _ => None,
            })
        })
    }
}
