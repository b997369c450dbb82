//! The single-node broker: who is subscribed to what, and delivery.
//!
//! - Topic destinations (`/topic/**` by default) deliver every message to every
//!   matching subscription.
//! - Queue destinations (`/queue/**`) deliver each message to one matching subscription,
//!   round-robin; with no subscriber (or none with room in its prefetch window) the
//!   message waits within the queue budgets ([`queue`]); a NACKed or never-acked queue
//!   message goes to another subscriber, marked `redelivered:true`, at most
//!   `broker.max_redeliveries` times before it is dead-lettered ([`dead_letter`]).
//!
//! Publishing never waits on a subscriber: delivery pushes encoded frames into each
//! session's [`Outbox`] under a read lock and returns; a subscriber left above its
//! high-water mark is noted in the publisher's [`Pressure`], which the publisher
//! waits on before it sends more (producer flow control). Nothing here does I/O.

pub mod config;
pub mod dead_letter;
mod marks;
pub mod outbox;
pub mod queue;
pub mod subscription;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::config::BrokerConfig;
use crate::cluster::{Bus, Outcome, Recovery, Since, Sink};
pub use crate::message::{Entry, Kind, Message, OutFrame, Position, Pressure, Target};
pub use outbox::Outbox;
pub use queue::Refused;
pub use subscription::{AckMode, Delivery, DeliveryGuard, Recipient, Subscription, Unacked};

#[derive(Debug, Default)]
struct Registry {
    exact: HashMap<String, Vec<Arc<Subscription>>>,
    wildcard: Vec<Arc<Subscription>>,
}

impl Registry {
    fn matching<'a>(&'a self, destination: &'a str) -> impl Iterator<Item = &'a Arc<Subscription>> {
        self.exact
            .get(destination)
            .into_iter()
            .flatten()
            .chain(self.wildcard.iter().filter(move |s| s.matches(destination)))
    }
}

#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    node_id: String,
    next_id: AtomicU64,
    registry: RwLock<Registry>,
    queues: Mutex<queue::Queues>,
    dead_letters: dead_letter::DeadLetters,
    /// The other nodes (or, alone, the history of each destination).
    bus: Arc<dyn Bus>,
}

