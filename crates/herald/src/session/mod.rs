//! One STOMP session, whatever transport carries it.
//!
//! [`Session::handle`] takes one decoded client frame and either succeeds (queueing
//! CONNECTED, RECEIPT, … on the session's outbox) or returns a [`StompError`] that the
//! connection turns into the one ERROR frame before closing. The session owns the
//! protocol state — version, subscriptions, open transactions — and never touches a
//! socket or a timer: the connection loop in `transport` does that.

pub(crate) mod config;
pub(crate) mod heartbeat;
pub(crate) mod refresh;
pub(crate) mod resume;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use herald_stomp::{Command, Frame, Version, encode, write_header};

use crate::auth::Handshake;
use crate::auth::limits::UserSlot;
use crate::auth::rules::Operation;
use crate::broker::{
    AckMode, DeliveryGuard, Message, OutFrame, Outbox, Pressure, Recipient, Refused, Subscription,
    Unacked,
};
use crate::cluster::Outcome;
use crate::handler::{BoxFuture, Call, HandlerError, Principal, Reply, ReplyTarget, SessionInfo};
use crate::node::Node;
use crate::router::SendRoute;
use crate::router::config::ErrorDelivery;
pub(crate) use heartbeat::Heartbeat;

pub(crate) use crate::error::{ErrorKind, StompError};

/// A SEND to an application destination, running its handler. The connection awaits
/// it (one at a time, in order) and gives the result to [`Session::finish_call`].
pub(crate) struct AppCall {
    pub future: BoxFuture<Result<Vec<Reply>, HandlerError>>,
    destination: String,
    receipt: Option<String>,
    /// Waits for the cluster to take what a SEND or COMMIT published: a refusal is
    /// this session's ERROR, whatever `apps.errors` says.
    confirms: bool,
    then: Then,
}

/// What the session does with what a call returned.
enum Then {
    /// Publish the replies (a SEND's handler).
    Publish,
    /// Take the verified principal of a fresh token (its errors end the session).
    TakeToken(refresh::Refreshed),
    /// Answer SUBSCRIBE `subscription` with the replies to the subscriber
    /// (a subscribe handler's snapshot), publish any others.
    Answer { subscription: String },
}

/// What the connection should do after a frame was handled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// CONNECT succeeded: decode with this version from now on, keep these heart-beats.
    Connected {
        version: Version,
        heartbeat: Heartbeat,
    },
    /// DISCONNECT: flush what is queued and close.
    Close,
}

pub(crate) struct Session {
    node: Arc<Node>,
    id: String,
    outbox: Arc<Outbox>,
    /// Present once CONNECT succeeded.
    recipient: Option<Arc<Recipient>>,
    /// Who is connected (anonymous until CONNECT succeeds).
    principal: Principal,
    /// What the transport's handshake established about the token (TCP: `None`).
    handshake: Option<Handshake>,
    /// This session's place in the per-user session limit.
    user_slot: Option<UserSlot>,
    subscriptions: HashMap<String, Arc<Subscription>>,
    transactions: HashMap<String, Transaction>,
    /// Application calls waiting to run, oldest first.
    calls: VecDeque<AppCall>,
    /// While a receipted SEND or COMMIT is handled: the confirmations of what it
    /// publishes, which its RECEIPT waits for.
    confirming: Option<Vec<BoxFuture<Result<Outcome, Refused>>>>,
    /// Producer flow control of what this session publishes; made at its first SEND.
    pressure: Option<Arc<Pressure>>,
    /// The token CONNECTED gave for resuming this session (when resumes are on).
    resume_token: Option<String>,
    /// Subscriptions a resume restored that the client did not SUBSCRIBE to again yet.
    restored: HashSet<String>,
    /// SUBSCRIBEs to application destinations (answered by their handler once).
    app_subscriptions: HashSet<String>,
    /// The client said DISCONNECT: the session ends for good.
    goodbye: bool,
    /// CONNECT asked to resume a session that could not be (its window passed, a
    /// restarted node): each topic it subscribes to again is told `recovered:false`.
    resume_failed: bool,
}

/// Frames buffered between BEGIN and COMMIT, within `stomp.transaction_max_frames`
/// and `stomp.transaction_max_bytes`.
#[derive(Default)]
struct Transaction {
    frames: Vec<Frame>,
    bytes: usize,
}

/// Application calls (and receipts waiting for the cluster) a session may have queued
/// before the connection stops decoding its input until one finishes: a read can hold
/// thousands of small frames, and each call holds its frame.
pub(crate) const MAX_QUEUED_CALLS: usize = 64;

impl Session {
    pub(crate) fn new(
        node: Arc<Node>,
        outbox: Arc<Outbox>,
        handshake: Option<Handshake>,
    ) -> Session {
        Session {
            id: node.next_session_id(),
            node,
            outbox,
            recipient: None,
            principal: Principal::anonymous(String::new()),
            handshake,
            user_slot: None,
            subscriptions: HashMap::new(),
            transactions: HashMap::new(),
            calls: VecDeque::new(),
            confirming: None,
            pressure: None,
            resume_token: None,
            restored: HashSet::new(),
            app_subscriptions: HashSet::new(),
            goodbye: false,
            resume_failed: false,
        }
    }

