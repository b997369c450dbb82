//! The ordered writer: one task sends every command to Redis in order, a pipeline
//! per batch (every answer read, so one refused command does not fail its
//! neighbours), and keeps publishes in the outage spool while Redis is away.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::Value;
use redis::cluster_routing::Slot;
use tokio::sync::{mpsc, oneshot};

use super::conn::Wait;
use super::health::RETRY_MIN;
use super::keys::GROUP;
use super::replies::{as_string, as_u64};
use super::spool::{Spool, Spooled};
use super::wire::encode;
use super::{Inner, Sink};
use crate::cluster::{Confirm, Outcome};
use crate::message::{Kind, Message, Position};

/// Publishes and acks sent to Redis in one pipeline at most.
pub(super) const BATCH: usize = 512;
/// Longest one pipeline waits for Redis' answer.
pub(super) const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a pipeline with confirmed publishes waits for `cluster.replica_acks`
/// replicas (`WAIT`); the connection waits with it, so it stays short.
pub(super) const REPLICA_WAIT: Duration = Duration::from_millis(500);
/// Longest a cluster shard that failed is skipped before it is tried again (sooner
/// once the health task sees every shard answer).
pub(super) const SHARD_PAUSE: Duration = Duration::from_secs(1);

/// What a caller of `Inner::call` gets back.
pub(super) type Reply = oneshot::Sender<Result<Value, String>>;

/// A publish's waiting caller, and when it started waiting.
pub(super) type Waiter = (Confirm, tokio::time::Instant);

// Publish is the common command and the large one; boxing it would cost an allocation
// per publish.
#[allow(clippy::large_enum_variant)]
pub(super) enum Cmd {
    Publish(Message, Option<Waiter>),
    Ack(Arc<str>, String),
    /// An entry this node holds goes back to its stream (its session ended), with
    /// the times it was given back.
    HandBack(Arc<str>, String, u32),
    /// A command run in order with the publishes; its answer goes to the reply.
    Call(redis::Cmd, Option<Reply>),
    /// Answered once everything sent before it was flushed.
    Barrier(oneshot::Sender<()>),
    Subscribe(String, bool),
    Unsubscribe(String, bool),
}

/// What Redis made of one command of a pipeline.
pub(super) enum Answer {
    Done(Value),
    /// Redis refused it for good (a wrong type, a script error): never retried.
    Rejected(String),
    /// Not run: Redis is away, loading or out of memory; retried once it answers.
    NotRun(String),
    /// Run on the master, but fewer replicas than `cluster.replica_acks` confirmed
    /// it: it may not survive a failover, so it is not confirmed (nor run again).
    Unreplicated(Value),
}

impl From<Value> for Answer {
    fn from(v: Value) -> Answer {
        match v {
            Value::ServerError(e) => match e.code() {
                "LOADING" | "BUSY" | "OOM" | "READONLY" | "MASTERDOWN" | "TRYAGAIN"
                | "CLUSTERDOWN" | "NOSCRIPT" => Answer::NotRun(e.to_string()),
                _ => Answer::Rejected(e.to_string()),
            },
            v => Answer::Done(v),
        }
    }
}

