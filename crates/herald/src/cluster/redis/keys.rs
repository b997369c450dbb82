//! Where everything lives in Redis: keys and channels under `cluster.key_prefix`.
//!
//! - `{p}:t:{key}`: a topic's channel; `{p}:u:{user}`: one channel for every user
//!   destination of one user; a wildcard subscription is a `PSUBSCRIBE` glob on its
//!   literal prefix ([`topic_glob`]).
//! - `{p}:h:{key}`, `{p}:m:{key}`: a topic's history stream and its meta hash
//!   (offset `o`, epoch `e`).
//! - `{p}:q:{key}`: a queue's stream (consumer group [`GROUP`]); `{p}:queues`: the
//!   set of queue keys, for wildcard consumers.
//! - `{p}:pr:{scope}`, `{p}:pz:{scope}`: a presence scope's hash and expiry set;
//!   `{p}:map:{name}`: a shared map.
//! - `{p}:park:{token}`: a session kept for resuming (expires with its window).
//!
//! On a Redis Cluster the same names carry a hash tag, so that what one script
//! touches is in one slot: the destination's key (or, for user destinations,
//! `/user/{name}`, so a user's channel and histories share a slot) between braces,
//! as in `{p}:h:{/topic/a}` and `{p}:h:{/user/bob}/queue/x`; presence scopes and maps
//! are tagged by their name (parked sessions are single keys, untagged). Topic and
//! user channels are sharded channels (`SSUBSCRIBE`) in the slot of their
//! destination. Sharded Pub/Sub has no patterns, so wildcard subscriptions listen to
//! classic channels `{p}:w:{key}`, on which a publish puts a copy only while some
//! node has a wildcard matching it (`wild.rs`). A single server keeps the untagged
//! names (a node upgraded in place finds its streams where they were).

use crate::destination::Pattern;

pub(super) const GROUP: &str = "herald";

/// Key and channel names for one prefix and user-destination prefix.
#[derive(Debug)]
pub(super) struct Keys {
    pub(super) prefix: String,
    user_prefix: String,
    /// Hash-tagged names, for a Redis Cluster.
    pub(super) tagged: bool,
}

impl Keys {
    pub(super) fn new(prefix: &str, user_prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            user_prefix: user_prefix.to_owned(),
            tagged: false,
        }
    }

    /// The names a Redis Cluster needs.
    pub(super) fn cluster(prefix: &str, user_prefix: &str) -> Keys {
        Keys {
            tagged: true,
            ..Keys::new(prefix, user_prefix)
        }
    }

    /// `{p}:{kind}:{key}`, hash-tagged by `key`'s destination on a cluster. Redis
    /// hashes up to the first `}`, so the tag stops before one in the key: every name
    /// of one destination still hashes alike.
    fn name(&self, kind: &str, key: &str) -> String {
        if !self.tagged {
            return format!("{}:{kind}:{key}", self.prefix);
        }
        let tag_len = match key.strip_prefix(self.user_prefix.as_str()) {
            Some(rest) => self.user_prefix.len() + rest.find('/').unwrap_or(rest.len()),
            None => key.len(),
        };
        let tag_len = key[..tag_len].find('}').unwrap_or(tag_len);
        let (tag, rest) = key.split_at(tag_len);
        format!("{}:{kind}:{{{tag}}}{rest}", self.prefix)
    }

    /// The user destination prefix and user of a user routing key (`/user/bob`).
    fn user_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(self.user_prefix.as_str())?;
        let user = rest.split('/').next().unwrap_or(rest);
        Some(&key[..self.user_prefix.len() + user.len()])
    }

    /// The channel (and whether it is a pattern) a topic subscription to `key` needs.
    pub(super) fn channel_for(&self, key: &str) -> (String, bool) {
        if self.user_of(key).is_some() {
            return (self.publish_channel(key), false);
        }
        match Pattern::subscription(key) {
            None => (self.name("t", key), false),
            Some(p) => (
                topic_glob(&self.pattern_channel(""), p.literal_prefix()),
                true,
            ),
        }
    }

    /// The channel a message routed under `key` is published on.
    pub(super) fn publish_channel(&self, key: &str) -> String {
        match self.user_of(key) {
            Some(user) if self.tagged => self.name("u", user),
            Some(user) => format!("{}:u:{}", self.prefix, &user[self.user_prefix.len()..]),
            None => self.name("t", key),
        }
    }

    /// The channel wildcard subscriptions match: the topic channel on one server,
    /// the classic copy channel `{p}:w:{key}` on a cluster.
    pub(super) fn pattern_channel(&self, key: &str) -> String {
        let kind = if self.tagged { "w" } else { "t" };
        format!("{}:{kind}:{key}", self.prefix)
    }

    /// The exact channel a message heard on pattern channel `channel` was also
    /// published on (to count it once).
    pub(super) fn exact_of_pattern_channel(&self, channel: &str) -> Option<String> {
        let key = channel.strip_prefix(&self.pattern_channel(""))?;
        Some(self.publish_channel(key))
    }

    pub(super) fn queue_stream(&self, key: &str) -> String {
        self.name("q", key)
    }

    pub(super) fn queue_registry(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    pub(super) fn presence_keys(&self, scope: &str) -> (String, String) {
        (self.name("pr", scope), self.name("pz", scope))
    }

    pub(super) fn map_key(&self, map: &str) -> String {
        self.name("map", map)
    }

    /// Where a session waits to be resumed, by its resume token.
    pub(super) fn parked(&self, token: &str) -> String {
        format!("{}:park:{token}", self.prefix)
    }

    pub(super) fn history_keys(&self, key: &str) -> (String, String) {
        (self.name("h", key), self.name("m", key))
    }
}