    /// While a subscriber this session published to has too much waiting: the
    /// connection reads nothing more until [`Pressure::relieved`].
    pub(crate) fn paced(&self) -> Option<&Arc<Pressure>> {
        self.pressure.as_ref().filter(|p| p.is_raised())
    }

    fn publisher(&mut self) -> Arc<Pressure> {
        self.pressure.get_or_insert_default().clone()
    }

    /// Who this session is, for handlers.
    pub(crate) fn info(&self) -> SessionInfo {
        SessionInfo {
            id: self.id.clone(),
            principal: self.principal.clone(),
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.recipient.is_some()
    }

    /// How long until the principal's token expires.
    pub(crate) fn expires_in(&self) -> Option<std::time::Duration> {
        self.principal.time_left()
    }

    /// The next application call to run, if any.
    pub(crate) fn next_call(&mut self) -> Option<AppCall> {
        self.calls.pop_front()
    }

    /// Whether as many calls wait as the session may queue ([`MAX_QUEUED_CALLS`]).
    pub(crate) fn calls_full(&self) -> bool {
        self.calls.len() >= MAX_QUEUED_CALLS
    }

    /// Publishes what a handler returned (then the SEND's RECEIPT), or reports its
    /// error to this session as configured.
    pub(crate) fn finish_call(
        &mut self,
        call: AppCall,
        result: Result<Vec<Reply>, HandlerError>,
    ) -> Result<(), StompError> {
        let info = self.info();
        if call.confirms
            && let Err(e) = &result
        {
            return Err(StompError::of(e.kind(), e.message.clone()).with_receipt(call.receipt));
        }
        let result = match (&call.then, result) {
            (Then::TakeToken(refreshed), Ok(_)) => {
                if let Some(principal) = refreshed.lock().take() {
                    self.principal = principal;
                }
                Ok(Vec::new())
            }
            (Then::Answer { subscription }, Ok(replies)) => {
                let (answers, others): (Vec<Reply>, Vec<Reply>) = replies
                    .into_iter()
                    .partition(|r| r.target == ReplyTarget::Subscriber);
                for answer in answers {
                    self.answer(subscription, &call.destination, answer);
                }
                Ok(others)
            }
            (_, result) => result,
        };
        // A receipted SEND's RECEIPT promises what its handler published: in a cluster
        // it waits until the replies are in Redis (or becomes the ERROR refusing them).
        let confirm = call.receipt.is_some() && self.node.broker.bus().confirms_later();
        let mut confirmations = Vec::new();
        // The handler's replies are paced like the session's own SENDs.
        let paced = Some(self.publisher());
        let result = result.and_then(|replies| {
            replies.into_iter().try_for_each(|r| {
                let messaging = &self.node.messaging;
                if confirm {
                    confirmations.push(messaging.publish_confirmed(
                        r,
                        Some(&info),
                        paced.clone(),
                    )?);
                    Ok(())
                } else {
                    messaging
                        .publish_paced(r, Some(&info), paced.clone())
                        .map(|_| ())
                }
            })
        });
        if result.is_ok() && !confirmations.is_empty() {
            // Next, ahead of later calls, so RECEIPTs keep the order of their SENDs.
            self.calls.push_front(AppCall {
                future: all_confirmed(confirmations),
                destination: call.destination,
                receipt: call.receipt,
                confirms: true,
                then: Then::Publish,
            });
            return Ok(());
        }
        match result {
            Ok(()) => {}
            Err(e) => {
                tracing::debug!(destination = %call.destination, error = %e, "application handler failed");
                let apps = &self.node.config.apps;
                match apps.errors {
                    ErrorDelivery::Frame => {
                        return Err(StompError::of(e.kind(), e.message).with_receipt(call.receipt));
                    }
                    ErrorDelivery::Queue => {
                        let body = serde_json::json!({ "error": e.message, "destination": call.destination });
                        let reply = Reply::to_sender_session(apps.error_destination.clone(), &body)
                            .header("message", e.message);
                        let _ = self.node.messaging.publish(reply, Some(&info));
                    }
                }
            }
        }
        if let Some(id) = call.receipt {
            self.reply(Frame::new(Command::Receipt).header("receipt-id", id));
        }
        Ok(())
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node
    }

    pub(crate) fn user(&self) -> &str {
        &self.principal.name
    }

    pub(crate) fn version(&self) -> Version {
        self.recipient.as_ref().map_or(Version::V1_2, |r| r.version)
    }

    pub(crate) fn handle(&mut self, frame: Frame) -> Result<Flow, StompError> {
        let receipt = frame.get("receipt").map(str::to_owned);
        let calls_before = self.calls.len();
        let direct_send = frame.command == Command::Send && frame.get("transaction").is_none();
        // A SEND to an application, a SUBSCRIBE to one: receipted once its call is done.
        let calls_frame = direct_send || frame.command == Command::Subscribe;
        // Frames whose effect on the cluster the RECEIPT vouches for: what a SEND or
        // COMMIT published is in Redis, a SUBSCRIBE's channel is subscribed.
        let publishes = direct_send || frame.command == Command::Commit;
        let waits_for_bus = frame.command == Command::Subscribe;
        if publishes && receipt.is_some() && self.node.broker.bus().confirms_later() {
            self.confirming = Some(Vec::new());
        }
        let what = frame
            .get("destination")
            .or_else(|| frame.get("transaction"))
            .unwrap_or_default()
            .to_owned();
        let result = self.dispatch(frame);
        let confirmations = self.confirming.take().unwrap_or_default();
        // A SEND to an application destination is receipted once its handler is done.
        let receipt = match (calls_frame && self.calls.len() > calls_before, receipt) {
            (true, Some(r)) => match self.calls.back_mut() {
                Some(call) => {
                    call.receipt = Some(r);
                    None
                }
                None => Some(r),
            },
            (_, r) => r,
        };
        // In a cluster the RECEIPT waits for the bus: once what a SEND or COMMIT
        // published is in Redis (or an ERROR once the cluster refused it), once a
        // SUBSCRIBE's channel is subscribed (a publish on another node right after the
        // RECEIPT reaches it).
        let receipt = match receipt {
            Some(r) if !confirmations.is_empty() && result.is_ok() => {
                self.calls.push_back(AppCall {
                    future: all_confirmed(confirmations),
                    destination: what,
                    receipt: Some(r),
                    confirms: true,
                    then: Then::Publish,
                });
                None
            }
            Some(r) if waits_for_bus && result.is_ok() => match self.node.broker.bus().flushed() {
                Some(flushed) => {
                    self.calls.push_back(AppCall {
                        future: Box::pin(async move {
                            flushed.await;
                            Ok(Vec::new())
                        }),
                        destination: what,
                        receipt: Some(r),
                        confirms: false,
                        then: Then::Publish,
                    });
                    None
                }
                None => Some(r),
            },
            r => r,
        };
        match (&result, receipt) {
            (Err(_), receipt) => {
                return result.map_err(|mut e| {
                    e.receipt = e.receipt.or(receipt);
                    e
                });
            }
            (Ok(Flow::Connected { .. }), _) | (Ok(_), None) => {}
            (Ok(_), Some(id)) => self.reply(Frame::new(Command::Receipt).header("receipt-id", id)),
        }
        result
    }

    fn dispatch(&mut self, frame: Frame) -> Result<Flow, StompError> {
        use Command::*;
        if self.recipient.is_none() && !matches!(frame.command, Connect | Stomp) {
            return Err(StompError::new(format!(
                "expected a CONNECT or STOMP frame first, got {}",
                frame.command
            )));
        }
        match frame.command {
            // The first CONNECT goes through `Session::connect`; this is a second one.
            Connect | Stomp => Err(StompError::new(
                "already connected: a second CONNECT is not allowed",
            )),
            Send if frame.get("destination") == Some(refresh::TOKEN_DESTINATION) => {
                if frame.get("transaction").is_some() {
                    return Err(StompError::new(format!(
                        "a token is sent to {} outside transactions",
                        refresh::TOKEN_DESTINATION
                    )));
                }
                let (future, refreshed) = refresh::verify(&self.node, &frame, &self.principal);
                self.calls.push_back(AppCall {
                    future,
                    destination: refresh::TOKEN_DESTINATION.to_owned(),
                    receipt: None,
                    confirms: true,
                    then: Then::TakeToken(refreshed),
                });
                Ok(Flow::Continue)
            }
            Send | Ack | Nack if frame.get("transaction").is_some() => {
                let tx = frame.get("transaction").unwrap_or_default();
                if !self.transactions.contains_key(tx) {
                    return Err(StompError::new(format!("unknown transaction '{tx}'")));
                }
                // Checked now, so the error names the frame that was wrong.
                if frame.command == Send {
                    self.check_send(&frame)?;
                }
                self.buffer(frame)?;
                Ok(Flow::Continue)
            }
            Send => self.send(&frame).map(|_| Flow::Continue),
            Subscribe => self.subscribe(&frame).map(|_| Flow::Continue),
            Unsubscribe => self.unsubscribe(&frame).map(|_| Flow::Continue),
            Ack | Nack => self.ack(&frame).map(|_| Flow::Continue),
            Begin => {
                let tx = required(&frame, "transaction")?;
                if self.transactions.contains_key(tx) {
                    return Err(StompError::new(format!(
                        "transaction '{tx}' is already open"
                    )));
                }
                let limit = self.node.config.stomp.max_transactions;
                if self.transactions.len() >= limit {
                    crate::ops::metrics::limit_hit("stomp.max_transactions");
                    return Err(StompError::of(
                        ErrorKind::Limit,
                        format!(
                            "too many transactions: {limit} are open (limit stomp.max_transactions)"
                        ),
                    ));
                }
                self.transactions
                    .insert(tx.to_owned(), Transaction::default());
                Ok(Flow::Continue)
            }
            Commit => {
                let ops = self.take_transaction(&frame)?;
                for op in ops {
                    match op.command {
                        Send => self.send(&op)?,
                        _ => self.ack(&op)?,
                    }
                }
                Ok(Flow::Continue)
            }
            Abort => self.take_transaction(&frame).map(|_| Flow::Continue),
            Disconnect => {
                self.goodbye = true;
                Ok(Flow::Close)
            }
            Connected | Message | Receipt | Error => Err(StompError::new(format!(
                "{} is a server frame; a client may not send it",
                frame.command
            ))),
        }
    }

    /// Handles the first CONNECT (or STOMP) frame: version, authentication, limits,
    /// heart-beats, then CONNECTED.
    pub(crate) async fn connect(&mut self, frame: Frame) -> Result<Flow, StompError> {
        if self.is_connected() {
            return self.handle(frame);
        }
        let receipt = frame.get("receipt").map(str::to_owned);
        self.accept_connect(frame).await.map_err(|e| StompError {
            receipt: e.receipt.clone().or(receipt),
            ..e
        })
    }

    async fn accept_connect(&mut self, frame: Frame) -> Result<Flow, StompError> {
        let version = negotiate_version(frame.get("accept-version"))?;
        let client_hb = match frame.get("heart-beat") {
            Some(v) if version > Version::V1_0 => heartbeat::parse(v).map_err(StompError::new)?,
            _ => (0, 0),
        };
        let node = self.node.clone();
        let fallback = format!("anonymous-{}", self.id);
        let mut principal = node
            .auth
            .connect(
                self.handshake.as_ref(),
                frame.get("login"),
                frame
                    .get("authorization")
                    .or_else(|| frame.get("Authorization")),
                frame.get("passcode"),
                fallback.clone(),
            )
            .await
            .map_err(|e| {
                tracing::info!(session = %self.id, reason = %e, "CONNECT refused");
                StompError::from(e)
            })?;
        if principal.time_left().is_some_and(|t| t.is_zero()) {
            return Err(StompError::of(
                ErrorKind::Auth,
                "authentication failed: token expired",
            ));
        }
        let cfg = &node.config.stomp;
        let asked = frame.get(resume::RESUME).filter(|_| cfg.resumes());
        let parked = match asked {
            Some(token) => Session::unpark(&node, &self.id, token, &mut principal, &fallback).await,
            None => None,
        };
        self.resume_failed = asked.is_some() && parked.is_none();
        let slot = node
            .sessions_per_user
            .acquire(principal.name.clone())
            .ok_or_else(|| {
                StompError::of(
                    ErrorKind::Limit,
                    format!(
                        "too many sessions for user '{}' (limit {})",
                        principal.name,
                        node.sessions_per_user.limit()
                    ),
                )
            })?;
        self.user_slot = Some(slot);
        self.principal = principal;
        let heartbeat = heartbeat::negotiate(client_hb, cfg.heartbeat_send, cfg.heartbeat_receive);
        self.recipient = Some(Arc::new(Recipient::new(
            self.id.clone(),
            version,
            self.outbox.clone(),
        )));
        // Written straight to bytes (CONNECTED headers are never escaped): one frame
        // per connection, and a connection storm makes this a hot path.
        let mut connected = BytesMut::with_capacity(160);
        connected.put_slice(b"CONNECTED\n");
        write_header(&mut connected, "version", version.as_str(), false);
        write_header(&mut connected, "session", &self.id, false);
        write_header(
            &mut connected,
            "server",
            concat!("Herald/", env!("CARGO_PKG_VERSION")),
            false,
        );
        let _ = writeln!(
            connected,
            "heart-beat:{},{}",
            cfg.heartbeat_send.as_millis(),
            cfg.heartbeat_receive.as_millis()
        );
        write_header(&mut connected, "user-name", &self.principal.name, false);
        if cfg.resumes() {
            let token = resume::new_token();
            write_header(&mut connected, resume::RESUME_TOKEN, &token, false);
            node.live_tokens
                .lock()
                .insert(token.clone(), self.id.clone());
            let resumed = if parked.is_some() { "true" } else { "false" };
            write_header(&mut connected, resume::RESUMED, resumed, false);
            self.resume_token = Some(token);
        }
        connected.put_slice(b"\n\0");
        self.outbox.push_reply(OutFrame::text(connected.freeze()));
        if let Some(parked) = parked {
            self.restore(parked);
        }
        Ok(Flow::Connected { version, heartbeat })
    }

    /// Takes back the session parked under `token`, if it is this principal's. An
    /// anonymous session takes the parked one's generated name (the token is its
    /// proof); anyone else must be the same user.
    async fn unpark(
        node: &Node,
        session: &str,
        token: &str,
        principal: &mut Principal,
        fallback: &str,
    ) -> Option<resume::Parked> {
        let outcome = |o: &'static str| crate::ops::metrics::session_resume(o);
        if !resume::plausible(token) {
            outcome("unknown");
            return None;
        }
        let bus = node.broker.bus();
        let mut found = bus.unpark(token).await;
        if matches!(found, Ok(None)) {
            // Still live here (its connection half-open, say): end it, then take
            // what it parks.
            let live = node.live_tokens.lock().get(token).cloned();
            if let Some(entry) = live.and_then(|id| node.sessions.get(&id)) {
                entry.replace();
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
                while matches!(found, Ok(None)) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    found = bus.unpark(token).await;
                }
            }
        }
        let json = match found {
            Ok(Some(json)) => json,
            Ok(None) => {
                outcome("unknown");
                return None;
            }
            Err(e) => {
                tracing::warn!(%session, error = %e, "a session could not be resumed");
                outcome("failed");
                return None;
            }
        };
        let parked: resume::Parked = serde_json::from_str(&json).ok()?;
        let anonymous_again =
            !principal.authenticated && !parked.authenticated && principal.name == fallback;
        if anonymous_again {
            principal.name = parked.user.clone();
            principal.display_name = parked.user.clone();
        } else if parked.user != principal.name {
            tracing::warn!(%session, user = %principal.name, parked = %parked.user, "resume refused: the session was another user's");
            outcome("other_user");
            return None;
        }
        outcome("resumed");
        Some(parked)
    }