impl Inner {
    /// Runs `cmd` in order with the publishes; the answer, or why there is none.
    pub(super) fn call(
        &self,
        cmd: redis::Cmd,
    ) -> impl Future<Output = Result<Value, String>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = if self.connected.load(Ordering::Relaxed) {
            self.tx
                .send(Cmd::Call(cmd, Some(tx)))
                .map_err(|_| "the server is shutting down".to_owned())
        } else {
            Err("Redis is unreachable".to_owned())
        };
        async move {
            sent?;
            rx.await
                .map_err(|_| "the server is shutting down".to_owned())?
        }
    }

    /// Runs `cmd` in order with the publishes, answer unread (failures are logged).
    pub(super) fn send_call(&self, cmd: redis::Cmd) {
        if self.connected.load(Ordering::Relaxed) {
            let _ = self.tx.send(Cmd::Call(cmd, None));
        }
    }

    /// Sends commands to Redis in order, a batch per round trip. While Redis is away
    /// (or the spool still holds anything) publishes go to the spool instead, and the
    /// spool is written first once Redis answers. On a cluster where some shards
    /// answer and others do not, the spool is tried again every `RETRY_MIN` (what
    /// the answering shards own is written then, the rest waits).
    pub(super) async fn writer(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut spool = Spool::new(self.config.spool_max_bytes);
        let mut carry: Option<Cmd> = None;
        let mut pause: Option<tokio::time::Instant> = None;
        loop {
            self.expire(&mut spool);
            let paused = pause.is_some_and(|t| t > tokio::time::Instant::now());
            if !spool.is_empty() && self.is_up() && !paused {
                pause = self
                    .replay(&mut spool)
                    .await
                    .then(|| tokio::time::Instant::now() + RETRY_MIN);
                self.report(&spool);
                continue;
            }
            let deadline = spool.next_deadline();
            let cmd = match carry.take() {
                Some(c) => c,
                None => tokio::select! {
                    _ = self.stop.cancelled() => return self.abandon(&mut spool),
                    c = rx.recv() => match c { Some(c) => c, None => return self.abandon(&mut spool) },
                    _ = self.redis_back.notified(), if !spool.is_empty() => continue,
                    _ = sleep_until_some(deadline), if deadline.is_some() => continue,
                    _ = sleep_until_some(pause), if paused && !spool.is_empty() => continue,
                },
            };
            match cmd {
                Cmd::Subscribe(ch, pattern) => self.subscribe(ch, pattern).await,
                Cmd::Unsubscribe(ch, pattern) => self.unsubscribe(ch, pattern).await,
                first => {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(
                                c @ (Cmd::Publish(..)
                                | Cmd::Ack(..)
                                | Cmd::HandBack(..)
                                | Cmd::Call(..)
                                | Cmd::Barrier(_)),
                            ) => batch.push(c),
                            Ok(other) => {
                                carry = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let paused = pause.is_some_and(|t| t > tokio::time::Instant::now());
                    if self.is_up() && !spool.is_empty() && !paused {
                        pause = self
                            .replay(&mut spool)
                            .await
                            .then(|| tokio::time::Instant::now() + RETRY_MIN);
                    }
                    if self.is_up() && spool.is_empty() {
                        self.flush(batch, &mut spool).await;
                    } else {
                        self.hold(batch, &mut spool, "Redis is unreachable");
                    }
                }
            }
            self.report(&spool);
        }
    }

    /// The spool's size for status, shutdown and the metrics (when it changed).
    pub(super) fn report(&self, spool: &Spool) {
        let (len, bytes) = (spool.len(), spool.bytes());
        let was = (
            self.spooled.swap(len, Ordering::Relaxed),
            self.spooled_bytes.swap(bytes, Ordering::Relaxed),
        );
        if was != (len, bytes) {
            crate::ops::metrics::bus_spool(len, bytes);
        }
    }

    /// Shutdown: what the spool still holds never reaches Redis.
    pub(super) fn abandon(&self, spool: &mut Spool) {
        let left = spool.drain();
        self.report(spool);
        if left.is_empty() {
            return;
        }
        tracing::warn!(node = %self.node_id, lost = left.len(),
            "shutting down with publishes that never reached Redis");
        crate::ops::metrics::bus_refused("shutdown", left.len());
        for e in left {
            if let Some((c, _)) = e.waiter {
                let _ = c.send(Outcome {
                    delivered: e.delivered,
                    ..Outcome::refused("the server is shutting down")
                });
            }
        }
    }

    pub(super) fn add_publish(
        &self,
        pipe: &mut redis::Pipeline,
        kind: Kind,
        key: &str,
        payload: &[u8],
    ) {
        if kind == Kind::Topic && self.keys.tagged {
            // Sharded Pub/Sub, and a classic copy while a wildcard somewhere matches.
            let (hist, meta) = self.keys.history_keys(key);
            let copy = if self.wildcard_listens(key) {
                self.keys.pattern_channel(key)
            } else {
                String::new()
            };
            pipe.cmd("EVALSHA")
                .arg(&self.scripts.cluster_topic)
                .arg(2)
                .arg(hist)
                .arg(meta)
                .arg(self.keys.publish_channel(key))
                .arg(payload)
                .arg(self.history_size)
                .arg(crate::cluster::new_epoch())
                .arg(self.config.history_ttl.as_secs())
                .arg(copy);
        } else if kind == Kind::Topic {
            let (hist, meta) = self.keys.history_keys(key);
            pipe.cmd("EVALSHA")
                .arg(&self.scripts.topic)
                .arg(2)
                .arg(hist)
                .arg(meta)
                .arg(self.keys.publish_channel(key))
                .arg(payload)
                .arg(self.history_size)
                .arg(crate::cluster::new_epoch())
                .arg(self.config.history_ttl.as_secs());
        } else if self.keys.tagged {
            // The registry lives in a slot of its own: a command of its own (after
            // this one), once per queue and node.
            if self.is_up() && self.registered.lock().insert(key.to_owned()) {
                let mut add = redis::cmd("SADD");
                add.arg(self.keys.queue_registry()).arg(key);
                self.send_call(add);
            }
            pipe.cmd("EVALSHA")
                .arg(&self.scripts.cluster_queue)
                .arg(1)
                .arg(self.keys.queue_stream(key))
                .arg(payload)
                .arg(self.queue_capacity);
        } else {
            pipe.cmd("EVALSHA")
                .arg(&self.scripts.queue)
                .arg(2)
                .arg(self.keys.queue_stream(key))
                .arg(self.keys.queue_registry())
                .arg(payload)
                .arg(self.queue_capacity)
                .arg(key);
        }
    }

    /// One pipeline for `batch`: every command in it has an answer (errors
    /// included), in order; an ACK is two commands, a barrier none.
    pub(super) fn pipeline(&self, batch: &[Cmd]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for c in batch {
            match c {
                Cmd::Publish(m, _) => {
                    self.add_publish(&mut pipe, m.kind, &m.key, &encode(m, &self.node_id))
                }
                Cmd::Ack(stream, id) => {
                    pipe.cmd("XACK").arg(&**stream).arg(GROUP).arg(id);
                    pipe.cmd("XDEL").arg(&**stream).arg(id);
                }
                Cmd::HandBack(stream, id, given_back) => {
                    pipe.cmd("EVALSHA")
                        .arg(&self.scripts.hand_back)
                        .arg(1)
                        .arg(&**stream)
                        .arg(id)
                        .arg(&self.node_id)
                        .arg(self.queue_capacity)
                        .arg(*given_back);
                }
                Cmd::Call(cmd, _) => {
                    pipe.add_command(cmd.clone());
                }
                Cmd::Barrier(_) | Cmd::Subscribe(..) | Cmd::Unsubscribe(..) => {}
            }
        }
        pipe
    }

    /// Runs `pipe`: every command's answer, or why Redis could not be asked (then
    /// none of it is known to have run; on a cluster, a shard that failed answers
    /// `NotRun` for its commands only). Scripts a restarted Redis (or a promoted
    /// replica) lacks are loaded and those commands run again. With `wait`, what the
    /// replicas did not confirm is `Unreplicated`.
    pub(super) async fn run(
        &self,
        pipe: &redis::Pipeline,
        wait: Option<Wait>,
    ) -> Result<Vec<Answer>, String> {
        if pipe.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let timeout = ANSWER_TIMEOUT
            + if wait.is_some() {
                REPLICA_WAIT
            } else {
                Duration::ZERO
            };
        let skip = |s: &Slot| self.slot_down(s);
        let answers = match tokio::time::timeout(timeout, conn.pipeline(pipe, wait, &skip)).await {
            Ok(r) => r?,
            Err(_) => return Err(format!("Redis did not answer within {timeout:?}")),
        };
        self.slots_failed(&answers.failed);
        let to_answer = |(r, replicated): (Result<Value, String>, bool)| match r {
            Ok(v) => match Answer::from(v) {
                Answer::Done(v) if !replicated => Answer::Unreplicated(v),
                a => a,
            },
            Err(e) => Answer::NotRun(e),
        };
        let noscript: Vec<usize> = answers
            .replies
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Ok(Value::ServerError(e)) if e.code() == "NOSCRIPT"))
            .map(|(i, _)| i)
            .collect();
        let mut answers: Vec<Answer> = answers
            .replies
            .into_iter()
            .zip(answers.replicated)
            .map(to_answer)
            .collect();
        if !noscript.is_empty() && self.load_scripts().await.is_ok() {
            let cmds: Vec<&redis::Cmd> = pipe.cmd_iter().collect();
            let mut again = redis::pipe();
            again.ignore_errors();
            for &i in &noscript {
                again.add_command(cmds[i].clone());
            }
            match tokio::time::timeout(timeout, conn.pipeline(&again, wait, &skip)).await {
                Ok(Ok(retried)) => {
                    for (&i, a) in noscript
                        .iter()
                        .zip(retried.replies.into_iter().zip(retried.replicated))
                    {
                        answers[i] = to_answer(a);
                    }
                }
                Ok(Err(e)) => {
                    for &i in &noscript {
                        answers[i] = Answer::NotRun(e.clone());
                    }
                }
                Err(_) => {
                    for &i in &noscript {
                        answers[i] =
                            Answer::NotRun(format!("Redis did not answer within {timeout:?}"));
                    }
                }
            }
        }
        Ok(answers)
    }

    /// Whether `slot`'s shard failed less than `SHARD_PAUSE` ago and the health task
    /// has not seen every shard answer since: its commands fail at once meanwhile,
    /// so that the writer does not wait out the cluster connection's retries for
    /// each batch while the other shards' destinations queue behind it.
    fn slot_down(&self, slot: &Slot) -> bool {
        self.slots_down
            .lock()
            .get(slot)
            .is_some_and(|t| t.elapsed() < SHARD_PAUSE)
    }

    fn slots_failed(&self, slots: &[Slot]) {
        if slots.is_empty() {
            return;
        }
        let mut down = self.slots_down.lock();
        let now = std::time::Instant::now();
        for s in slots {
            // A slot skipped as down keeps its time; one tried again restarts it.
            match down.get_mut(s) {
                Some(t) if t.elapsed() < SHARD_PAUSE => {}
                Some(t) => *t = now,
                None => {
                    down.insert(*s, now);
                }
            }
        }
    }

    /// The replicas a pipeline waits for: `cluster.replica_acks`, when a caller
    /// waits for a confirmation.
    pub(super) fn wait_for(&self, someone_waits: bool) -> Option<Wait> {
        (someone_waits && self.config.replica_acks > 0).then(|| Wait {
            replicas: self.config.replica_acks,
            timeout_ms: REPLICA_WAIT.as_millis() as u64,
        })
    }

    /// After a write Redis did not run: one server is down (an outage until a PING
    /// gets through). On a cluster only the shards that failed are: what they own
    /// waits in the spool, tried again every `RETRY_MIN` (true), and the health task
    /// alone decides whether the whole cluster is unreachable.
    fn partly_failed(&self, why: &str) -> bool {
        if self.keys.tagged {
            tracing::debug!(error = %why, "a Redis Cluster shard did not run a write; what it owns waits");
            true
        } else {
            self.set_connected(false, why);
            false
        }
    }

    pub(super) async fn flush(&self, batch: Vec<Cmd>, spool: &mut Spool) {
        if batch.iter().all(|c| matches!(c, Cmd::Barrier(_))) {
            // Nothing to send: what came before is done.
            for c in batch {
                if let Cmd::Barrier(b) = c {
                    let _ = b.send(());
                }
            }
            return;
        }
        let started = std::time::Instant::now();
        let waits = batch.iter().any(|c| matches!(c, Cmd::Publish(_, Some(_))));
        let result = self.run(&self.pipeline(&batch), self.wait_for(waits)).await;
        crate::ops::metrics::bus_publish_time(started.elapsed());
        let mut answers = match result {
            Ok(a) => a.into_iter(),
            Err(why) => {
                self.set_connected(false, &why);
                return self.hold(batch, spool, &why);
            }
        };
        let any_done = answers
            .as_slice()
            .iter()
            .any(|a| !matches!(a, Answer::NotRun(_)));
        if any_done {
            self.set_connected(true, "");
        }
        let sink = self.sink();
        let mut barriers = Vec::new();
        let mut not_run: Option<String> = None;
        for cmd in batch {
            match cmd {
                Cmd::Publish(mut m, waiter) => match answers.next() {
                    Some(a @ (Answer::Done(_) | Answer::Unreplicated(_))) => {
                        let (reply, unreplicated) = match a {
                            Answer::Unreplicated(v) => (v, true),
                            Answer::Done(v) => (v, false),
                            _ => unreachable!(),
                        };
                        let mut outcome = Outcome::default();
                        if unreplicated {
                            crate::ops::metrics::bus_refused("unreplicated", 1);
                            outcome.error = Outcome::refused(self.unreplicated()).error;
                        }
                        if m.kind == Kind::Topic {
                            // {offset, epoch}: this node's sessions get it now, stamped.
                            m.position = stamped(reply);
                            outcome.position = m.position.clone();
                            if let Some(s) = &sink {
                                outcome.delivered = s.deliver(Arc::new(m));
                            }
                        }
                        // Queue messages come back through XREADGROUP, to one consumer.
                        if let Some((c, _)) = waiter {
                            let _ = c.send(outcome);
                        }
                    }
                    Some(Answer::Rejected(why)) => self.reject(&m.key, waiter, &why),
                    other => {
                        self.spool_one(m, waiter, spool, sink.as_ref());
                        self.count_failed(1);
                        not_run = Some(match other {
                            Some(Answer::NotRun(why)) => why,
                            _ => "no answer from Redis".to_owned(),
                        });
                    }
                },
                Cmd::Ack(stream, id) => {
                    let (a, b) = (answers.next(), answers.next());
                    let done = |a: &Option<Answer>| {
                        matches!(a, Some(Answer::Done(_) | Answer::Unreplicated(_)))
                    };
                    if done(&a) && done(&b) {
                        if let Some(ids) = self.inflight.lock().get_mut(&stream) {
                            ids.remove(&id);
                        }
                    } else {
                        self.retry_acks.lock().push((stream, id));
                    }
                }
                Cmd::HandBack(stream, id, given_back) => match answers.next() {
                    Some(Answer::Done(v) | Answer::Unreplicated(v)) => {
                        if as_u64(&v) == Some(1) {
                            crate::ops::metrics::bus_handed_back(1);
                        }
                    }
                    Some(Answer::NotRun(_)) | None => {
                        self.retry_hand_backs.lock().push((stream, id, given_back));
                    }
                    Some(Answer::Rejected(why)) => {
                        tracing::warn!(queue = %stream, error = %why, "handing a queue message back failed; it is claimed after claim_after");
                    }
                },
                Cmd::Call(_, reply) => {
                    let v = match answers.next() {
                        Some(Answer::Done(v) | Answer::Unreplicated(v)) => Ok(v),
                        Some(Answer::Rejected(e) | Answer::NotRun(e)) => Err(e),
                        None => Err("no answer from Redis".to_owned()),
                    };
                    if let Some(r) = reply {
                        let _ = r.send(v);
                    }
                }
                Cmd::Barrier(b) => barriers.push(b),
                Cmd::Subscribe(..) | Cmd::Unsubscribe(..) => {}
            }
        }
        if let Some(why) = not_run {
            // Loading, out of memory, a shard away: an outage until a PING gets
            // through (on a cluster, of that shard's destinations only).
            self.partly_failed(&why);
        }
        for b in barriers {
            let _ = b.send(());
        }
    }

    /// Redis is away: publishes go to the spool, ACKs and hand-backs wait, calls fail.
    pub(super) fn hold(&self, batch: Vec<Cmd>, spool: &mut Spool, why: &str) {
        let sink = self.sink();
        let mut failed = 0;
        for cmd in batch {
            match cmd {
                Cmd::Publish(m, waiter) => {
                    failed += 1;
                    self.spool_one(m, waiter, spool, sink.as_ref());
                }
                Cmd::Ack(stream, id) => self.retry_acks.lock().push((stream, id)),
                Cmd::HandBack(stream, id, n) => self.retry_hand_backs.lock().push((stream, id, n)),
                Cmd::Call(_, Some(r)) => {
                    let _ = r.send(Err(why.to_owned()));
                }
                Cmd::Call(_, None) => {}
                Cmd::Barrier(b) => {
                    let _ = b.send(());
                }
                Cmd::Subscribe(..) | Cmd::Unsubscribe(..) => {}
            }
        }
        if failed > 0 {
            self.count_failed(failed);
            self.probe_now.notify_one();
        }
    }

    pub(super) fn count_failed(&self, n: usize) {
        self.failed.fetch_add(n as u64, Ordering::Relaxed);
        crate::ops::metrics::bus_errors(n);
        self.outage.failed(n);
    }

    /// Keeps `m` for Redis: a topic message reaches this node's sessions now, a queue
    /// message waits. Past the spool's budget it is refused instead.
    pub(super) fn spool_one(
        &self,
        m: Message,
        waiter: Option<Waiter>,
        spool: &mut Spool,
        sink: Option<&Arc<dyn Sink>>,
    ) {
        let payload = encode(&m, &self.node_id);
        if !spool.fits(payload.len()) {
            crate::ops::metrics::bus_refused("spool_full", 1);
            self.outage.refused(1);
            if let Some((c, _)) = waiter {
                let _ = c.send(Outcome::refused(format_args!(
                    "outage spool full: holds {} bytes, limit cluster.spool_max_bytes",
                    spool.bytes()
                )));
            }
            return;
        }
        let (kind, key) = (m.kind, m.key.clone());
        let delivered = match (kind, sink) {
            (Kind::Topic, Some(s)) => s.deliver(Arc::new(m)),
            _ => 0,
        };
        let waiter = waiter.map(|(c, since)| (c, since + self.config.publish_timeout));
        spool.push(Spooled {
            kind,
            key,
            payload,
            delivered,
            waiter,
        });
    }

    /// Redis answered a publish with an error that a retry would not change.
    pub(super) fn reject(&self, key: &str, waiter: Option<Waiter>, why: &str) {
        tracing::warn!(destination = %key, error = %why, "Redis refused a publish");
        crate::ops::metrics::bus_refused("rejected", 1);
        if let Some((c, _)) = waiter {
            let _ = c.send(Outcome::refused(format_args!("Redis refused it: {why}")));
        }
    }

    /// Refuses the spooled messages whose publisher waited `publish_timeout`: they
    /// leave the spool and are never written.
    pub(super) fn expire(&self, spool: &mut Spool) {
        if spool
            .next_deadline()
            .is_none_or(|d| d > tokio::time::Instant::now())
        {
            return;
        }
        let gone = spool.expire(tokio::time::Instant::now());
        if gone.is_empty() {
            return;
        }
        crate::ops::metrics::bus_refused("timeout", gone.len());
        self.outage.refused(gone.len());
        let limit = self.config.publish_timeout;
        for e in gone {
            if let Some((c, _)) = e.waiter {
                let _ = c.send(Outcome {
                    delivered: e.delivered,
                    ..Outcome::refused(format_args!(
                        "Redis did not take it within {limit:?}, cluster.publish_timeout"
                    ))
                });
            }
        }
    }

    /// Writes the spool to Redis, oldest first, until it is empty or Redis fails
    /// again. Topic messages were delivered here when they were spooled: their echo
    /// is ignored as always, and they are not delivered again. True when a cluster
    /// took part of it and the rest waits for its shard.
    pub(super) async fn replay(&self, spool: &mut Spool) -> bool {
        let mut written = 0;
        let mut stalled = false;
        while !spool.is_empty() && self.is_up() {
            self.expire(spool);
            let chunk = spool.take(BATCH);
            if chunk.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (_, e) in &chunk {
                self.add_publish(&mut pipe, e.kind, &e.key, &e.payload);
            }
            let waits = chunk.iter().any(|(_, e)| e.waiter.is_some());
            let answers = match self.run(&pipe, self.wait_for(waits)).await {
                Ok(a) => a,
                Err(why) => {
                    // Not known to have run: written again later (at least once).
                    spool.restore(chunk);
                    self.set_connected(false, &why);
                    break;
                }
            };
            let mut answers = answers.into_iter();
            let mut back = Vec::new();
            let mut not_run = None;
            for (seq, e) in chunk {
                match answers.next() {
                    Some(a @ (Answer::Done(_) | Answer::Unreplicated(_))) => {
                        written += 1;
                        let (reply, error) = match a {
                            Answer::Unreplicated(v) => {
                                crate::ops::metrics::bus_refused("unreplicated", 1);
                                (v, Outcome::refused(self.unreplicated()).error)
                            }
                            Answer::Done(v) => (v, None),
                            _ => unreachable!(),
                        };
                        if let Some((c, _)) = e.waiter {
                            let position = match e.kind {
                                Kind::Topic => stamped(reply),
                                Kind::Queue => None,
                            };
                            let _ = c.send(Outcome {
                                delivered: e.delivered,
                                position,
                                error,
                            });
                        }
                    }
                    Some(Answer::Rejected(why)) => self.reject(&e.key, e.waiter, &why),
                    Some(Answer::NotRun(why)) => {
                        not_run = Some(why);
                        back.push((seq, e));
                    }
                    None => back.push((seq, e)),
                }
            }
            if !back.is_empty() {
                spool.restore(back);
                let why = not_run.as_deref().unwrap_or("no answer from Redis");
                stalled = self.partly_failed(why);
                break;
            }
            self.report(spool);
        }
        if written > 0 {
            crate::ops::metrics::bus_replayed(written);
            tracing::info!(node = %self.node_id, written, left = spool.len(),
                "outage spool written to Redis");
        }
        stalled
    }

    /// Why a publish the replicas did not confirm is not confirmed.
    fn unreplicated(&self) -> String {
        format!(
            "written, but fewer than cluster.replica_acks = {} replicas had it within {REPLICA_WAIT:?}; it may not survive a failover",
            self.config.replica_acks
        )
    }
}

/// The topic script's answer `{offset, epoch}` as a position.
pub(super) fn stamped(reply: Value) -> Option<Position> {
    if let Value::Array(v) = reply
        && let [o, e] = &v[..]
        && let (Some(o), Some(e)) = (as_u64(o), as_string(e))
    {
        return Some(Position {
            offset: o,
            epoch: e.into(),
        });
    }
    None
}

/// Sleeps until `at`; never wakes without one.
pub(super) async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
