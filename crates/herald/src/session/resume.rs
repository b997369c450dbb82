//! Resuming a session whose connection broke, for clients that change nothing but
//! one CONNECT header.
//!
//! CONNECTED hands out a `resume-token` (unguessable, good once). When the session
//! ends other than by DISCONNECT or an administrator, it is *parked* on the bus under
//! that token for `stomp.resume_window`: its user, and per subscription its id,
//! destination, ack mode, window and where its client is in the destination's
//! history (the last delivery written to the connection, or before the first one
//! still waiting for an ACK). A CONNECT with `resume:<token>`, on any node, by the
//! same user, takes it back: the subscriptions are opened again under the same ids and
//! each replays from history what was published meanwhile, in order, before live
//! messages; a queue keeps its messages (and gets back the ones never acked) by
//! itself; where history cannot fill the gap (a wildcard, a trimmed or restarted
//! history, a bus that could not say) the subscription gets `recovered:false` first.
//! The client's own SUBSCRIBE repeating a restored id and destination — what a
//! stompjs app does in `onConnect` — is the same subscription.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::broker::{Kind, Subscription};
use crate::cluster::{BoxFuture, Bus};
use crate::message::Position;

/// The CONNECT header that asks to resume, and the CONNECTED headers that answer.
pub(crate) const RESUME: &str = "resume";
pub(crate) const RESUME_TOKEN: &str = "resume-token";
pub(crate) const RESUMED: &str = "resumed";

/// Longest resume token taken from a client (the key it names is built from it).
const TOKEN_MAX: usize = 64;

/// A fresh resume token: 122 random bits.
pub(crate) fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether a client's `resume` header can be a token at all (hostile input names a
/// key on the bus).
pub(crate) fn plausible(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= TOKEN_MAX
        && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A session kept for resuming, as it is parked on the bus (JSON).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Parked {
    pub(crate) user: String,
    /// Whether a verified token stood behind `user`.
    pub(crate) authenticated: bool,
    pub(crate) subscriptions: Vec<ParkedSubscription>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ParkedSubscription {
    pub(crate) id: String,
    /// As the client wrote it (rules and routing are asked again on resume).
    pub(crate) destination: String,
    pub(crate) ack: String,
    pub(crate) window: usize,
    pub(crate) replay: Replay,
}

/// What a restored subscription gets of what it missed.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "from", rename_all = "snake_case")]
pub(crate) enum Replay {
    /// Topic history after `offset` (of `epoch`; none: any, the client saw nothing).
    Offset { offset: u64, epoch: Option<String> },
    /// A queue keeps what waits in it, and gets back what was never acked.
    Queue,
    /// What was missed cannot be known: `recovered:false`.
    Lost,
}

impl Replay {
    fn at(p: Option<Position>) -> Replay {
        match p {
            Some(p) => Replay::Offset {
                offset: p.offset,
                epoch: Some(p.epoch.to_string()),
            },
            // Nothing was published yet: everything that is now is news.
            None => Replay::Offset {
                offset: 0,
                epoch: None,
            },
        }
    }
}

/// A subscription being parked: where it stands is read once the connection wrote
/// its last frames.
struct Parking {
    sub: Arc<Subscription>,
    /// Where a subscription with acks stands: before its first unacked delivery,
    /// read before closing hands those back.
    acked: Option<Position>,
    /// Where its destination's history stood for a subscription that received
    /// nothing, asked of the bus before the subscription went.
    position: Option<BoxFuture<Result<Option<Position>, String>>>,
}

/// What [`park`] needs of a session, read while its subscriptions are still open.
pub(crate) struct Departure {
    token: String,
    user: String,
    authenticated: bool,
    subscriptions: Vec<Parking>,
}

impl Departure {
    /// Reads the session's subscriptions before they are closed.
    pub(crate) fn new<'a>(
        token: String,
        user: String,
        authenticated: bool,
        subscriptions: impl Iterator<Item = &'a Arc<Subscription>>,
        bus: &Arc<dyn Bus>,
    ) -> Departure {
        let subscriptions = subscriptions
            .map(|sub| {
                let point = sub.resume_point();
                let asks = sub.kind == Kind::Topic && sub.pattern.is_none() && point.is_none();
                Parking {
                    position: asks.then(|| bus.position(&sub.key)),
                    acked: point.filter(|_| sub.acks()),
                    sub: sub.clone(),
                }
            })
            .collect();
        Departure {
            token,
            user,
            authenticated,
            subscriptions,
        }
    }
}

/// Parks the session for `window`, once its connection wrote what it could (so the
/// resume points count it as seen).
pub(crate) fn park(
    departure: Departure,
    bus: Arc<dyn Bus>,
    window: std::time::Duration,
) -> BoxFuture<()> {
    Box::pin(async move {
        let mut subscriptions = Vec::with_capacity(departure.subscriptions.len());
        for Parking {
            sub,
            acked,
            position,
        } in departure.subscriptions
        {
            let replay = if sub.kind == Kind::Queue {
                Replay::Queue
            } else if sub.pattern.is_some() {
                Replay::Lost
            } else {
                match (acked.or_else(|| sub.resume_point()), position) {
                    (Some(p), _) => Replay::at(Some(p)),
                    (None, Some(asked)) => match asked.await {
                        Ok(p) => Replay::at(p),
                        Err(e) => {
                            tracing::debug!(destination = %sub.destination, error = %e, "history position unknown; the resumed subscription will be told recovered:false");
                            Replay::Lost
                        }
                    },
                    (None, None) => Replay::Lost,
                }
            };
            subscriptions.push(ParkedSubscription {
                id: sub.id.clone(),
                destination: sub.destination.clone(),
                ack: sub.ack.as_str().to_owned(),
                window: sub.window(),
                replay,
            });
        }
        let parked = Parked {
            user: departure.user,
            authenticated: departure.authenticated,
            subscriptions,
        };
        let Ok(json) = serde_json::to_string(&parked) else {
            return;
        };
        if let Err(e) = bus.park(&departure.token, json, window).await {
            tracing::warn!(error = %e, "a session could not be kept for resuming");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_plausible() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(plausible(&a));
        assert!(!plausible(""));
        assert!(!plausible("a:b"));
        assert!(!plausible(&"a".repeat(65)));
    }

    #[test]
    fn a_parked_session_reads_back_as_written() {
        let parked = Parked {
            user: "alice".into(),
            authenticated: true,
            subscriptions: vec![ParkedSubscription {
                id: "sub-0".into(),
                destination: "/topic/a".into(),
                ack: "auto".into(),
                window: 100,
                replay: Replay::Offset {
                    offset: 7,
                    epoch: Some("e".into()),
                },
            }],
        };
        let json = serde_json::to_string(&parked).unwrap();
        let back: Parked = serde_json::from_str(&json).unwrap();
        assert_eq!(back.subscriptions[0].replay, parked.subscriptions[0].replay);
        assert_eq!(
            Replay::at(None),
            Replay::Offset {
                offset: 0,
                epoch: None
            }
        );
    }
}