impl Broker {
    /// A broker on `bus` (the node builds it); once the
    /// broker is in an `Arc`, hand it to [`Bus::attach`] as the bus's [`Sink`].
    pub fn new(config: BrokerConfig, node_id: String, bus: Arc<dyn Bus>) -> Self {
        Broker {
            dead_letters: dead_letter::DeadLetters::new(&config),
            config,
            node_id,
            next_id: AtomicU64::new(1),
            registry: RwLock::new(Registry::default()),
            queues: Mutex::new(queue::Queues::default()),
            bus,
        }
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Subscribes `sub`; with `since`, first replays what it missed after that offset
    /// (exact topic subscriptions; others subscribe plainly).
    pub fn subscribe_from(&self, sub: Arc<Subscription>, since: Option<Since>) {
        match since {
            Some(since) if sub.kind == Kind::Topic && sub.pattern.is_none() => {
                sub.begin_recovery();
                self.subscribe(sub.clone());
                match self.bus.recover(&sub.key, since) {
                    Recovery::Ready(r) => sub.finish_recovery(r.missed, r.recovered),
                    Recovery::Later(replay) => {
                        tokio::spawn(async move {
                            let r = replay.await;
                            sub.finish_recovery(r.missed, r.recovered);
                        });
                    }
                }
            }
            _ => self.subscribe(sub),
        }
    }

    /// A message id unique on this node (and, with the node id, in a cluster).
    pub fn next_message_id(&self) -> String {
        format!(
            "{}-{}",
            self.node_id,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub fn subscribe(&self, sub: Arc<Subscription>) {
        let mut reg = self.registry.write();
        if sub.pattern.is_some() {
            reg.wildcard.push(sub.clone());
        } else {
            reg.exact
                .entry(sub.key.clone())
                .or_default()
                .push(sub.clone());
        }
        match sub.kind {
            Kind::Topic => self.bus.subscribed(&sub.key),
            Kind::Queue => self.bus.consumer_added(&sub.key),
        }
        if sub.kind != Kind::Queue {
            return;
        }
        // Messages that waited for a consumer go out now.
        let reg = parking_lot::RwLockWriteGuard::downgrade(reg);
        self.queues.lock().offer(&sub, |name, next, m| {
            match deliver_one(&reg, name, next, m, None, true) {
                Some(s) => {
                    self.delivered_from_queue(s, m);
                    true
                }
                None => false,
            }
        });
    }

    /// After an ACK or NACK made room in `sub`'s full prefetch window: the messages
    /// its queues kept meanwhile go to it.
    pub fn refill(&self, sub: &Subscription) {
        if sub.kind != Kind::Queue {
            return;
        }
        self.queues.lock().offer(sub, |_, _, m| {
            let taken = sub.deliver(m, true).is_ok();
            if taken {
                self.delivered_from_queue(sub, m);
            }
            taken
        });
    }

    /// Removes `sub`, closes it and sends its unacked queue messages elsewhere.
    pub fn unsubscribe(&self, sub: &Arc<Subscription>) {
        match sub.kind {
            Kind::Topic => self.bus.unsubscribed(&sub.key),
            Kind::Queue => self.bus.consumer_removed(&sub.key),
        }
        {
            let mut reg = self.registry.write();
            if sub.pattern.is_some() {
                reg.wildcard.retain(|s| !Arc::ptr_eq(s, sub));
                if sub.kind == Kind::Queue {
                    // The round-robin positions of queues nobody reads are not kept.
                    let reg = &*reg;
                    self.queues
                        .lock()
                        .forget_unused(|name| reg.matching(name).next().is_some());
                }
            } else if let Some(list) = reg.exact.get_mut(&sub.key) {
                list.retain(|s| !Arc::ptr_eq(s, sub));
                if list.is_empty() {
                    reg.exact.remove(&sub.key);
                    self.queues.lock().forget_if_idle(&sub.key);
                }
            }
        }
        let unacked = sub.close();
        self.redeliver(unacked, None);
    }

    /// Delivers a published message; returns how many subscriptions received it, or
    /// why a queue refused it.
    pub fn publish(&self, message: Message) -> Result<usize, Refused> {
        self.publish_filtered(message, None)
    }

    /// Like [`Broker::publish`], but only to subscriptions of session `only_session`
    /// when given (a reply to the sending session alone).
    ///
    /// Other messages go through the bus first: alone it stamps their history
    /// offset; in a cluster it carries them to the other nodes (and may deliver them
    /// here itself, later: the count is then 0).
    pub fn publish_filtered(
        &self,
        message: Message,
        only_session: Option<&str>,
    ) -> Result<usize, Refused> {
        let message = match only_session {
            Some(_) => Arc::new(message),
            None => match self.bus.publish(message, None) {
                Some(m) => m,
                None => return Ok(0),
            },
        };
        self.try_deliver(message, only_session)
    }

    /// Publishes like [`Broker::publish`] and resolves once the message is in the
    /// cluster (at once when alone): how many local subscriptions got it, its
    /// history position, and why it stayed on this node if it did.
    pub fn publish_confirmed(
        &self,
        message: Message,
    ) -> impl Future<Output = Result<Outcome, Refused>> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let now = self.bus.publish(message, Some(tx)).map(|m| {
            Ok(Outcome {
                position: m.position.clone(),
                delivered: self.try_deliver(m, None)?,
                error: None,
            })
        });
        async move {
            match now {
                Some(outcome) => outcome,
                None => Ok(rx.await.unwrap_or_else(|_| Outcome {
                    error: Some("the server is shutting down".into()),
                    ..Outcome::default()
                })),
            }
        }
    }

    fn try_deliver(
        &self,
        message: Arc<Message>,
        only_session: Option<&str>,
    ) -> Result<usize, Refused> {
        let delivered = match message.kind {
            // A cluster queue entry can come back over the limit: given back with
            // its count by a node, or claimed from a node that died holding it.
            Kind::Queue if message.given_back() > self.config.max_redeliveries => {
                self.dead_letter(message, dead_letter::Reason::MaxRedeliveries);
                0
            }
            Kind::Queue => self.enqueue(message, None, false)? as usize,
            Kind::Topic => {
                let reg = self.registry.read();
                reg.matching(&message.key)
                    .filter(|s| only_session.is_none_or(|id| s.recipient.session_id == id))
                    .filter(|s| s.deliver(&message, false).is_ok())
                    .count()
            }
        };
        crate::ops::metrics::published(delivered);
        Ok(delivered)
    }

    /// Deliveries a client ACKed: cluster queue messages are consumed.
    pub fn acked(&self, acked: &[Unacked]) {
        for u in acked.iter().filter(|u| u.from_queue) {
            if u.message.entry.is_some() {
                self.bus.consumed(&u.message);
            }
        }
    }

    /// After a queue delivery to `sub`: without acknowledgements it is consumed now.
    fn delivered_from_queue(&self, sub: &Subscription, message: &Message) {
        if message.entry.is_some() && !sub.acks() {
            self.bus.consumed(message);
        }
    }

    /// Queue messages that were NACKed or never acked go to another subscriber
    /// (the one that gave them back only when no other exists), a cluster queue's
    /// back to the cluster when no other is here; topic messages are dropped, as
    /// there is no one else to give them to. Each give-back counts: past
    /// `broker.max_redeliveries` the message is dead-lettered instead.
    pub fn redeliver(&self, unacked: Vec<Unacked>, from_session: Option<&str>) {
        for u in unacked.into_iter().filter(|u| u.from_queue) {
            if u.message.give_back() > self.config.max_redeliveries {
                self.dead_letter(u.message, dead_letter::Reason::MaxRedeliveries);
                continue;
            }
            // Admitted once already: the queue takes it back whatever its budgets
            // (what is unacked is bounded by the prefetch windows).
            let _ = self.enqueue(u.message, from_session, true);
        }
    }

    /// Queue messages NACKed with `requeue:false`: dead-lettered at once (topic
    /// messages are dropped, as on any NACK).
    pub fn reject(&self, unacked: Vec<Unacked>) {
        for u in unacked.into_iter().filter(|u| u.from_queue) {
            u.message.give_back();
            self.dead_letter(u.message, dead_letter::Reason::Rejected);
        }
    }

    /// Moves `message` to its dead-letter queue, within that queue's budgets, or
    /// drops it (dead-lettering off, a dead letter already, or the queue is full).
    /// Never fails the consumer that gave it back. A cluster entry is acked once
    /// Redis holds its dead letter; if Redis refuses the letter, the entry goes back
    /// to its stream with its count, to be dead-lettered by whichever node reads it.
    fn dead_letter(&self, message: Arc<Message>, reason: dead_letter::Reason) {
        let Some(queue) = self.dead_letters.queue_for(&message.key) else {
            tracing::debug!(queue = %message.key, reason = reason.as_str(), "dead letter dropped");
            crate::ops::metrics::dead_lettered(reason.as_str(), "dropped");
            self.bus.consumed(&message);
            return;
        };
        let letter = dead_letter::letter(&message, queue, reason, self.next_message_id());
        let confirmed = self.publish_confirmed(letter);
        let bus = self.bus.clone();
        let settle = async move {
            let outcome = match confirmed.await {
                Ok(o) if o.error.is_none() => "queued",
                Ok(o) => {
                    tracing::warn!(queue = %message.key, error = ?o.error, "the cluster refused a dead letter; its message goes back to the queue");
                    bus.handed_back(&message);
                    return;
                }
                Err(refused) => {
                    tracing::debug!(queue = %message.key, limit = refused.limit, "dead-letter queue full: dead letter dropped");
                    "dropped"
                }
            };
            crate::ops::metrics::dead_lettered(reason.as_str(), outcome);
            bus.consumed(&message);
        };
        if !self.bus.confirms_later() {
            // Alone the letter was delivered or queued within publish_confirmed.
            let _ = futures_util::FutureExt::now_or_never(settle);
        } else if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(settle);
        }
    }

    /// Gives a queue message to one subscriber, or keeps it (within the queue
    /// budgets, unless it is `given_back`) until one has room; `Ok(true)` when
    /// delivered. `given_back`: a session had it and gave it back (ended or NACKed).
    fn enqueue(
        &self,
        message: Arc<Message>,
        avoid: Option<&str>,
        given_back: bool,
    ) -> Result<bool, Refused> {
        let reg = self.registry.read();
        let mut queues = self.queues.lock();
        let mut next = queues.next(&message.key);
        // A cluster entry given back goes to another node's consumer before it
        // comes back to the session that gave it back.
        let last_resort = message.entry.is_none();
        if let Some(sub) = deliver_one(&reg, &message.key, &mut next, &message, avoid, last_resort)
        {
            queues.set_next(&self.config, &message.key, next);
            self.delivered_from_queue(sub, &message);
            return Ok(true);
        }
        if message.entry.is_some() {
            // A cluster queue keeps waiting messages in Redis, not here.
            if given_back {
                self.bus.handed_back(&message);
            } else {
                self.bus.released(&message);
            }
            return Ok(false);
        }
        queues.push(&self.config, message, given_back)?;
        Ok(false)
    }

    /// What the budgets hold now (for `/metrics`).
    pub fn budgets(&self) -> crate::ops::metrics::Budgets {
        let (queues, queued_messages, queued_bytes) = self.queues.lock().usage();
        let (history_destinations, history_bytes) = self.bus.history_usage();
        let mut unacked = 0;
        self.for_each_subscription(|s| unacked += s.unacked());
        crate::ops::metrics::Budgets {
            queued_messages,
            queued_bytes,
            queues,
            history_destinations,
            history_bytes,
            unacked,
        }
    }

    /// Calls `f` for every subscription (admin listings; takes the read lock).
    pub fn for_each_subscription(&self, mut f: impl FnMut(&Subscription)) {
        let reg = self.registry.read();
        reg.exact
            .values()
            .flatten()
            .chain(reg.wildcard.iter())
            .for_each(|s| f(s));
    }

    /// Routing keys and patterns that have subscribers.
    pub fn destination_count(&self) -> usize {
        let reg = self.registry.read();
        reg.exact.len() + reg.wildcard.len()
    }

    /// Subscriptions per destination pattern, for operators and tests.
    pub fn subscription_count(&self) -> usize {
        let reg = self.registry.read();
        reg.exact.values().map(Vec::len).sum::<usize>() + reg.wildcard.len()
    }
}

/// What the bus hands in: other nodes' messages, this node's once stamped, cluster
/// queue entries, history filled in.
impl Sink for Broker {
    fn deliver(&self, message: Arc<Message>) -> usize {
        self.try_deliver(message, None).unwrap_or(0)
    }

