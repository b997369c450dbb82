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

use crate::destination::Pattern;

pub(super) const GROUP: &str = "herald";

/// Key and channel names for one prefix and user-destination prefix.
#[derive(Debug)]
pub(super) struct Keys {
    pub(super) prefix: String,
    user_prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str, user_prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            user_prefix: user_prefix.to_owned(),
        }
    }

    /// The channel (and whether it is a pattern) a topic subscription to `key` needs.
    pub(super) fn channel_for(&self, key: &str) -> (String, bool) {
        if let Some(rest) = key.strip_prefix(self.user_prefix.as_str()) {
            let user = rest.split('/').next().unwrap_or(rest);
            return (format!("{}:u:{user}", self.prefix), false);
        }
        let channel = format!("{}:t:", self.prefix);
        match Pattern::subscription(key) {
            None => (channel + key, false),
            Some(p) => (topic_glob(&channel, p.literal_prefix()), true),
        }
    }

    /// The channel a message routed under `key` is published on.
    pub(super) fn publish_channel(&self, key: &str) -> String {
        match key.strip_prefix(self.user_prefix.as_str()) {
            Some(rest) => format!(
                "{}:u:{}",
                self.prefix,
                rest.split('/').next().unwrap_or(rest)
            ),
            None => format!("{}:t:{key}", self.prefix),
        }
    }

    pub(super) fn queue_stream(&self, key: &str) -> String {
        format!("{}:q:{key}", self.prefix)
    }

    pub(super) fn queue_registry(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    pub(super) fn presence_keys(&self, scope: &str) -> (String, String) {
        (
            format!("{}:pr:{scope}", self.prefix),
            format!("{}:pz:{scope}", self.prefix),
        )
    }

    pub(super) fn map_key(&self, map: &str) -> String {
        format!("{}:map:{map}", self.prefix)
    }

    /// Where a session waits to be resumed, by its resume token.
    pub(super) fn parked(&self, token: &str) -> String {
        format!("{}:park:{token}", self.prefix)
    }

    pub(super) fn history_keys(&self, key: &str) -> (String, String) {
        (
            format!("{}:h:{key}", self.prefix),
            format!("{}:m:{key}", self.prefix),
        )
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
}