    /// Opens the parked session's subscriptions again, each replaying what it missed.
    /// One the rules or limits now refuse is left out: the client's own SUBSCRIBE to
    /// it gets the ERROR that says why.
    fn restore(&mut self, parked: resume::Parked) {
        use resume::Replay;
        for ps in parked.subscriptions {
            if self.subscriptions.contains_key(&ps.id) {
                continue;
            }
            let Ok(ack) = ps.ack.parse::<AckMode>() else {
                continue;
            };
            let window = ps.window.clamp(1, self.node.config.stomp.prefetch_max);
            let sub = match self.open_subscription(&ps.id, &ps.destination, ack, window) {
                Ok(sub) => sub,
                Err(e) => {
                    tracing::info!(session = %self.id, destination = %ps.destination, error = %e.message, "a resumed subscription was left out");
                    continue;
                }
            };
            self.restored.insert(ps.id.clone());
            let broker = &self.node.broker;
            match ps.replay {
                Replay::Offset { offset, epoch } => {
                    broker.subscribe_from(sub, Some(crate::cluster::Since { offset, epoch }))
                }
                Replay::Queue => broker.subscribe(sub),
                Replay::Lost => {
                    sub.begin_recovery();
                    broker.subscribe(sub.clone());
                    sub.finish_recovery(Vec::new(), false);
                }
            }
        }
    }

