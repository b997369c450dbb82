//! Sessions kept for resuming on Redis: one string per session, `{p}:park:{token}`,
//! stored with the resume window as its expiry and taken back with `GETDEL`, so a
//! token resumes once, on whichever node the client reaches. Single-key commands:
//! they work on one Redis server and on a cluster alike.

use std::time::Duration;

use super::RedisBus;
use super::replies::as_string;
use crate::cluster::{BoxFuture, Parking};

impl Parking for RedisBus {
    fn park(&self, key: &str, value: String, ttl: Duration) -> BoxFuture<Result<(), String>> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.inner.keys.parked(key))
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let answer = self.inner.call(cmd);
        Box::pin(async move { answer.await.map(|_| ()) })
    }

    fn unpark(&self, key: &str) -> BoxFuture<Result<Option<String>, String>> {
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(self.inner.keys.parked(key));
        let answer = self.inner.call(cmd);
        Box::pin(async move { Ok(as_string(&answer.await?)) })
    }
}
