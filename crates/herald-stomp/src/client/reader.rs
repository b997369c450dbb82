//! Frames from an [`Inbound`] link: a decoder and the bytes it has not used yet.

use std::time::Duration;

use bytes::BytesMut;

use super::Error;
use super::link::Inbound;
use crate::{DecodeError, Decoder, Frame};

/// Reads frames from `link`. The buffer is open to callers that look at the bytes
/// before the decoder does (heart-beat EOLs, a benchmark's skim over MESSAGE frames).
pub struct FrameReader<I> {
    link: I,
    decoder: Decoder,
    buf: BytesMut,
}

impl<I: Inbound> FrameReader<I> {
    /// A reader on `link` with nothing buffered yet.
    pub fn new(link: I, decoder: Decoder) -> Self {
        FrameReader {
            link,
            decoder,
            buf: BytesMut::new(),
        }
    }

    /// Reads more from the link into the buffer; `false` once the peer has closed.
    pub async fn fill(&mut self) -> Result<bool, Error> {
        Ok(self.link.read_into(&mut self.buf).await?)
    }

    /// A whole frame from the buffer, if one is there; reads nothing.
    pub fn try_decode(&mut self) -> Result<Option<Frame>, DecodeError> {
        self.decoder.decode(&mut self.buf)
    }

    /// The next frame, or `None` once the peer has closed the connection.
    pub async fn recv(&mut self) -> Result<Option<Frame>, Error> {
        loop {
            if let Some(f) = self.try_decode()? {
                return Ok(Some(f));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Like [`FrameReader::recv`], but [`Error::Timeout`] when no whole frame arrived
    /// within `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Option<Frame>, Error> {
        tokio::time::timeout(limit, self.recv())
            .await
            .map_err(|_| Error::Timeout(limit))?
    }

    /// The bytes read but not yet decoded.
    pub fn buffer(&self) -> &BytesMut {
        &self.buf
    }

    /// The bytes read but not yet decoded, for a caller that consumes some itself
    /// (whole frames only: the decoder resumes where they end).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The decoder, to switch its version once CONNECTED has named one.
    pub fn decoder_mut(&mut self) -> &mut Decoder {
        &mut self.decoder
    }

    /// The link it reads from.
    pub fn link(&self) -> &I {
        &self.link
    }

    /// The link it reads from, to write to it or close it.
    pub fn link_mut(&mut self) -> &mut I {
        &mut self.link
    }

    /// The link, decoder and unread bytes, to be put back together around another link
    /// (the read half after a split).
    pub fn into_parts(self) -> (I, Decoder, BytesMut) {
        (self.link, self.decoder, self.buf)
    }

    /// A reader from the pieces [`FrameReader::into_parts`] returned, on that link or
    /// another one.
    pub fn from_parts(link: I, decoder: Decoder, buf: BytesMut) -> Self {
        FrameReader { link, decoder, buf }
    }
}
