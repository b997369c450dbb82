//! The connection the bus's jobs share: one server (also a Sentinel's current
//! master) through a `ConnectionManager`, or a Redis Cluster through the `redis`
//! crate's cluster connection, which follows MOVED/ASK, failovers and resharding
//! and keeps (sharded) subscriptions on the nodes owning their slots.
//!
//! Both answer single commands the same way ([`ConnectionLike`]). A pipeline is one
//! round trip on one server; a cluster takes a pipeline only within one slot, so
//! [`Conn::pipeline`] runs one pipeline per slot, concurrently, and answers in the
//! caller's order — a node that failed fails only its slots' commands.

use std::collections::HashMap;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{Arg, Cmd, Pipeline, RedisFuture, RedisResult, Value};

#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// One command's answer in [`Conn::pipeline`], or why its slot's node did not give it.
pub(super) type Reply = Result<Value, String>;

/// Replicas that must confirm a pipeline's writes (`WAIT`), and how long to wait.
#[derive(Clone, Copy)]
pub(super) struct Wait {
    pub(super) replicas: u32,
    pub(super) timeout_ms: u64,
}

/// What [`Conn::pipeline`] learnt: each command's answer, and whether its node's
/// replicas confirmed it (always true without a [`Wait`]).
pub(super) struct Answers {
    pub(super) replies: Vec<Reply>,
    pub(super) replicated: Vec<bool>,
    /// Cluster slots whose node failed (or that were skipped as down).
    pub(super) failed: Vec<Slot>,
}

/// Cluster slots not to send to (their shard failed a moment ago): their commands
/// fail at once rather than wait for the cluster connection's retries each time.
pub(super) type Skip<'a> = &'a (dyn Fn(&Slot) -> bool + Sync);

impl Conn {
    /// Listens to `channel`: a pattern, or an exact channel (sharded on a cluster).
    pub(super) async fn subscribe(&mut self, channel: &str, pattern: bool) -> RedisResult<()> {
        match (self, pattern) {
            (Conn::Single(c), false) => c.subscribe(channel).await,
            (Conn::Single(c), true) => c.psubscribe(channel).await,
            (Conn::Cluster(c), false) => c.ssubscribe(channel).await,
            (Conn::Cluster(c), true) => c.psubscribe(channel).await,
        }
    }

    pub(super) async fn unsubscribe(&mut self, channel: &str, pattern: bool) -> RedisResult<()> {
        match (self, pattern) {
            (Conn::Single(c), false) => c.unsubscribe(channel).await,
            (Conn::Single(c), true) => c.punsubscribe(channel).await,
            (Conn::Cluster(c), false) => c.sunsubscribe(channel).await,
            (Conn::Cluster(c), true) => c.punsubscribe(channel).await,
        }
    }