    /// The room left in the prefetch windows of this node's consumers of `key`.
    fn queue_room(&self, key: &str) -> usize {
        let reg = self.registry.read();
        reg.matching(key)
            .map(|s| s.room())
            .fold(0, usize::saturating_add)
    }
}

/// Round-robin over the subscriptions matching `destination`, skipping those that
/// refuse (closing or overflowing sessions, full prefetch windows); the session
/// `avoid` that just gave the message back comes last, or (without `last_resort`)
/// not at all.
fn deliver_one<'a>(
    reg: &'a Registry,
    destination: &'a str,
    next: &mut usize,
    message: &Arc<Message>,
    avoid: Option<&str>,
    last_resort: bool,
) -> Option<&'a Arc<Subscription>> {
    let consumers: Vec<&Arc<Subscription>> = reg.matching(destination).collect();
    let n = consumers.len();
    let avoided = |s: &Subscription| avoid == Some(s.recipient.session_id.as_str());
    for last in [false, true] {
        for i in 0..n {
            let sub = consumers[(*next + i) % n];
            if avoided(sub) != last {
                continue;
            }
            if sub.deliver(message, true).is_ok() {
                *next = (*next + i + 1) % n;
                return Some(sub);
            }
        }
        if avoid.is_none() || !last_resort {
            break;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use herald_stomp::{Headers, Version};

    fn local_bus() -> Arc<dyn Bus> {
        Arc::new(crate::cluster::local::LocalBus::new(
            &crate::cluster::config::ClusterConfig::default(),
        ))
    }

    fn broker() -> Broker {
        Broker::new(BrokerConfig::default(), "n1".into(), local_bus())
    }

    fn kind(dest: &str) -> Kind {
        if dest.starts_with("/queue/") {
            Kind::Queue
        } else {
            Kind::Topic
        }
    }

    fn sub(id: &str, dest: &str, ack: AckMode) -> Arc<Subscription> {
        let r = Arc::new(Recipient::new(
            format!("s-{id}"),
            Version::V1_2,
            Arc::new(Outbox::new(1 << 20)),
        ));
        Arc::new(Subscription::new(
            id.into(),
            Target::broker(kind(dest), dest),
            ack,
            r,
        ))
    }

    fn publish(b: &Broker, dest: &str) -> usize {
        let target = Target::broker(kind(dest), dest);
        b.publish(Message::new(
            b.next_message_id(),
            target,
            &Headers::new(),
            Bytes::from_static(b"x"),
        ))
        .expect("within the budgets")
    }

    fn queued(s: &Subscription) -> usize {
        let mut v = vec![];
        s.recipient.outbox.drain(&mut v);
        v.len()
    }

    #[test]
    fn topic_fans_out_and_wildcards_match() {
        let b = broker();
        let (a, c, w) = (
            sub("a", "/topic/x", AckMode::Auto),
            sub("c", "/topic/y", AckMode::Auto),
            sub("w", "/topic/*", AckMode::Auto),
        );
        for s in [&a, &c, &w] {
            b.subscribe(s.clone());
        }
        assert_eq!(publish(&b, "/topic/x"), 2);
        assert_eq!((queued(&a), queued(&c), queued(&w)), (1, 0, 1));
    }

    #[test]
    fn queue_round_robins_and_waits_for_a_subscriber() {
        let b = broker();
        assert_eq!(publish(&b, "/queue/q"), 0);
        let a = sub("a", "/queue/q", AckMode::Auto);
        b.subscribe(a.clone());
        assert_eq!(
            queued(&a),
            1,
            "the waiting message goes to the first subscriber"
        );
        let c = sub("c", "/queue/q", AckMode::Auto);
        b.subscribe(c.clone());
        for _ in 0..4 {
            publish(&b, "/queue/q");
        }
        assert_eq!((queued(&a), queued(&c)), (2, 2));
    }

    #[test]
    fn unacked_queue_messages_move_to_another_subscriber() {
        let b = broker();
        let a = sub("a", "/queue/q", AckMode::ClientIndividual);
        let c = sub("c", "/queue/q", AckMode::Auto);
        b.subscribe(a.clone());
        publish(&b, "/queue/q");
        assert_eq!(queued(&a), 1);
        b.subscribe(c.clone());
        b.unsubscribe(&a);
        assert_eq!(queued(&c), 1);
    }

    /// The MESSAGE frames waiting for `s`, decoded.
    fn frames(s: &Subscription) -> Vec<herald_stomp::Frame> {
        let mut v = vec![];
        s.recipient.outbox.drain(&mut v);
        v.iter()
            .map(|f| {
                let mut d = herald_stomp::Decoder::new(herald_stomp::Limits::default());
                d.set_version(Version::V1_2);
                d.decode(&mut bytes::BytesMut::from(&f.bytes[..]))
                    .expect("a valid frame")
                    .expect("a whole frame")
            })
            .collect()
    }

    fn broker_with(max_redeliveries: u32, dead_letter: &str) -> Broker {
        let config = BrokerConfig {
            max_redeliveries,
            dead_letter: dead_letter.into(),
            ..BrokerConfig::default()
        };
        Broker::new(config, "n1".into(), local_bus())
    }

    /// Gives back everything `s` holds, as a NACK would.
    fn nack_all(b: &Broker, s: &Subscription) {
        let mut ids = vec![];
        for f in frames(s) {
            ids.push(f.get("ack").expect("client acks").to_owned());
        }
        for id in ids {
            let (u, _) = s.take_acked(&id, false).expect("unacked");
            b.redeliver(u, Some(&s.recipient.session_id));
        }
    }

    #[test]
    fn each_give_back_counts_and_past_the_limit_the_message_is_dead_lettered() {
        let b = broker_with(2, "dlq.");
        let a = sub("a", "/queue/q", AckMode::ClientIndividual);
        let dlq = sub("d", "/queue/dlq.q", AckMode::Auto);
        b.subscribe(a.clone());
        b.subscribe(dlq.clone());
        publish(&b, "/queue/q");
        let mut seen = vec![];
        loop {
            let got = frames(&a);
            let Some(f) = got.first() else { break };
            seen.push(f.get("redelivered").map(str::to_owned));
            let (u, _) = a.take_acked(f.get("ack").unwrap(), false).unwrap();
            b.redeliver(u, Some("s-a"));
        }
        assert_eq!(
            seen,
            [None, Some("true".into()), Some("true".into())],
            "a first delivery, then max_redeliveries redeliveries"
        );
        let letters = frames(&dlq);
        assert_eq!(letters.len(), 1);
        let l = &letters[0];
        assert_eq!(l.get("destination"), Some("/queue/dlq.q"));
        assert_eq!(l.get("original-destination"), Some("/queue/q"));
        assert_eq!(l.get("dead-letter-reason"), Some("max-redeliveries"));
        assert_eq!(l.get("delivery-count"), Some("3"));
        assert_eq!(l.get("redelivered"), None);
    }

    #[test]
    fn a_dead_letter_over_the_limit_is_dropped_not_dead_lettered_again() {
        let b = broker_with(0, "dlq.");
        let dlq = sub("d", "/queue/dlq.q", AckMode::ClientIndividual);
        let deeper = sub("dd", "/queue/dlq.dlq.q", AckMode::Auto);
        b.subscribe(dlq.clone());
        b.subscribe(deeper.clone());
        publish(&b, "/queue/dlq.q");
        nack_all(&b, &dlq);
        assert!(frames(&dlq).is_empty(), "not redelivered");
        assert!(frames(&deeper).is_empty(), "not dead-lettered again");
        assert_eq!(b.budgets().queued_messages, 0);
    }

    #[test]
    fn reject_dead_letters_at_once_and_an_empty_setting_drops() {
        let b = broker_with(6, "/queue/dead");
        let a = sub("a", "/queue/q", AckMode::ClientIndividual);
        let dead = sub("d", "/queue/dead", AckMode::Auto);
        b.subscribe(a.clone());
        b.subscribe(dead.clone());
        publish(&b, "/queue/q");
        let f = frames(&a).remove(0);
        let (u, _) = a.take_acked(f.get("ack").unwrap(), false).unwrap();
        b.reject(u);
        assert!(frames(&a).is_empty());
        let l = frames(&dead).remove(0);
        assert_eq!(l.get("dead-letter-reason"), Some("nack"));
        assert_eq!(l.get("delivery-count"), Some("1"));

        let b = broker_with(0, "");
        let a = sub("a", "/queue/q", AckMode::ClientIndividual);
        b.subscribe(a.clone());
        publish(&b, "/queue/q");
        nack_all(&b, &a);
        assert!(frames(&a).is_empty());
        assert_eq!(b.budgets().queued_messages, 0, "dropped, not kept");
    }

    #[test]
    fn a_full_dead_letter_queue_drops_the_letter_and_the_nack_still_succeeds() {
        let config = BrokerConfig {
            max_redeliveries: 0,
            queue_capacity: 1,
            ..BrokerConfig::default()
        };
        let b = Broker::new(config, "n1".into(), local_bus());
        let a = sub("a", "/queue/q", AckMode::ClientIndividual);
        b.subscribe(a.clone());
        for _ in 0..2 {
            publish(&b, "/queue/q");
        }
        nack_all(&b, &a);
        let (_, waiting, _) = b.queues.lock().usage();
        assert_eq!(waiting, 1, "the DLQ holds one letter, its capacity");
    }
}
