//! Shared maps on Redis: one hash per map, `{p}:map:{name}`, in order with the
//! publishes.

use super::RedisBus;
use super::replies::{as_string, as_u64, pairs};
use crate::cluster::BoxFuture;
use crate::cluster::SharedMaps;

impl SharedMaps for RedisBus {
    fn map_put(
        &self,
        map: &str,
        key: &str,
        value: &str,
        only_new: bool,
    ) -> BoxFuture<Result<bool, String>> {
        let mut cmd = redis::cmd(if only_new { "HSETNX" } else { "HSET" });
        cmd.arg(self.inner.keys.map_key(map)).arg(key).arg(value);
        let answer = self.inner.call(cmd);
        Box::pin(async move {
            let v = answer.await?;
            Ok(!only_new || as_u64(&v) == Some(1))
        })
    }

    fn map_get(&self, map: &str, key: &str) -> BoxFuture<Result<Option<String>, String>> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.inner.keys.map_key(map)).arg(key);
        let answer = self.inner.call(cmd);
        Box::pin(async move { Ok(as_string(&answer.await?)) })
    }

    fn map_all(&self, map: &str) -> BoxFuture<Result<Vec<(String, String)>, String>> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.inner.keys.map_key(map));
        let answer = self.inner.call(cmd);
        Box::pin(async move { Ok(pairs(answer.await?)) })
    }

    fn map_len(&self, map: &str) -> BoxFuture<Result<usize, String>> {
        let mut cmd = redis::cmd("HLEN");
        cmd.arg(self.inner.keys.map_key(map));
        let answer = self.inner.call(cmd);
        Box::pin(async move {
            let v = answer.await?;
            as_u64(&v)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .ok_or_else(|| format!("HLEN answered {v:?}"))
        })
    }

    fn map_remove(&self, map: &str, key: &str) -> BoxFuture<Result<bool, String>> {
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(self.inner.keys.map_key(map)).arg(key);
        let answer = self.inner.call(cmd);
        Box::pin(async move { Ok(as_u64(&answer.await?) == Some(1)) })
    }
}
