//! [`Messaging`]: publish from anywhere in the server, like Spring's
//! `SimpMessagingTemplate.convertAndSend` / `convertAndSendToUser`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_stomp::Headers;
use serde::Serialize;

use super::{BoxFuture, HandlerError, Reply, ReplyTarget, SessionInfo};
use crate::broker::{Broker, Message, Pressure, Refused, Target};
use crate::cluster::{Bus, Outcome};
use crate::router::{Router, SendRoute};

/// Publishing from server code (Spring's `SimpMessagingTemplate`): to destinations
/// and users, on this node and, through the bus, on every node of the cluster.
#[derive(Clone, Debug)]
pub struct Messaging {
    broker: Arc<Broker>,
    router: Arc<Router>,
    /// How long a confirmed send waits for subscribers it left with too much
    /// waiting (`stomp.send_timeout`): a subscriber that makes no progress for that
    /// long is closed meanwhile.
    pace: Duration,
}

impl Messaging {
    pub(crate) fn new(broker: Arc<Broker>, router: Arc<Router>, pace: Duration) -> Self {
        Messaging {
            broker,
            router,
            pace,
        }
    }

    /// Publishes JSON `payload` to a broker destination (or `/user/{name}/...`);
    /// returns how many subscriptions received it.
    pub fn convert_and_send(
        &self,
        destination: &str,
        payload: &impl Serialize,
    ) -> Result<usize, HandlerError> {
        self.publish(Reply::to(destination, payload), None)
    }

    /// Publishes JSON `payload` to `destination` (like `/queue/messages`) of every
    /// session of `user`.
    pub fn convert_and_send_to_user(
        &self,
        user: &str,
        destination: &str,
        payload: &impl Serialize,
    ) -> Result<usize, HandlerError> {
        self.publish(Reply::to_user(user, destination, payload), None)
    }

    /// Publishes raw `body` with `headers` to a destination.
    pub fn send(
        &self,
        destination: &str,
        headers: &Headers,
        body: Bytes,
    ) -> Result<usize, HandlerError> {
        let target = self.destination_target(destination)?;
        self.publish_to(target, headers, body, None)
    }