    /// What parking this session takes, read before it closes; `None` when it ends
    /// for good (DISCONNECT, never connected, resumes off, the budget spent).
    pub(crate) fn departure(&mut self) -> Option<resume::Departure> {
        let token = self.forget_token()?;
        if self.goodbye || self.recipient.is_none() || self.outbox.is_closed() {
            return None;
        }
        if !self.node.parking.take() {
            crate::ops::metrics::limit_hit("stomp.resume_max_parked");
            tracing::debug!(session = %self.id, "stomp.resume_max_parked reached: the session is not kept for resuming");
            return None;
        }
        Some(resume::Departure::new(
            token,
            self.principal.name.clone(),
            self.principal.authenticated,
            self.subscriptions.values(),
            self.node.broker.bus(),
        ))
    }

    /// The session's resume token, no longer live.
    fn forget_token(&mut self) -> Option<String> {
        let token = self.resume_token.take()?;
        self.node.live_tokens.lock().remove(&token);
        Some(token)
    }

    /// Sends a subscribe handler's answer to the subscription alone, as a MESSAGE.
    fn answer(&self, subscription: &str, destination: &str, reply: Reply) {
        let mut frame = Frame::new(Command::Message)
            .header("destination", destination.to_owned())
            .header("subscription", subscription.to_owned())
            .header("message-id", self.node.broker.next_message_id());
        for (k, v) in reply.headers.iter_first() {
            if !matches!(
                k,
                "destination" | "subscription" | "message-id" | "content-length"
            ) {
                frame = frame.header(k.to_owned(), v.to_owned());
            }
        }
        frame.body = reply.body;
        let text = std::str::from_utf8(&frame.body).is_ok();
        let bytes = self.encode(&frame);
        // Bounded like any delivery: past the outbox limit the session is closed.
        let _ = self.outbox.push(OutFrame { bytes, text });
    }