    /// A classic (not sharded) channel, which a cluster carries to every node.
    pub(super) async fn subscribe_classic(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Conn::Single(c) => c.subscribe(channel).await,
            Conn::Cluster(c) => c.subscribe(channel).await,
        }
    }

    /// Runs `pipe`, every command's answer in order. On one server a broken
    /// connection fails the whole pipeline (`Err`: none of it is known to have run);
    /// on a cluster each slot's commands go as one pipeline to that slot's node, and
    /// a node that fails answers `Err` for its commands only. With `wait`, each
    /// pipeline ends with a `WAIT` on its node: its commands count as replicated only
    /// if enough replicas confirmed them.
    pub(super) async fn pipeline(
        &mut self,
        pipe: &Pipeline,
        wait: Option<Wait>,
        skip: Skip<'_>,
    ) -> Result<Answers, String> {
        let cluster = match self {
            Conn::Single(c) => {
                let mut c = c.clone();
                let (values, replicated) = run_one(&mut c, pipe.clone(), wait)
                    .await
                    .map_err(|e| e.to_string())?;
                let n = values.len();
                return Ok(Answers {
                    replies: values.into_iter().map(Ok).collect(),
                    replicated: vec![replicated; n],
                    failed: Vec::new(),
                });
            }
            Conn::Cluster(c) => c,
        };
        let mut groups: HashMap<Option<Slot>, (Pipeline, Vec<usize>)> = HashMap::new();
        for (i, cmd) in pipe.cmd_iter().enumerate() {
            let (p, at) = groups
                .entry(key_of(cmd).map(Slot::for_key))
                .or_insert_with(|| {
                    let mut p = redis::pipe();
                    p.ignore_errors();
                    (p, Vec::new())
                });
            p.add_command(cmd.clone());
            at.push(i);
        }
        let mut failed = Vec::new();
        let mut replies: Vec<Option<Reply>> = vec![None; pipe.len()];
        let mut replicated = vec![false; pipe.len()];
        let mut runs = Vec::new();
        for (slot, (p, at)) in groups {
            if let Some(s) = slot.filter(|s| skip(s)) {
                failed.push(s);
                for i in at {
                    replies[i] = Some(Err("its Redis Cluster shard is down".to_owned()));
                }
                continue;
            }
            let mut c = cluster.clone();
            runs.push(async move { (run_one(&mut c, p, wait).await, at, slot) });
        }
        for (r, at, slot) in join_all(runs).await {
            match r {
                Ok((values, ok)) => {
                    for (i, v) in at.into_iter().zip(values) {
                        replies[i] = Some(Ok(v));
                        replicated[i] = ok;
                    }
                }
                Err(e) => {
                    failed.extend(slot);
                    for i in at {
                        replies[i] = Some(Err(e.to_string()));
                    }
                }
            }
        }
        Ok(Answers {
            replies: replies
                .into_iter()
                .map(|a| a.unwrap_or_else(|| Err("no answer from Redis".to_owned())))
                .collect(),
            replicated,
            failed,
        })
    }

    /// PING: the server, or one node of a cluster (any that answers says the
    /// cluster is reachable; [`Conn::shards`] says which shards are not).
    pub(super) async fn ping(&mut self) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => redis::cmd("PING").query_async(c).await,
            Conn::Cluster(c) => {
                c.route_command(
                    redis::cmd("PING"),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                )
                .await
            }
        }
    }

    /// Each master of a cluster (as `CLUSTER SLOTS` on any node lists them) with its
    /// slots and whether it answers PING; nothing on one server.
    pub(super) async fn shards(&mut self) -> RedisResult<Vec<(String, Result<(), String>)>> {
        let Conn::Cluster(c) = self else {
            return Ok(Vec::new());
        };
        let slots = c
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let mut masters: Vec<(String, u16, Vec<String>)> = Vec::new();
        if let Value::Array(ranges) = slots {
            for r in ranges {
                let Value::Array(r) = r else { continue };
                let (Some(Value::Int(from)), Some(Value::Int(to)), Some(Value::Array(m))) =
                    (r.first(), r.get(1), r.get(2))
                else {
                    continue;
                };
                let (Some(host), Some(Value::Int(port))) =
                    (m.first().and_then(super::replies::as_string), m.get(1))
                else {
                    continue;
                };
                let range = format!("{from}-{to}");
                match masters
                    .iter_mut()
                    .find(|(h, p, _)| *h == host && *p as i64 == *port)
                {
                    Some((_, _, ranges)) => ranges.push(range),
                    None => masters.push((host, *port as u16, vec![range])),
                }
            }
        }
        let pings = masters.into_iter().map(|(host, port, ranges)| {
            let mut c = c.clone();
            async move {
                let r = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    c.route_command(
                        redis::cmd("PING"),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port,
                        }),
                    ),
                )
                .await;
                let state = match r {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("PING not answered within 1s".to_owned()),
                };
                (format!("{host}:{port} (slots {})", ranges.join(",")), state)
            }
        });
        Ok(join_all(pings).await)
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

/// Runs one pipeline on one node (the same connection as the pipeline's commands,
/// so that `WAIT` counts them), with `WAIT` last when asked.
async fn run_one<C: ConnectionLike>(
    c: &mut C,
    mut pipe: Pipeline,
    wait: Option<Wait>,
) -> RedisResult<(Vec<Value>, bool)> {
    let Some(w) = wait else {
        return Ok((pipe.query_async(c).await?, true));
    };
    pipe.cmd("WAIT").arg(w.replicas).arg(w.timeout_ms);
    let mut values: Vec<Value> = pipe.query_async(c).await?;
    let acked = match values.pop() {
        Some(Value::Int(n)) => u32::try_from(n).unwrap_or(0),
        _ => 0,
    };
    Ok((values, acked >= w.replicas))
}

/// The key a command routes by: a script's first key, else its first argument.
pub(super) fn key_of(cmd: &Cmd) -> Option<&[u8]> {
    let mut args = cmd.args_iter().map(|a| match a {
        Arg::Simple(a) => a,
        _ => &b""[..],
    });
    let name = args.next()?;
    if name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL") {
        let _script = args.next()?;
        let n = std::str::from_utf8(args.next()?).ok()?;
        return if n.parse::<u32>().ok()? > 0 {
            args.next()
        } else {
            None
        };
    }
    if name.eq_ignore_ascii_case(b"PING") || name.eq_ignore_ascii_case(b"WAIT") {
        return None;
    }
    args.next()
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_route_by_their_key() {
        let mut eval = redis::cmd("EVALSHA");
        eval.arg("sha").arg(2).arg("k1").arg("k2").arg("v");
        assert_eq!(key_of(&eval), Some(&b"k1"[..]));
        let mut keyless = redis::cmd("EVALSHA");
        keyless.arg("sha").arg(0).arg("v");
        assert_eq!(key_of(&keyless), None);
        let mut hset = redis::cmd("HSET");
        hset.arg("h").arg("f").arg("v");
        assert_eq!(key_of(&hset), Some(&b"h"[..]));
        assert_eq!(key_of(&redis::cmd("PING")), None);
    }
}
