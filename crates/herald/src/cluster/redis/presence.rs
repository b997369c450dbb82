//! Presence on Redis: this node's members written through the writer, re-stamped
//! by the health task, read by a script that drops the expired first.

use super::replies::pairs;
use super::{Inner, RedisBus};
use crate::cluster::BoxFuture;
use crate::cluster::Presence;

/// Members re-stamped per command when a node refreshes its presence.
pub(super) const REFRESH_CHUNK: usize = 500;

impl Inner {
    /// Presence entries live this long unless re-stamped.
    pub(super) fn presence_ttl_ms(&self) -> u64 {
        (self.config.heartbeat.as_millis() as u64).max(100) * 3
    }

    pub(super) fn join_cmd(&self, scope: &str, entries: &[(String, String)]) -> redis::Cmd {
        let (hash, zset) = self.keys.presence_keys(scope);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.scripts.join)
            .arg(2)
            .arg(hash)
            .arg(zset)
            .arg(self.presence_ttl_ms());
        for (member, info) in entries {
            cmd.arg(member).arg(info);
        }
        cmd
    }
}

impl Presence for RedisBus {
    fn presence_join(&self, scope: &str, member: &str, info: &str) {
        let inner = &self.inner;
        inner.members.join(scope, member, info);
        inner.send_call(inner.join_cmd(scope, &[(member.to_owned(), info.to_owned())]));
    }

    fn presence_leave(&self, scope: &str, member: &str) {
        let inner = &self.inner;
        if inner.members.leave(scope, member) {
            let (hash, zset) = inner.keys.presence_keys(scope);
            let mut del = redis::cmd("HDEL");
            del.arg(hash).arg(member);
            inner.send_call(del);
            let mut rem = redis::cmd("ZREM");
            rem.arg(zset).arg(member);
            inner.send_call(rem);
        }
    }

    /// While Redis is unreachable, this node's own members (degraded, but a room
    /// still shows who is here).
    fn presence(&self, scope: &str) -> BoxFuture<Result<Vec<(String, String)>, String>> {
        let inner = self.inner.clone();
        let (hash, zset) = inner.keys.presence_keys(scope);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&inner.scripts.list).arg(2).arg(hash).arg(zset);
        let answer = inner.call(cmd);
        let scope = scope.to_owned();
        Box::pin(async move {
            match answer.await {
                Ok(v) => Ok(pairs(v)),
                Err(e) => {
                    tracing::debug!(scope = %scope, error = %e, "presence from this node only");
                    Ok(inner.members.list(&scope))
                }
            }
        })
    }
}