    fn allow(&self, op: Operation, destination: &str) -> Result<(), StompError> {
        self.node
            .auth
            .rules
            .check(op, destination, &self.principal)
            .map_err(|e| {
                tracing::warn!(session = %self.id, user = %self.principal.name, "{e}");
                StompError::of(ErrorKind::AccessDenied, e.to_string())
            })
    }

    /// Adds a SEND, ACK or NACK to its open transaction, within the transaction budgets.
    fn buffer(&mut self, frame: Frame) -> Result<(), StompError> {
        let cfg = &self.node.config.stomp;
        let tx_name = frame.get("transaction").unwrap_or_default();
        let tx = self
            .transactions
            .get_mut(tx_name)
            .ok_or_else(|| StompError::new(format!("unknown transaction '{tx_name}'")))?;
        let size = frame.body.len()
            + frame
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>();
        let (limit, held) = if tx.frames.len() >= cfg.transaction_max_frames {
            (
                "stomp.transaction_max_frames",
                format!("{} frames", tx.frames.len()),
            )
        } else if tx.bytes + size > cfg.transaction_max_bytes {
            ("stomp.transaction_max_bytes", format!("{} bytes", tx.bytes))
        } else {
            tx.bytes += size;
            tx.frames.push(frame);
            return Ok(());
        };
        crate::ops::metrics::limit_hit(limit);
        Err(StompError::of(
            ErrorKind::Limit,
            format!("transaction full: '{tx_name}' holds {held} (limit {limit})"),
        ))
    }