/// The `PSUBSCRIBE` glob for a wildcard subscription: `channel` and the pattern's
/// literal prefix, glob characters escaped, each separator either separator (the
/// grammar reads `/` and `.` alike), then anything. It matches every channel the
/// pattern's destinations publish on, and more; the broker matches exactly.
pub(super) fn topic_glob(channel: &str, literal: &str) -> String {
    let mut glob = String::with_capacity(channel.len() + literal.len() * 2 + 1);
    let chars = channel.chars().map(|c| (c, false));
    for (c, in_literal) in chars.chain(literal.chars().map(|c| (c, true))) {
        match c {
            '/' | '.' if in_literal => glob.push_str("[./]"),
            '*' | '?' | '[' | ']' | '\\' => {
                glob.push('\\');
                glob.push(c);
            }
            c => glob.push(c),
        }
    }
    glob.push('*');
    glob
}

/// Whether `channel` matches a glob [`topic_glob`] made.
pub(super) fn glob_matches(glob: &str, channel: &str) -> bool {
    let (mut g, mut c) = (glob.as_bytes(), channel.as_bytes());
    loop {
        (g, c) = match (g, c) {
            ([b'*'], _) => return true,
            ([], rest) => return rest.is_empty(),
            ([b'[', b'.', b'/', b']', g @ ..], [b'.' | b'/', c @ ..]) => (g, c),
            ([b'\\', x, g @ ..], [y, c @ ..]) if x == y => (g, c),
            ([b'\\', ..], _) => return false,
            ([x, g @ ..], [y, c @ ..]) if x == y => (g, c),
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_prefix_globs() {
        let i = Keys::new(
            &crate::cluster::config::ClusterConfig::default().key_prefix,
            "/user/",
        );
        assert_eq!(
            i.channel_for("/topic/a"),
            ("herald:t:/topic/a".into(), false)
        );
        let glob = "herald:t:[./]topic[./]x\\?*";
        assert_eq!(i.channel_for("/topic/x?.*"), (glob.into(), true));
        assert!(glob_matches(glob, "herald:t:/topic/x?.a"));
        assert!(glob_matches(glob, "herald:t:/topic/x?"));
        assert!(!glob_matches(glob, "herald:t:/topic/xy"));
        assert_eq!(
            i.channel_for("/topic/a*b/**"),
            ("herald:t:[./]topic[./]a\\*b*".into(), true)
        );
        assert!(glob_matches(
            "herald:t:[./]topic[./]a\\*b*",
            "herald:t:/topic/a*b"
        ));
        assert_eq!(
            i.channel_for("/user/bob/queue/*"),
            ("herald:u:bob".into(), false)
        );
        assert_eq!(i.publish_channel("/user/bob/queue/x"), "herald:u:bob");
    }

    #[test]
    fn a_cluster_tags_every_name_by_destination() {
        let k = Keys::cluster("herald", "/user/");
        assert_eq!(k.history_keys("/topic/a").0, "herald:h:{/topic/a}");
        assert_eq!(k.publish_channel("/topic/a"), "herald:t:{/topic/a}");
        assert_eq!(
            k.channel_for("/topic/a"),
            ("herald:t:{/topic/a}".into(), false)
        );
        // A user's channel and histories share a slot.
        assert_eq!(
            k.history_keys("/user/bob/queue/x").1,
            "herald:m:{/user/bob}/queue/x"
        );
        assert_eq!(
            k.publish_channel("/user/bob/queue/x"),
            "herald:u:{/user/bob}"
        );
        assert_eq!(k.channel_for("/user/bob/queue/*").0, "herald:u:{/user/bob}");
        // A brace in the key ends the tag, the same way for every name.
        assert_eq!(k.queue_stream("/queue/a}b"), "herald:q:{/queue/a}}b");
        assert_eq!(k.history_keys("/topic/a}b").0, "herald:h:{/topic/a}}b");
        // Wildcards listen to the classic copies.
        assert_eq!(
            k.channel_for("/topic/chat.*"),
            ("herald:w:[./]topic[./]chat*".into(), true)
        );
        assert_eq!(
            k.exact_of_pattern_channel("herald:w:/topic/chat.1")
                .as_deref(),
            Some("herald:t:{/topic/chat.1}")
        );
        assert_eq!(k.presence_keys("users").0, "herald:pr:{users}");
    }
}
