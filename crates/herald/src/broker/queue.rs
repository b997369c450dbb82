//! Queue messages waiting for a consumer, within their budgets.
//!
//! A message waits when no subscription takes it: nobody subscribes, or every
//! subscriber's prefetch window is full. Each queue keeps at most
//! `broker.queue_capacity` messages and `broker.queue_max_bytes` bytes, all queues
//! together `broker.queues_max_bytes`, and at most `broker.max_queues` queues exist; at
//! a limit `broker.queue_overflow` refuses the message or drops the queue's oldest.
//! A queue exists only while it holds messages or a round-robin position other than
//! the first consumer's, so a queue nobody uses holds nothing. All of it lives under
//! the broker's one queue lock; the counts are plain fields.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::config::{BrokerConfig, QueueOverflow};
use super::subscription::Subscription;
use crate::message::Message;
use crate::ops::metrics;

/// A publish the broker would not take: a budget is used up. The message names the
/// limit and its setting; it is what the sender is told.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub message: String,
    /// The setting whose limit was reached (`broker.queue_max_bytes`, ...).
    pub limit: &'static str,
}

#[derive(Debug, Default)]
struct Queue {
    pending: VecDeque<Arc<Message>>,
    /// Footprint of `pending`.
    bytes: usize,
    /// Round-robin position among the queue's consumers.
    next: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Queues {
    map: HashMap<String, Queue>,
    /// Footprint of every queue's pending messages.
    bytes: usize,
    messages: usize,
}

impl Queues {
    /// Where round-robin starts for `key`.
    pub(crate) fn next(&self, key: &str) -> usize {
        self.map.get(key).map_or(0, |q| q.next)
    }

    /// Keeps the round-robin position for `key`. Position 0 needs no queue, and none
    /// is made past `broker.max_queues` (delivery then starts at the first consumer).
    pub(crate) fn set_next(&mut self, config: &BrokerConfig, key: &str, next: usize) {
        let room = self.map.len() < config.max_queues;
        match self.map.get_mut(key) {
            Some(q) => q.next = next,
            None if next != 0 && room => {
                self.map.insert(
                    key.to_owned(),
                    Queue {
                        next,
                        ..Queue::default()
                    },
                );
            }
            None => {}
        }
    }

    /// Keeps `message` waiting in its queue. With `force` (a delivery given back by
    /// NACK or a closing session, admitted once already) no limit applies.
    pub(crate) fn push(
        &mut self,
        config: &BrokerConfig,
        message: Arc<Message>,
        force: bool,
    ) -> Result<(), Refused> {
        let size = message.footprint();
        let created = !self.map.contains_key(&message.key);
        if created {
            if !force && self.map.len() >= config.max_queues {
                return Err(refused(
                    format!(
                        "too many queues: {} exist (limit broker.max_queues)",
                        self.map.len()
                    ),
                    "broker.max_queues",
                ));
            }
            self.map.insert(message.key.clone(), Queue::default());
        }
        let Queues {
            map,
            bytes: total,
            messages,
        } = self;
        let q = map.get_mut(&message.key).expect("inserted above");
        loop {
            let (limit, what) = if force {
                break;
            } else if q.pending.len() >= config.queue_capacity {
                (
                    "broker.queue_capacity",
                    format!(
                        "'{}' holds {} messages",
                        message.destination,
                        q.pending.len()
                    ),
                )
            } else if q.bytes + size > config.queue_max_bytes {
                (
                    "broker.queue_max_bytes",
                    format!("'{}' holds {} bytes", message.destination, q.bytes),
                )
            } else if *total + size > config.queues_max_bytes {
                (
                    "broker.queues_max_bytes",
                    format!("all queues hold {total} bytes"),
                )
            } else {
                break;
            };
            let dropped = match config.queue_overflow {
                QueueOverflow::DropHead => q.pending.pop_front(),
                QueueOverflow::RejectPublish => None,
            };
            metrics::limit_hit(limit);
            let Some(old) = dropped else {
                if q.pending.is_empty() && q.next == 0 {
                    map.remove(&message.key);
                }
                return Err(refused(
                    format!("queue full: {what} (limit {limit})"),
                    limit,
                ));
            };
            tracing::debug!(queue = %message.key, limit, "queue full: dropping its oldest message");
            metrics::dropped("queue_full");
            q.bytes -= old.footprint();
            *total -= old.footprint();
            *messages -= 1;
        }
        q.bytes += size;
        *total += size;
        *messages += 1;
        q.pending.push_back(message);
        Ok(())
    }

    /// Offers the waiting messages of the queues `sub` listens to, oldest first, to
    /// `give` (with the queue's name and round-robin position) until it declines one.
    pub(crate) fn offer(
        &mut self,
        sub: &Subscription,
        mut give: impl FnMut(&str, &mut usize, &Arc<Message>) -> bool,
    ) {
        let Queues {
            map,
            bytes: total,
            messages,
        } = self;
        let mut each = |name: &str, q: &mut Queue| {
            while let Some(m) = q.pending.front() {
                if !give(name, &mut q.next, m) {
                    return;
                }
                let m = q.pending.pop_front().expect("front exists");
                q.bytes -= m.footprint();
                *total -= m.footprint();
                *messages -= 1;
            }
        };
        if sub.pattern.is_none() {
            if let Some(q) = map.get_mut(&sub.key) {
                each(&sub.key, q);
            }
            return;
        }
        for (name, q) in map
            .iter_mut()
            .filter(|(n, q)| !q.pending.is_empty() && sub.matches(n))
        {
            each(name, q);
        }
    }

