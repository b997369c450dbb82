//! STOMP as a [`Protocol`] of the connection loop: bytes → herald-stomp `Decoder` →
//! [`Session`], within the frame rate; the final message is an ERROR frame.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use herald_stomp::{Command, Decoder, Frame, receipt_hint};

use super::connection::{Connected, Input, Protocol};
use crate::auth::limits::TokenBucket;
use crate::broker::{OutFrame, Pressure};
use crate::error::{ErrorKind, StompError};
use crate::handler::{HandlerError, Reply};
use crate::session::{AppCall, Flow, Session};

pub(crate) struct Stomp {
    pub(crate) session: Session,
    decoder: Decoder,
    bucket: Option<TokenBucket>,
    /// A CONNECT waiting for [`Protocol::resume`] (authentication is async).
    connecting: Option<Box<Frame>>,
    /// The session's parking, once it ended and may be resumed.
    parking: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Stomp {
    pub(crate) fn new(session: Session, node: &crate::node::Node) -> Stomp {
        let limits = &node.config.limits;
        Stomp {
            session,
            decoder: Decoder::new(node.config.stomp.frame_limits()),
            bucket: TokenBucket::new(limits.frame_rate, limits.frame_burst),
            connecting: None,
            parking: None,
        }
    }
}

/// An application call as the loop awaits it.
pub(crate) struct StompCall(AppCall);

impl Future for StompCall {
    type Output = Result<Vec<Reply>, HandlerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.future.as_mut().poll(cx)
    }
}

impl Stomp {
    fn flowed(&mut self, flow: Flow) -> Input {
        match flow {
            Flow::Continue => Input::Done,
            Flow::Connected { version, heartbeat } => {
                self.decoder.set_version(version);
                Input::Connected(Connected {
                    user: self.session.user().to_owned(),
                    heartbeat,
                    expires_in: self.session.expires_in(),
                    presence: true,
                })
            }
            Flow::Close => Input::Close,
        }
    }
}

impl Protocol for Stomp {
    type Call = StompCall;

    fn input(&mut self, buf: &mut BytesMut) -> Result<Input, StompError> {
        let session = &mut self.session;
        loop {
            if session.calls_full() || session.paced().is_some() {
                return Ok(if buf.is_empty() {
                    Input::Done
                } else {
                    Input::Backlog
                });
            }
            let frame = match self.decoder.decode(buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(Input::Done),
                Err(e) => return Err(StompError::from(e).with_receipt(receipt_hint(buf))),
            };
            if let Some(b) = self.bucket.as_mut()
                && !b.take()
            {
                return Err(StompError::of(
                    ErrorKind::Limit,
                    format!(
                        "frame rate limit exceeded: more than {} frames per second",
                        b.rate()
                    ),
                ));
            }
            crate::ops::metrics::frame_in(frame.command.as_str());
            if !session.is_connected() && matches!(frame.command, Command::Connect | Command::Stomp)
            {
                self.connecting = Some(Box::new(frame));
                return Ok(Input::Pending);
            }
            match session.handle(frame)? {
                Flow::Continue => {}
                flow => return Ok(self.flowed(flow)),
            }
        }
    }

    fn resume(&mut self) -> Pin<Box<dyn Future<Output = Result<Input, StompError>> + Send + '_>> {
        // Boxed: the CONNECT future (authentication) is large and runs once; inline it
        // would take room in every connection's task for good.
        Box::pin(async move {
            let Some(frame) = self.connecting.take() else {
                return Ok(Input::Done);
            };
            let flow = self.session.connect(*frame).await?;
            Ok(self.flowed(flow))
        })
    }

    fn next_call(&mut self) -> Option<StompCall> {
        self.session.next_call().map(StompCall)
    }

    fn finish_call(
        &mut self,
        call: StompCall,
        output: Result<Vec<Reply>, HandlerError>,
    ) -> Result<(), StompError> {
        self.session.finish_call(call.0, output)
    }

    fn paced(&self) -> Option<&Arc<Pressure>> {
        self.session.paced()
    }

    fn final_frame(&self, err: &StompError) -> OutFrame {
        self.session.error_frame(err)
    }

    fn close_reason(&self, _: Option<&StompError>) -> Option<(u16, String)> {
        // The ERROR frame said why; the transport closes as it always does.
        None
    }

    fn close(&mut self, err: Option<&StompError>) {
        // An administrator's kick ends the session for good; anything else the client
        // did not ask for may be resumed.
        if err.is_none_or(|e| e.kind != ErrorKind::Admin)
            && let Some(departure) = self.session.departure()
        {
            let node = self.session.node();
            self.parking = Some(crate::session::resume::park(
                departure,
                node.broker.bus().clone(),
                node.config.stomp.resume_window,
            ));
        }
        self.session.close();
    }

    fn farewell(&mut self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        self.parking.take()
    }

    fn refreshed_expiry(&self) -> Option<std::time::Duration> {
        self.session.expires_in()
    }
}
