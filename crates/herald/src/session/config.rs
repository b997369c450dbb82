//! `[stomp]`: what one STOMP session may send and hold, and its timers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::broker::Outbox;
use crate::broker::subscription::DEFAULT_PREFETCH;
use crate::error::ConfigError;

/// `[stomp]`: what one STOMP session may send and make the server hold, and its
/// timers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StompConfig {
    /// Largest inbound frame (headers and body), bytes.
    pub max_frame: usize,
    /// Most headers in one inbound frame.
    pub max_headers: usize,
    /// Longest inbound header line, bytes.
    pub max_header_line: usize,
    /// Bytes that may wait in a session's outbound queue before the session is
    /// closed as a slow consumer (Spring's sendBufferSizeLimit). With flow control
    /// only what cannot be paced gets this far: other nodes' messages, many
    /// publishers at once.
    pub outbound_queue: usize,
    /// Producer flow control: a publish that leaves a subscriber with more than this
    /// many bytes waiting pauses its publisher (the session stops reading its socket)
    /// until the subscriber is under `outbound_low_water`. Equal to `outbound_queue`:
    /// no flow control, a subscriber past the limit is closed (Spring's behaviour).
    /// Unset: a quarter of `outbound_queue`.
    pub outbound_high_water: Option<usize>,
    /// Where a paused publisher is let go again. Unset: a quarter of the high-water
    /// mark.
    pub outbound_low_water: Option<usize>,
    /// Longest a write to a client may go without progress (not one byte taken)
    /// before the session is closed as a slow consumer (Spring's sendTimeLimit);
    /// also how long a REST publish waits for paced subscribers.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// Heart-beat the server offers to send (0 = none).
    #[serde(with = "humantime_serde")]
    pub heartbeat_send: Duration,
    /// Heart-beat the server asks to receive (0 = none).
    #[serde(with = "humantime_serde")]
    pub heartbeat_receive: Duration,
    /// Time from connection to CONNECT frame.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    // Budgets: what one session can make the server hold.
    /// Transactions one session may have open at once.
    pub max_transactions: usize,
    /// Frames (SEND, ACK, NACK) one transaction may buffer until COMMIT.
    pub transaction_max_frames: usize,
    /// Bytes (bodies and headers) one transaction may buffer until COMMIT.
    pub transaction_max_bytes: usize,
    /// Unacknowledged deliveries per subscription with client acks, unless its
    /// SUBSCRIBE says `prefetch-count`.
    pub prefetch: usize,
    /// The largest `prefetch-count` a SUBSCRIBE gets; more (or 0) is clamped to it.
    pub prefetch_max: usize,
    /// How long a session that lost its connection can be resumed (CONNECT with the
    /// `resume` header its CONNECTED gave): subscriptions restored, what was missed
    /// replayed. 0: no resume tokens.
    #[serde(with = "humantime_serde")]
    pub resume_window: Duration,
    /// Sessions this node keeps for resuming at once (each for `resume_window`);
    /// past it an ended session is not kept, and its client starts afresh.
    pub resume_max_parked: usize,
}

impl StompConfig {
    /// Bytes waiting for a subscriber above which its publishers pause.
    pub fn high_water(&self) -> usize {
        self.outbound_high_water.unwrap_or(self.outbound_queue / 4)
    }

    /// Bytes waiting for a subscriber under which paused publishers go on.
    pub fn low_water(&self) -> usize {
        self.outbound_low_water.unwrap_or(self.high_water() / 4)
    }
}

impl Default for StompConfig {
    fn default() -> Self {
        StompConfig {
            max_frame: 64 * 1024,
            max_headers: 64,
            max_header_line: 8 * 1024,
            outbound_queue: 1024 * 1024,
            outbound_high_water: None,
            outbound_low_water: None,
            send_timeout: Duration::from_secs(10),
            heartbeat_send: Duration::from_secs(10),
            heartbeat_receive: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(60),
            max_transactions: 8,
            transaction_max_frames: 1000,
            transaction_max_bytes: 1024 * 1024,
            prefetch: DEFAULT_PREFETCH,
            prefetch_max: 1000,
            resume_window: Duration::from_secs(120),
            resume_max_parked: 100_000,
        }
    }
}

impl StompConfig {
    /// A session's outbox: paced between the water marks, refusing past the queue.
    pub fn outbox(&self) -> Outbox {
        Outbox::paced(self.outbound_queue, self.high_water(), self.low_water())
    }

    /// The limits the frame decoder enforces.
    pub fn frame_limits(&self) -> herald_stomp::Limits {
        herald_stomp::Limits {
            max_frame: self.max_frame,
            max_headers: self.max_headers,
            max_header_line: self.max_header_line,
        }
    }

    /// Checks this section's settings; `Err` names the key and what is wrong with it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = ConfigError::check;
        check(
            self.max_frame >= 256,
            "stomp.max_frame",
            "must be at least 256 bytes",
        )?;
        check(
            self.max_headers >= 1,
            "stomp.max_headers",
            "must be at least 1",
        )?;
        check(
            self.max_header_line >= 64,
            "stomp.max_header_line",
            "must be at least 64 bytes",
        )?;
        check(
            self.outbound_queue >= self.max_frame,
            "stomp.outbound_queue",
            "must be at least stomp.max_frame",
        )?;
        check(
            self.high_water() <= self.outbound_queue,
            "stomp.outbound_high_water",
            "must be at most stomp.outbound_queue",
        )?;
        check(
            self.low_water() < self.high_water() || self.high_water() >= self.outbound_queue,
            "stomp.outbound_low_water",
            "must be less than stomp.outbound_high_water",
        )?;
        check(
            !self.send_timeout.is_zero(),
            "stomp.send_timeout",
            "must be more than 0",
        )?;
        check(
            self.max_transactions >= 1,
            "stomp.max_transactions",
            "must be at least 1",
        )?;
        check(
            self.transaction_max_frames >= 1,
            "stomp.transaction_max_frames",
            "must be at least 1",
        )?;
        check(
            self.transaction_max_bytes >= self.max_frame,
            "stomp.transaction_max_bytes",
            "must be at least stomp.max_frame",
        )?;
        check(
            self.prefetch >= 1 && self.prefetch <= self.prefetch_max,
            "stomp.prefetch",
            "must be 1 to stomp.prefetch_max",
        )?;
        check(
            self.resume_window <= Duration::from_secs(24 * 3600),
            "stomp.resume_window",
            "must be at most 24h",
        )?;
        check(
            self.resume_window.is_zero() || self.resume_max_parked >= 1,
            "stomp.resume_max_parked",
            "must be at least 1 while stomp.resume_window is set",
        )
    }

    /// Whether CONNECTED hands out resume tokens.
    pub fn resumes(&self) -> bool {
        !self.resume_window.is_zero()
    }
}