    /// Forgets the queue `key` when it holds nothing.
    pub(crate) fn forget_if_idle(&mut self, key: &str) {
        if self.map.get(key).is_some_and(|q| q.pending.is_empty()) {
            self.map.remove(key);
        }
    }

    /// Forgets every queue that holds nothing and that no subscription `used` any more.
    pub(crate) fn forget_unused(&mut self, used: impl Fn(&str) -> bool) {
        self.map
            .retain(|name, q| !q.pending.is_empty() || used(name));
    }

    /// (queues, waiting messages, their bytes).
    pub(crate) fn usage(&self) -> (usize, usize, usize) {
        (self.map.len(), self.messages, self.bytes)
    }
}

fn refused(message: String, limit: &'static str) -> Refused {
    Refused { message, limit }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Kind, Target};
    use bytes::Bytes;
    use herald_stomp::Headers;

    fn message(key: &str, body: usize) -> Arc<Message> {
        Arc::new(Message::new(
            "n-1".into(),
            Target::broker(Kind::Queue, key),
            &Headers::new(),
            Bytes::from(vec![b'x'; body]),
        ))
    }

    fn config(overflow: QueueOverflow) -> BrokerConfig {
        BrokerConfig {
            queue_capacity: 3,
            queue_max_bytes: 4000,
            queues_max_bytes: 6000,
            max_queues: 2,
            queue_overflow: overflow,
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn reject_publish_refuses_at_each_limit_and_keeps_what_waits() {
        let c = config(QueueOverflow::RejectPublish);
        let mut q = Queues::default();
        for _ in 0..3 {
            q.push(&c, message("/queue/a", 10), false).unwrap();
        }
        let e = q.push(&c, message("/queue/a", 10), false).unwrap_err();
        assert_eq!(e.limit, "broker.queue_capacity");
        assert_eq!(
            e.message,
            "queue full: '/queue/a' holds 3 messages (limit broker.queue_capacity)"
        );
        q.push(&c, message("/queue/b", 3000), false).unwrap();
        let e = q.push(&c, message("/queue/b", 1000), false).unwrap_err();
        assert_eq!(e.limit, "broker.queue_max_bytes");
        let e = q.push(&c, message("/queue/c", 1), false).unwrap_err();
        assert_eq!(e.limit, "broker.max_queues");
        assert_eq!(q.usage().0, 2, "a refused queue is not left behind");
        // Given back by a NACK: admitted whatever the limits.
        q.push(&c, message("/queue/a", 10), true).unwrap();
        assert_eq!(q.usage().1, 5);
    }

    #[test]
    fn drop_head_makes_room_and_refuses_only_what_it_cannot_make_room_for() {
        let c = config(QueueOverflow::DropHead);
        let mut q = Queues::default();
        for _ in 0..4 {
            q.push(&c, message("/queue/a", 10), false).unwrap();
        }
        assert_eq!(q.usage().1, 3, "the oldest went");
        let c = BrokerConfig {
            queue_max_bytes: 5000,
            queues_max_bytes: 8000,
            ..c
        };
        let mut q = Queues::default();
        q.push(&c, message("/queue/a", 3500), false).unwrap();
        q.push(&c, message("/queue/b", 2000), false).unwrap();
        // Past queues_max_bytes: /queue/b drops its own oldest to make room.
        q.push(&c, message("/queue/b", 2000), false).unwrap();
        assert_eq!(q.usage().1, 2);
        // Even empty, /queue/b has no room for this one: /queue/a holds the rest.
        let e = q.push(&c, message("/queue/b", 4500), false).unwrap_err();
        assert_eq!(e.limit, "broker.queues_max_bytes");
        assert!(e.message.starts_with("queue full: all queues hold "), "{e}");
    }

    #[test]
    fn bytes_are_counted_back_when_messages_leave() {
        let c = config(QueueOverflow::RejectPublish);
        let mut q = Queues::default();
        let m = message("/queue/a", 100);
        q.push(&c, m.clone(), false).unwrap();
        assert_eq!(q.usage(), (1, 1, m.footprint()));
        let r = Arc::new(crate::broker::Recipient::new(
            "s".into(),
            herald_stomp::Version::V1_2,
            Arc::new(crate::broker::Outbox::new(1 << 20)),
        ));
        let sub = Subscription::new(
            "0".into(),
            Target::broker(Kind::Queue, "/queue/a"),
            crate::broker::AckMode::Auto,
            r,
        );
        q.offer(&sub, |_, _, _| true);
        assert_eq!(q.usage(), (1, 0, 0));
        q.forget_if_idle("/queue/a");
        assert_eq!(q.usage(), (0, 0, 0));
    }
}