    fn check_send(&self, frame: &Frame) -> Result<SendRoute, StompError> {
        let destination = required(frame, "destination")?;
        if let Some(name) =
            crate::auth::rules::reserved_header(frame.headers.iter().map(|(k, _)| k))
        {
            tracing::warn!(session = %self.id, user = %self.principal.name, "reserved header {name}");
            return Err(StompError::of(
                ErrorKind::AccessDenied,
                crate::auth::rules::reserved_header_message(name),
            ));
        }
        self.node.router.check_limits(destination)?;
        self.allow(Operation::Send, destination)?;
        self.node.router.for_send(destination)
    }

    fn send(&mut self, frame: &Frame) -> Result<(), StompError> {
        match self.check_send(frame)? {
            SendRoute::Broker(target) => {
                let paced = Some(self.publisher());
                let broker = &self.node.broker;
                let message = Message::new(
                    broker.next_message_id(),
                    target,
                    &frame.headers,
                    frame.body.clone(),
                )
                .paced_by(paced);
                match &mut self.confirming {
                    Some(waiting) => waiting.push(Box::pin(broker.publish_confirmed(message))),
                    None => {
                        broker
                            .publish(message)
                            .map_err(|e| StompError::of(ErrorKind::Limit, e.message))?;
                    }
                }
                Ok(())
            }
            SendRoute::App { path } => {
                let destination = required(frame, "destination")?.to_owned();
                let call = Call {
                    destination: destination.clone(),
                    path,
                    headers: frame.headers.clone(),
                    body: frame.body.clone(),
                    session: self.info(),
                    messaging: self.node.messaging.clone(),
                };
                let node = &self.node;
                let future = match node.handlers.dispatch(call) {
                    Ok(f) => f,
                    Err(call) => match &node.backend {
                        Some(b) if b.owns(&call.path) => b.call(call),
                        _ => {
                            return Err(StompError::of(
                                ErrorKind::Handler,
                                format!("no application handler for '{destination}'"),
                            ));
                        }
                    },
                };
                self.calls.push_back(AppCall {
                    future: self.bounded(&destination, future),
                    destination,
                    receipt: None,
                    confirms: false,
                    then: Then::Publish,
                });
                Ok(())
            }
        }
    }

    fn subscribe(&mut self, frame: &Frame) -> Result<(), StompError> {
        let destination = required(frame, "destination")?;
        let id = match frame.get("id") {
            Some(id) => id,
            // STOMP 1.0 made the id optional: the destination names the subscription.
            None if self.version() == Version::V1_0 => destination,
            None => return Err(StompError::new("SUBSCRIBE frame has no id header")),
        };
        let ack: AckMode = frame
            .get("ack")
            .unwrap_or("auto")
            .parse()
            .map_err(StompError::new)?;
        if self.restored.remove(id) {
            // A resumed client subscribing again as it did before: the same
            // subscription, already replaying. Anything else replaces it — also an
            // `offset`: the client knows better than the server what reached it (a
            // proxy took what the client never got).
            if let Some(sub) = self.subscriptions.get(id)
                && sub.destination == destination
                && sub.ack == ack
                && frame.get("offset").is_none()
            {
                return Ok(());
            }
            if let Some(sub) = self.subscriptions.remove(id) {
                self.node.broker.unsubscribe(&sub);
            }
        }
        if self.subscriptions.contains_key(id) || self.app_subscriptions.contains(id) {
            return Err(StompError::new(format!(
                "subscription id '{id}' is already in use"
            )));
        }
        if let Ok(SendRoute::App { path }) = self.node.router.for_send(destination) {
            return self.subscribe_app(frame, id, destination, path);
        }
        let window = self.prefetch(frame)?;
        // Resubscribing after a gap: `offset` (and `epoch`) of the last message seen.
        let since = match frame.get("offset") {
            Some(o) => Some(crate::cluster::Since {
                offset: o.parse().map_err(|_| {
                    StompError::new(format!("invalid offset '{o}': expected a number"))
                })?,
                epoch: frame.get("epoch").map(str::to_owned),
            }),
            None => None,
        };
        let sub = self.open_subscription(id, destination, ack, window)?;
        if self.resume_failed && since.is_none() && sub.kind == crate::broker::Kind::Topic {
            // What was published while the client was away is gone for it: say so on
            // the subscription, as a resumed one whose gap history cannot fill.
            sub.begin_recovery();
            self.node.broker.subscribe(sub.clone());
            sub.finish_recovery(Vec::new(), false);
            return Ok(());
        }
        self.node.broker.subscribe_from(sub, since);
        Ok(())
    }