    /// Like [`Messaging::send`], resolving once the message is in the cluster (at
    /// once on a single node): local deliveries and history position; or, with
    /// [`Outcome::error`], the cluster's refusal (Redis away past
    /// `cluster.publish_timeout`, the outage spool full): the message is then never
    /// delivered by the cluster, only this node's topic subscribers may have it; or
    /// why a queue refused it.
    pub fn send_confirmed(
        &self,
        destination: &str,
        headers: &Headers,
        body: Bytes,
    ) -> Result<impl Future<Output = Result<Outcome, Refused>> + Send + 'static, HandlerError> {
        let target = self.destination_target(destination)?;
        let message = Message::new(self.broker.next_message_id(), target, headers, body);
        Ok(self.confirmed_and_paced(message))
    }

    /// Publishes `message`, resolving once it is in the cluster and the subscribers it
    /// left with too much waiting took it (or `pace` passed): a caller that sends one
    /// request after another (the REST API) goes at its slowest reader's pace, within
    /// the bound, as a STOMP publisher does.
    fn confirmed_and_paced(
        &self,
        message: Message,
    ) -> impl Future<Output = Result<Outcome, Refused>> + Send + 'static {
        let pressure = Arc::new(Pressure::default());
        let confirmed = self
            .broker
            .publish_confirmed(message.paced_by(Some(pressure.clone())));
        let pace = self.pace;
        async move {
            let outcome = confirmed.await;
            if pressure.is_raised() {
                crate::ops::metrics::publisher_paused(true);
                if !pressure.relieved_within(pace).await {
                    tracing::debug!("a paced publish went on after {pace:?}");
                }
                crate::ops::metrics::publisher_paused(false);
            }
            outcome
        }
    }

    /// Like [`Messaging::send_to_user`], resolving once the message is in the cluster
    /// or refused (as [`Messaging::send_confirmed`]).
    pub fn send_to_user_confirmed(
        &self,
        user: &str,
        destination: &str,
        headers: &Headers,
        body: Bytes,
    ) -> impl Future<Output = Result<Outcome, Refused>> + Send + 'static {
        let target = self.router.user_target(user, destination);
        let message = Message::new(self.broker.next_message_id(), target, headers, body);
        self.confirmed_and_paced(message)
    }

    /// The cluster: presence (who is online, who is in a room) and small maps shared
    /// by every node.
    pub fn cluster(&self) -> &Arc<dyn Bus> {
        self.broker.bus()
    }

    /// Publishes raw `body` to `destination` of every session of `user`.
    pub fn send_to_user(
        &self,
        user: &str,
        destination: &str,
        headers: &Headers,
        body: Bytes,
    ) -> usize {
        // A user destination is a topic: no queue budget can refuse it.
        self.publish_to(
            self.router.user_target(user, destination),
            headers,
            body,
            None,
        )
        .unwrap_or(0)
    }

    /// Publishes a handler's reply; `sender` resolves replies addressed to the sender.
    pub fn publish(
        &self,
        reply: Reply,
        sender: Option<&SessionInfo>,
    ) -> Result<usize, HandlerError> {
        self.publish_paced(reply, sender, None)
    }

    /// Like [`Messaging::publish`]; a subscriber left with too much waiting makes
    /// `publisher` wait (producer flow control, [`Pressure`]).
    pub fn publish_paced(
        &self,
        reply: Reply,
        sender: Option<&SessionInfo>,
        publisher: Option<Arc<Pressure>>,
    ) -> Result<usize, HandlerError> {
        let (message, only_session) = self.reply_message(reply, sender, publisher)?;
        self.deliver(message, only_session)
    }

    /// Like [`Messaging::publish`], resolving once the reply is in the cluster or
    /// refused (as [`Messaging::send_confirmed`]). A reply to the sending session alone
    /// never leaves this node: it resolves at once.
    pub fn publish_confirmed(
        &self,
        reply: Reply,
        sender: Option<&SessionInfo>,
        publisher: Option<Arc<Pressure>>,
    ) -> Result<BoxFuture<Result<Outcome, Refused>>, HandlerError> {
        let (message, only_session) = self.reply_message(reply, sender, publisher)?;
        if only_session.is_some() {
            let delivered = self.deliver(message, only_session)?;
            return Ok(Box::pin(std::future::ready(Ok(Outcome {
                delivered,
                ..Outcome::default()
            }))));
        }
        Ok(Box::pin(self.broker.publish_confirmed(message)))
    }

    /// Where a reply goes, and the one session it is for when it is for the sender's
    /// session alone.
    fn reply_target<'s>(
        &self,
        target: &ReplyTarget,
        sender: Option<&'s SessionInfo>,
    ) -> Result<(Target, Option<&'s str>), HandlerError> {
        let no_sender = || HandlerError::new("a reply to the sender needs a sending session");
        Ok(match target {
            ReplyTarget::Destination(d) => (self.destination_target(d)?, None),
            ReplyTarget::Subscriber => {
                return Err(HandlerError::new(
                    "a reply to the subscriber answers a SUBSCRIBE: only a subscribe handler's can go there",
                ));
            }
            ReplyTarget::User { user, destination } => {
                (self.router.user_target(user, destination), None)
            }
            ReplyTarget::Sender { destination } => {
                let s = sender.ok_or_else(no_sender)?;
                (
                    self.router.user_target(&s.principal.name, destination),
                    None,
                )
            }
            ReplyTarget::SenderSession { destination } => {
                let s = sender.ok_or_else(no_sender)?;
                (
                    self.router.user_target(&s.principal.name, destination),
                    Some(s.id.as_str()),
                )
            }
        })
    }

    fn destination_target(&self, destination: &str) -> Result<Target, HandlerError> {
        match self.router.for_send(destination) {
            Ok(SendRoute::Broker(t)) => Ok(t),
            Ok(SendRoute::App { .. }) => Err(HandlerError::new(format!(
                "cannot publish to application destination '{destination}'"
            ))),
            Err(e) => Err(HandlerError::new(e.message)),
        }
    }

    fn publish_to(
        &self,
        target: Target,
        headers: &Headers,
        body: Bytes,
        only_session: Option<&str>,
    ) -> Result<usize, HandlerError> {
        let message = Message::new(self.broker.next_message_id(), target, headers, body);
        self.deliver(message, only_session)
    }

    /// A handler's reply as a message paced by `publisher`, and the one session it is
    /// for when it is for the sender's session alone.
    fn reply_message<'s>(
        &self,
        reply: Reply,
        sender: Option<&'s SessionInfo>,
        publisher: Option<Arc<Pressure>>,
    ) -> Result<(Message, Option<&'s str>), HandlerError> {
        let (target, only_session) = self.reply_target(&reply.target, sender)?;
        let message = Message::new(
            self.broker.next_message_id(),
            target,
            &reply.headers,
            reply.body,
        )
        .paced_by(publisher);
        Ok((message, only_session))
    }

    fn deliver(&self, message: Message, only_session: Option<&str>) -> Result<usize, HandlerError> {
        self.broker
            .publish_filtered(message, only_session)
            .map_err(|e| HandlerError::new(e.message))
    }
}
