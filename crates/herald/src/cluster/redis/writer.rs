//! The ordered writer: one task sends every command to Redis in order, a pipeline
//! per batch (every answer read, so one refused command does not fail its
//! neighbours), and keeps publishes in the outage spool while Redis is away.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::Value;
use tokio::sync::{mpsc, oneshot};

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
    /// spool is written first once Redis answers.
    pub(super) async fn writer(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut spool = Spool::new(self.config.spool_max_bytes);
        let mut carry: Option<Cmd> = None;
        loop {
            self.expire(&mut spool);
            if !spool.is_empty() && self.is_up() {
                self.replay(&mut spool).await;
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
                    if self.is_up() && !spool.is_empty() {
                        self.replay(&mut spool).await;
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
        if kind == Kind::Topic {
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
    /// none of it is known to have run). Scripts a restarted Redis lost are loaded
    /// and those commands run again.
    pub(super) async fn run(&self, pipe: &redis::Pipeline) -> Result<Vec<Answer>, String> {
        if pipe.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let values: Vec<Value> =
            match tokio::time::timeout(ANSWER_TIMEOUT, pipe.query_async(&mut conn)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err(format!("Redis did not answer within {ANSWER_TIMEOUT:?}")),
            };
        let noscript: Vec<usize> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| matches!(v, Value::ServerError(e) if e.code() == "NOSCRIPT"))
            .map(|(i, _)| i)
            .collect();
        let mut answers: Vec<Answer> = values.into_iter().map(Answer::from).collect();
        if !noscript.is_empty() && self.load_scripts().await.is_ok() {
            let cmds: Vec<&redis::Cmd> = pipe.cmd_iter().collect();
            let mut again = redis::pipe();
            again.ignore_errors();
            for &i in &noscript {
                again.add_command(cmds[i].clone());
            }
            let retried: Result<Vec<Value>, String> =
                match tokio::time::timeout(ANSWER_TIMEOUT, again.query_async(&mut conn)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("Redis did not answer within {ANSWER_TIMEOUT:?}")),
                };
            match retried {
                Ok(vs) => {
                    for (&i, v) in noscript.iter().zip(vs) {
                        answers[i] = Answer::from(v);
                    }
                }
                Err(e) => {
                    for &i in &noscript {
                        answers[i] = Answer::NotRun(e.clone());
                    }
                }
            }
        }
        Ok(answers)
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
        let result = self.run(&self.pipeline(&batch)).await;
        crate::ops::metrics::bus_publish_time(started.elapsed());
        let mut answers = match result {
            Ok(a) => a.into_iter(),
            Err(why) => {
                self.set_connected(false, &why);
                return self.hold(batch, spool, &why);
            }
        };
        self.set_connected(true, "");
        let sink = self.sink();
        let mut barriers = Vec::new();
        let mut not_run: Option<String> = None;
        for cmd in batch {
            match cmd {
                Cmd::Publish(mut m, waiter) => match answers.next() {
                    Some(Answer::Done(reply)) => {
                        let mut outcome = Outcome::default();
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
                    if matches!((a, b), (Some(Answer::Done(_)), Some(Answer::Done(_)))) {
                        if let Some(ids) = self.inflight.lock().get_mut(&stream) {
                            ids.remove(&id);
                        }
                    } else {
                        self.retry_acks.lock().push((stream, id));
                    }
                }
                Cmd::HandBack(stream, id, given_back) => match answers.next() {
                    Some(Answer::Done(v)) => {
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
                        Some(Answer::Done(v)) => Ok(v),
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
            // Loading, out of memory: an outage until a PING gets through.
            self.set_connected(false, &why);
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
    /// is ignored as always, and they are not delivered again.
    pub(super) async fn replay(&self, spool: &mut Spool) {
        let mut written = 0;
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
            let answers = match self.run(&pipe).await {
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
                    Some(Answer::Done(reply)) => {
                        written += 1;
                        if let Some((c, _)) = e.waiter {
                            let position = match e.kind {
                                Kind::Topic => stamped(reply),
                                Kind::Queue => None,
                            };
                            let _ = c.send(Outcome {
                                delivered: e.delivered,
                                position,
                                error: None,
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
                self.set_connected(false, not_run.as_deref().unwrap_or("no answer from Redis"));
                break;
            }
            self.report(spool);
        }
        if written > 0 {
            crate::ops::metrics::bus_replayed(written);
            tracing::info!(node = %self.node_id, written, left = spool.len(),
                "outage spool written to Redis");
        }
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