    /// A subscription of this session to `destination`, registered with the session
    /// (not yet with the broker), after the limits and the rules.
    fn open_subscription(
        &mut self,
        id: &str,
        destination: &str,
        ack: AckMode,
        window: usize,
    ) -> Result<Arc<Subscription>, StompError> {
        self.check_subscription_count()?;
        self.node.router.check_limits(destination)?;
        self.allow(Operation::Subscribe, destination)?;
        let target = self
            .node
            .router
            .for_subscribe(destination, &self.principal.name)?;
        let recipient = self
            .recipient
            .clone()
            .ok_or_else(|| StompError::new("SUBSCRIBE before CONNECT"))?;
        let wildcard = crate::destination::is_wildcard(destination);
        let resumable = target.kind == crate::broker::Kind::Topic
            && !wildcard
            && self.node.config.stomp.resumes();
        let mut sub = Subscription::new(id.to_owned(), target, ack, recipient).with_window(window);
        if resumable {
            sub = sub.resumable();
        }
        if wildcard {
            // Rules were checked against the pattern; each concrete destination it
            // matches is checked again at delivery (`/topic/**` vs `/topic/admin/**`).
            let (node, principal) = (self.node.clone(), self.principal.clone());
            sub = sub.with_guard(DeliveryGuard::new(move |d| {
                node.auth
                    .rules
                    .check(Operation::Subscribe, d, &principal)
                    .is_ok()
            }));
        }
        let sub = Arc::new(sub);
        self.subscriptions.insert(id.to_owned(), sub.clone());
        Ok(sub)
    }

    fn check_subscription_count(&self) -> Result<(), StompError> {
        let limit = self.node.config.limits.max_subscriptions_per_session;
        if limit > 0 && self.subscriptions.len() + self.app_subscriptions.len() >= limit {
            return Err(StompError::of(
                ErrorKind::Limit,
                format!("too many subscriptions for this session (limit {limit})"),
            ));
        }
        Ok(())
    }

    /// A SUBSCRIBE to an application destination (Spring's `@SubscribeMapping`): its
    /// subscribe handler, or the HTTP backend, answers this subscription once.
    fn subscribe_app(
        &mut self,
        frame: &Frame,
        id: &str,
        destination: &str,
        path: String,
    ) -> Result<(), StompError> {
        self.check_subscription_count()?;
        self.node.router.check_limits(destination)?;
        self.allow(Operation::Subscribe, destination)?;
        let call = Call {
            destination: destination.to_owned(),
            path,
            headers: frame.headers.clone(),
            body: bytes::Bytes::new(),
            session: self.info(),
            messaging: self.node.messaging.clone(),
        };
        let node = &self.node;
        let future = match node.handlers.dispatch_subscribe(call) {
            Ok(f) => f,
            Err(call) => match &node.backend {
                Some(b) if b.owns(&call.path) => b.call_subscribe(call, id),
                _ => {
                    return Err(StompError::of(
                        ErrorKind::Handler,
                        format!("no subscribe handler for '{destination}'"),
                    ));
                }
            },
        };
        self.app_subscriptions.insert(id.to_owned());
        self.calls.push_back(AppCall {
            future: self.bounded(destination, future),
            destination: destination.to_owned(),
            receipt: None,
            confirms: false,
            then: Then::Answer {
                subscription: id.to_owned(),
            },
        });
        Ok(())
    }

