//! Recovery by offset: what a resubscribing subscriber missed, read from a topic's
//! history stream.

use std::sync::Arc;

use redis::Value;

use super::Inner;
use super::replies::{StreamEntry, entry_list};
use super::wire::decode;
use crate::cluster::{Recovery, Replay, Since};
use crate::message::{Message, Position};

impl Inner {
    /// What a subscriber to `key` missed since `since`, read from its history stream.
    pub(super) fn recover(self: &Arc<Self>, key: &str, since: Since) -> Recovery {
        let inner = self.clone();
        let (hist, meta) = inner.keys.history_keys(key);
        let key = key.to_owned();
        Recovery::Later(Box::pin(async move {
            let mut conn = inner.conn();
            let start = format!("{}-0", since.offset.saturating_add(1));
            let r: redis::RedisResult<(Vec<Option<String>>, Value)> = redis::pipe()
                .cmd("HMGET")
                .arg(&meta)
                .arg("o")
                .arg("e")
                .cmd("XRANGE")
                .arg(&hist)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(inner.history_size.max(1))
                .query_async(&mut conn)
                .await;
            let Ok((top, entries)) = r else {
                return Replay::default();
            };
            let last: u64 = top
                .first()
                .cloned()
                .flatten()
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            let epoch = top.get(1).cloned().flatten();
            if let Some(e) = &epoch {
                inner.heard_at_least(&key, last, e);
            }
            let same_epoch = match (&since.epoch, &epoch) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => since.offset == 0,
                (None, _) => true,
            };
            let epoch: Arc<str> = epoch.unwrap_or_default().into();
            let missed: Vec<Arc<Message>> = history(entries, &epoch)
                .into_iter()
                .map(|(_, m)| Arc::new(m))
                .collect();
            let first = missed
                .first()
                .and_then(|m| m.position.as_ref().map(|p| p.offset));
            let complete = since.offset == last || first == Some(since.offset + 1);
            let recovered = same_epoch && since.offset <= last && complete;
            Replay {
                missed: if recovered { missed } else { Vec::new() },
                recovered,
            }
        }))
    }
}

/// History stream entries (`XRANGE`'s answer) as messages of `epoch`, stamped with
/// their offsets (the entry ids), with the node each came from.
pub(super) fn history(entries: Value, epoch: &Arc<str>) -> Vec<(String, Message)> {
    entry_list(entries)
        .into_iter()
        .filter_map(|StreamEntry { id, payload, .. }| {
            let offset = id
                .split('-')
                .next()
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            let (origin, mut m) = decode(&payload)?;
            m.position = Some(Position {
                offset,
                epoch: epoch.clone(),
            });
            Some((origin, m))
        })
        .collect()
}
