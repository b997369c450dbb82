//! Frames to an [`Outbound`] link, encoded for the negotiated version.

use bytes::{Bytes, BytesMut};

use super::Error;
use super::link::Outbound;
use crate::{Frame, Version, encode};

/// Encodes frames into one reused buffer: each frame is split off as [`Bytes`], so
/// the allocation is reclaimed once the link has sent it.
pub struct FrameEncoder {
    version: Version,
    out: BytesMut,
}

impl FrameEncoder {
    /// An encoder for `version` with an empty buffer.
    pub fn new(version: Version) -> Self {
        FrameEncoder {
            version,
            out: BytesMut::new(),
        }
    }

    /// The version frames are encoded for.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Encodes for `version` from now on.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// `frame` encoded for the current version, as bytes of its own.
    pub fn encode(&mut self, frame: &Frame) -> Bytes {
        self.out.reserve(frame.body.len() + 128);
        encode(frame, self.version, &mut self.out);
        self.out.split().freeze()
    }
}

/// Writes frames to `link` (the write half of a split connection, or a whole one).
pub struct FrameWriter<O> {
    link: O,
    encoder: FrameEncoder,
}

impl<O: Outbound> FrameWriter<O> {
    /// A writer to `link` that encodes for `version`.
    pub fn new(link: O, version: Version) -> Self {
        FrameWriter {
            link,
            encoder: FrameEncoder::new(version),
        }
    }

    /// Sends `frame` now (one TCP write or one WebSocket message).
    pub async fn send(&mut self, frame: &Frame) -> Result<(), Error> {
        let bytes = self.encoder.encode(frame);
        Ok(self.link.write(bytes).await?)
    }

    /// Queues `frame` without flushing (flushed by the link past a threshold).
    pub async fn feed(&mut self, frame: &Frame) -> Result<(), Error> {
        let bytes = self.encoder.encode(frame);
        Ok(self.link.feed(bytes).await?)
    }

    /// Sends what [`FrameWriter::feed`] queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        Ok(self.link.flush().await?)
    }

    /// Ends the sending side: a WebSocket close, or a TCP shutdown.
    pub async fn close(&mut self) -> Result<(), Error> {
        Ok(self.link.close().await?)
    }

    /// The link it writes to.
    pub fn link_mut(&mut self) -> &mut O {
        &mut self.link
    }
}
