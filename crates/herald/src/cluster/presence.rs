//! Presence and shared maps: who is online, who is in which room, and the chat
//! room registry, the same on every node.
//!
//! - `LocalShared`: one node, in memory; `Members`: a node's own entries, which
//!   the Redis bus re-stamps (`redis/presence.rs`, scripts in `redis/scripts.rs`).
//! - On Redis, a presence scope is a hash `{p}:pr:{scope}` (member → info) beside a
//!   sorted set `{p}:pz:{scope}` (member → expiry, by Redis' clock). Each node
//!   re-stamps its own members every `cluster.heartbeat`, with an expiry three
//!   heartbeats ahead; a read drops the expired ones first, so the members of a node
//!   that died vanish within three heartbeats and a restarted Redis is refilled by
//!   the next refresh. Shared maps are plain hashes `{p}:map:{name}`.

use std::collections::HashMap;

use parking_lot::Mutex;

/// This node's own presence entries, by scope: (member → info).
#[derive(Debug, Default)]
pub(crate) struct Members {
    scopes: Mutex<HashMap<String, HashMap<String, String>>>,
}

impl Members {
    pub(crate) fn join(&self, scope: &str, member: &str, info: &str) {
        self.scopes
            .lock()
            .entry(scope.to_owned())
            .or_default()
            .insert(member.to_owned(), info.to_owned());
    }

    /// Whether the member was here.
    pub(crate) fn leave(&self, scope: &str, member: &str) -> bool {
        let mut scopes = self.scopes.lock();
        let Some(members) = scopes.get_mut(scope) else {
            return false;
        };
        let was = members.remove(member).is_some();
        if members.is_empty() {
            scopes.remove(scope);
        }
        was
    }

    pub(crate) fn list(&self, scope: &str) -> Vec<(String, String)> {
        self.scopes
            .lock()
            .get(scope)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Every entry, in chunks of at most `chunk` per scope (for a refresh).
    #[cfg(feature = "redis")]
    pub(crate) fn chunks(&self, chunk: usize) -> Vec<(String, Vec<(String, String)>)> {
        let scopes = self.scopes.lock();
        let mut out = Vec::new();
        for (scope, members) in scopes.iter() {
            let all: Vec<(String, String)> = members
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for c in all.chunks(chunk.max(1)) {
                out.push((scope.clone(), c.to_vec()));
            }
        }
        out
    }
}

/// Presence and maps of a node alone.
#[derive(Debug, Default)]
pub(crate) struct LocalShared {
    pub(crate) members: Members,
    maps: Mutex<HashMap<String, HashMap<String, String>>>,
}

impl LocalShared {
    pub(crate) fn put(&self, map: &str, key: &str, value: &str, only_new: bool) -> bool {
        let mut maps = self.maps.lock();
        let m = maps.entry(map.to_owned()).or_default();
        if only_new && m.contains_key(key) {
            return false;
        }
        m.insert(key.to_owned(), value.to_owned());
        true
    }

    pub(crate) fn get(&self, map: &str, key: &str) -> Option<String> {
        self.maps.lock().get(map).and_then(|m| m.get(key).cloned())
    }

    pub(crate) fn len(&self, map: &str) -> usize {
        self.maps.lock().get(map).map_or(0, HashMap::len)
    }

    pub(crate) fn remove(&self, map: &str, key: &str) -> bool {
        let mut maps = self.maps.lock();
        let Some(m) = maps.get_mut(map) else {
            return false;
        };
        let removed = m.remove(key).is_some();
        if m.is_empty() {
            maps.remove(map);
        }
        removed
    }

    pub(crate) fn all(&self, map: &str) -> Vec<(String, String)> {
        self.maps
            .lock()
            .get(map)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

/// The distinct infos of a presence listing with how many members each has, sorted
/// by info: users online with their session counts, a room's member names.
pub fn tally(entries: &[(String, String)]) -> Vec<(String, usize)> {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, info) in entries {
        *counts.entry(info.as_str()).or_default() += 1;
    }
    counts.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_join_leave_and_chunk() {
        let m = Members::default();
        m.join("users", "s1", "alice");
        m.join("users", "s2", "alice");
        m.join("users", "s3", "bob");
        m.join("room:1", "s1", "Alice");
        assert!(m.leave("users", "s3"));
        assert!(!m.leave("users", "s3"));
        let mut users = m.list("users");
        users.sort();
        assert_eq!(
            users,
            vec![("s1".into(), "alice".into()), ("s2".into(), "alice".into())]
        );
        assert_eq!(tally(&users), vec![("alice".into(), 2)]);
        let chunks = m.chunks(1);
        assert_eq!(
            chunks.len(),
            3,
            "two users entries and one room entry, one per chunk"
        );
        assert!(m.leave("room:1", "s1"));
        assert!(m.list("room:1").is_empty());
    }

    #[test]
    fn maps_keep_first_value_when_asked() {
        let s = LocalShared::default();
        assert!(s.put("rooms", "a", "1", true));
        assert!(!s.put("rooms", "a", "2", true));
        assert_eq!(s.get("rooms", "a").as_deref(), Some("1"));
        assert!(s.put("rooms", "a", "3", false));
        assert_eq!(s.all("rooms"), vec![("a".into(), "3".into())]);
        assert_eq!(s.get("rooms", "b"), None);
    }
}