    /// A handler's future within `apps.handler_timeout`, timed for the metrics.
    fn bounded(
        &self,
        destination: &str,
        future: BoxFuture<Result<Vec<Reply>, HandlerError>>,
    ) -> BoxFuture<Result<Vec<Reply>, HandlerError>> {
        let limit = self.node.config.apps.handler_timeout;
        let dest = destination.to_owned();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let result = tokio::time::timeout(limit, future)
                .await
                .unwrap_or_else(|_| {
                    Err(HandlerError::new(format!(
                        "handler for {dest} timed out after {limit:?}"
                    )))
                });
            crate::ops::metrics::handler_time(started.elapsed());
            result
        })
    }

    /// The prefetch window a SUBSCRIBE asks for with `prefetch-count` (RabbitMQ's
    /// header), else `stomp.prefetch`. More than `stomp.prefetch_max`, or 0
    /// (RabbitMQ's "unlimited"), is clamped to `stomp.prefetch_max`: the client is
    /// served, the server stays bounded.
    fn prefetch(&self, frame: &Frame) -> Result<usize, StompError> {
        let cfg = &self.node.config.stomp;
        match frame.get("prefetch-count") {
            None => Ok(cfg.prefetch),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(0) => Ok(cfg.prefetch_max),
                Ok(n) => Ok(usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(cfg.prefetch_max)),
                Err(_) => Err(StompError::new(format!(
                    "invalid prefetch-count '{v}': expected a number of messages"
                ))),
            },
        }
    }

    fn unsubscribe(&mut self, frame: &Frame) -> Result<(), StompError> {
        let id = match (frame.get("id"), self.version()) {
            (Some(id), _) => id,
            (None, Version::V1_0) => required(frame, "destination")?,
            (None, _) => return Err(StompError::new("UNSUBSCRIBE frame has no id header")),
        };
        self.restored.remove(id);
        if self.app_subscriptions.remove(id) {
            return Ok(());
        }
        let sub = self
            .subscriptions
            .remove(id)
            .ok_or_else(|| StompError::new(format!("no subscription with id '{id}'")))?;
        self.node.broker.unsubscribe(&sub);
        Ok(())
    }

    fn ack(&mut self, frame: &Frame) -> Result<(), StompError> {
        let (id, by_message_id, subscription) = match self.version() {
            Version::V1_2 => (required(frame, "id")?, false, None),
            Version::V1_1 => (
                required(frame, "message-id")?,
                true,
                Some(required(frame, "subscription")?),
            ),
            Version::V1_0 => (
                required(frame, "message-id")?,
                true,
                frame.get("subscription"),
            ),
        };
        // RabbitMQ's NACK header: `requeue:false` dead-letters at once.
        let requeue = match frame
            .get("requeue")
            .filter(|_| frame.command == Command::Nack)
        {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(StompError::new(format!(
                    "invalid requeue '{other}': expected true or false"
                )));
            }
        };
        let mut found: Option<(&Arc<Subscription>, Vec<Unacked>, bool)> = None;
        for (sub_id, sub) in &self.subscriptions {
            if subscription.is_some_and(|s| s != sub_id) {
                continue;
            }
            if let Some((u, was_full)) = sub.take_acked(id, by_message_id) {
                found = Some((sub, u, was_full));
                break;
            }
        }
        let (sub, acked, was_full) = found.ok_or_else(|| {
            StompError::new(format!(
                "{} of unknown id '{id}': no unacknowledged message has it",
                frame.command
            ))
        })?;
        let broker = &self.node.broker;
        match (frame.command, requeue) {
            (Command::Nack, false) => broker.reject(acked),
            (Command::Nack, true) => broker.redeliver(acked, Some(&self.id)),
            _ => broker.acked(&acked),
        }
        if was_full {
            broker.refill(sub);
        }
        Ok(())
    }

    fn take_transaction(&mut self, frame: &Frame) -> Result<Vec<Frame>, StompError> {
        let tx = required(frame, "transaction")?;
        self.transactions
            .remove(tx)
            .map(|t| t.frames)
            .ok_or_else(|| StompError::new(format!("unknown transaction '{tx}'")))
    }

    fn reply(&self, frame: Frame) {
        self.outbox.push_reply(OutFrame::text(self.encode(&frame)));
    }

    fn encode(&self, frame: &Frame) -> Bytes {
        let mut out = BytesMut::new();
        encode(frame, self.version(), &mut out);
        out.freeze()
    }

    /// The ERROR frame for `err`, to be written last before the connection closes.
    pub(crate) fn error_frame(&self, err: &StompError) -> OutFrame {
        let mut frame = Frame::new(Command::Error)
            .header("message", err.message.clone())
            .header("content-type", "text/plain");
        if let Some(r) = &err.receipt {
            frame = frame.header("receipt-id", r.clone());
        }
        for (k, v) in &err.headers {
            frame = frame.header(*k, v.clone());
        }
        frame.body = Bytes::from(err.message.clone());
        OutFrame::text(self.encode(&frame))
    }

    /// Ends the session: its subscriptions go, unacked queue messages are redelivered,
    /// open transactions are dropped, and nothing more is queued for it.
    pub(crate) fn close(&mut self) {
        if self.outbox.is_closed() {
            return;
        }
        self.outbox.close();
        self.forget_token();
        self.transactions.clear();
        self.calls.clear();
        if self.recipient.is_some() {
            self.node
                .handlers
                .disconnected(&self.info(), &self.node.messaging);
        }
        for (_, sub) in self.subscriptions.drain() {
            self.node.broker.unsubscribe(&sub);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

fn required<'a>(frame: &'a Frame, header: &str) -> Result<&'a str, StompError> {
    frame
        .get(header)
        .ok_or_else(|| StompError::new(format!("{} frame has no {header} header", frame.command)))
}

/// Picks the highest version both sides speak; no `accept-version` means 1.0.
fn negotiate_version(accept: Option<&str>) -> Result<Version, StompError> {
    let Some(accept) = accept else {
        return Ok(Version::V1_0);
    };
    accept
        .split(',')
        .filter_map(Version::parse)
        .max()
        .ok_or_else(|| StompError {
            headers: vec![("version", "1.0,1.1,1.2".to_owned())],
            ..StompError::new(format!(
                "unsupported STOMP version '{accept}': this server speaks 1.0, 1.1 and 1.2"
            ))
        })
}

/// Resolves once every publish is in the cluster; the first refusal is the error.
fn all_confirmed(
    confirmations: Vec<BoxFuture<Result<Outcome, Refused>>>,
) -> BoxFuture<Result<Vec<Reply>, HandlerError>> {
    Box::pin(async move {
        for confirmed in confirmations {
            match confirmed.await {
                Ok(Outcome { error: None, .. }) => {}
                Ok(Outcome {
                    error: Some(refused),
                    ..
                }) => return Err(HandlerError::of(ErrorKind::Cluster, refused)),
                Err(refused) => return Err(HandlerError::of(ErrorKind::Limit, refused.message)),
            }
        }
        Ok(Vec::new())
    })
}
