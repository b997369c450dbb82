//! Incremental STOMP decoder.
//!
//! Bytes arrive in arbitrary pieces (a TCP read, a WebSocket message, stomp.js's 16 KiB
//! chunks); [`Decoder::decode`] consumes whole frames from the front of a buffer and
//! leaves a partial one in place, so any split of a byte stream decodes the same.
//! Every limit is checked before the bytes it guards are buffered in full, and every
//! malformed input is a [`DecodeError`] whose message names the problem — the session
//! turns it into an ERROR frame verbatim.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;

use crate::frame::{Command, Frame, Headers, Version};

/// Limits on what a peer may send. Defaults follow Spring's STOMP broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame, headers and body together, in bytes.
    pub max_frame: usize,
    /// Most header lines in one frame.
    pub max_headers: usize,
    /// Longest header line (or command line), in bytes.
    pub max_header_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 64 * 1024,
            max_headers: 64,
            max_header_line: 8 * 1024,
        }
    }
}

/// Why a byte stream is not valid STOMP. The `Display` text is sent to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown command '{0}'")]
    UnknownCommand(String),
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(&'static str),
    #[error("header line without ':' ({0:?})")]
    MissingColon(String),
    #[error("invalid escape sequence '\\{seq}' in header '{header}'")]
    InvalidEscape { header: String, seq: char },
    #[error("header line longer than {limit} bytes")]
    HeaderLineTooLong { limit: usize },
    #[error("too many headers (limit {limit})")]
    TooManyHeaders { limit: usize },
    #[error("frame larger than {limit} bytes")]
    FrameTooLarge { limit: usize },
    #[error("invalid content-length '{0}'")]
    InvalidContentLength(String),
    #[error("frame body of content-length bytes is not followed by a NUL octet")]
    MissingNul,
    #[error("{0} frame must not have a body")]
    BodyNotAllowed(Command),
}

/// The header block of a frame whose body has not fully arrived.
#[derive(Debug)]
struct Pending {
    command: Command,
    headers: Headers,
    /// Offset of the first body byte in the buffer.
    body_start: usize,
    content_length: Option<usize>,
    /// How far the NUL search has already looked (when there is no content-length).
    scanned: usize,
}

#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    version: Version,
    pending: Option<Pending>,
}

impl Decoder {
    /// A decoder for a connection whose version is not negotiated yet: it reads
    /// CONNECT frames (never escaped) and later frames as 1.2 until told otherwise.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            version: Version::V1_2,
            pending: None,
        }
    }

    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Takes the next whole frame off the front of `buf`. Heart-beat EOLs between
    /// frames are consumed silently. `Ok(None)` means more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if self.pending.is_none() {
            skip_eols(buf);
            if buf.is_empty() {
                return Ok(None);
            }
            match self.decode_head(buf)? {
                Some(p) => self.pending = Some(p),
                None => return Ok(None),
            }
        }
        let p = self.pending.as_mut().expect("pending head");
        let body_len = match p.content_length {
            Some(len) => {
                if buf.len() < p.body_start + len + 1 {
                    return Ok(None);
                }
                if buf[p.body_start + len] != 0 {
                    return Err(DecodeError::MissingNul);
                }
                len
            }
            None => {
                let from = p.body_start + p.scanned;
                match memchr(0, &buf[from..]) {
                    Some(i) => p.scanned + i,
                    None => {
                        p.scanned = buf.len() - p.body_start;
                        if buf.len() > self.limits.max_frame {
                            return Err(DecodeError::FrameTooLarge {
                                limit: self.limits.max_frame,
                            });
                        }
                        return Ok(None);
                    }
                }
            }
        };
        let p = self.pending.take().expect("pending head");
        if p.body_start + body_len > self.limits.max_frame {
            return Err(DecodeError::FrameTooLarge {
                limit: self.limits.max_frame,
            });
        }
        if body_len > 0 && !p.command.allows_body() {
            return Err(DecodeError::BodyNotAllowed(p.command));
        }
        // The body gets an allocation of its own. A slice of `buf` would keep the
        // whole read buffer alive (a WebSocket message of up to 1 MiB) for as long as
        // the message lives: queued, in history, unacknowledged. A `BytesMut` does not
        // tell how much of its allocation lies before the body (consumed frames,
        // heart-beats), so a slice is never provably small overhead; and the broker
        // copies the body into every MESSAGE it encodes anyway.
        let body = Bytes::copy_from_slice(&buf[p.body_start..p.body_start + body_len]);
        buf.advance(p.body_start + body_len + 1); // and the NUL
        Ok(Some(Frame {
            command: p.command,
            headers: p.headers,
            body,
        }))
    }

    /// Parses command and headers if the blank line that ends them has arrived.
    fn decode_head(&self, buf: &BytesMut) -> Result<Option<Pending>, DecodeError> {
        let limits = &self.limits;
        // First find the end of the header block without allocating.
        let mut pos = 0;
        let mut lines = 0usize;
        let head_end = loop {
            let Some(nl) = memchr(b'\n', &buf[pos..]) else {
                if buf.len() - pos > limits.max_header_line {
                    return Err(DecodeError::HeaderLineTooLong {
                        limit: limits.max_header_line,
                    });
                }
                if buf.len() > limits.max_frame {
                    return Err(DecodeError::FrameTooLarge {
                        limit: limits.max_frame,
                    });
                }
                return Ok(None);
            };
            let line = trim_cr(&buf[pos..pos + nl]);
            if line.len() > limits.max_header_line {
                return Err(DecodeError::HeaderLineTooLong {
                    limit: limits.max_header_line,
                });
            }
            pos += nl + 1;
            if pos > limits.max_frame {
                return Err(DecodeError::FrameTooLarge {
                    limit: limits.max_frame,
                });
            }
            if line.is_empty() && lines > 0 {
                break pos;
            }
            lines += 1;
            if lines > limits.max_headers + 1 {
                return Err(DecodeError::TooManyHeaders {
                    limit: limits.max_headers,
                });
            }
        };

        let mut rest = &buf[..head_end];
        let command_line = trim_cr(next_line(&mut rest));
        let command = Command::parse(command_line).ok_or_else(|| {
            DecodeError::UnknownCommand(String::from_utf8_lossy(command_line).into_owned())
        })?;
        let escaped = command.escapes_headers(self.version);
        let mut headers = Headers::with_capacity(lines - 1);
        loop {
            let line = trim_cr(next_line(&mut rest));
            if line.is_empty() {
                break;
            }
            let line = std::str::from_utf8(line).map_err(|_| DecodeError::InvalidUtf8("header"))?;
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| DecodeError::MissingColon(line.to_owned()))?;
            if escaped {
                headers.push(unescape(name, name)?, unescape(value, name)?);
            } else {
                headers.push(name, value);
            }
        }

        let content_length = match headers.get("content-length") {
            None => None,
            Some(v) => {
                let len: usize = v
                    .trim()
                    .parse()
                    .map_err(|_| DecodeError::InvalidContentLength(v.to_owned()))?;
                if head_end.saturating_add(len) >= limits.max_frame {
                    return Err(DecodeError::FrameTooLarge {
                        limit: limits.max_frame,
                    });
                }
                Some(len)
            }
        };
        Ok(Some(Pending {
            command,
            headers,
            body_start: head_end,
            content_length,
            scanned: 0,
        }))
    }
}

/// The `receipt` header of the frame at the front of `buf`, read leniently, so that the
/// ERROR for a frame that failed to decode can still name the client's receipt.
pub fn receipt_hint(buf: &[u8]) -> Option<String> {
    let mut rest = buf;
    while let [b'\r' | b'\n', tail @ ..] = rest {
        rest = tail;
    }
    let head_len = memchr::memmem::find(rest, b"\n\n")
        .unwrap_or(rest.len())
        .min(64 * 1024);
    rest[..head_len]
        .split(|&b| b == b'\n')
        .skip(1)
        .map(trim_cr)
        .find_map(|line| line.strip_prefix(b"receipt:"))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

/// Drops heart-beat EOLs (`\n` or `\r\n`) at the front of the buffer. A lone
/// trailing `\r` stays until its `\n` arrives.
fn skip_eols(buf: &mut BytesMut) {
    let mut n = 0;
    loop {
        match &buf[n..] {
            [b'\n', ..] => n += 1,
            [b'\r', b'\n', ..] => n += 2,
            _ => break,
        }
    }
    buf.advance(n);
}

fn next_line<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    match memchr(b'\n', rest) {
        Some(i) => {
            let line = &rest[..i];
            *rest = &rest[i + 1..];
            line
        }
        None => std::mem::take(rest),
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn unescape(s: &str, header: &str) -> Result<String, DecodeError> {
    if !s.contains('\\') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('\\') => out.push('\\'),
            other => {
                return Err(DecodeError::InvalidEscape {
                    header: header.to_owned(),
                    seq: other.unwrap_or(' '),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, DecodeError> {
        let mut d = Decoder::new(Limits::default());
        let mut buf = BytesMut::from(bytes);
        let mut out = vec![];
        while let Some(f) = d.decode(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn decodes_send_with_crlf_and_heartbeats() {
        let frames =
            decode_all(b"\n\r\nSEND\r\ndestination:/topic/a\r\n\r\nhello\0\n\nDISCONNECT\n\n\0")
                .unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].command, Command::Send);
        assert_eq!(frames[0].get("destination"), Some("/topic/a"));
        assert_eq!(&frames[0].body[..], b"hello");
        assert_eq!(frames[1].command, Command::Disconnect);
    }

    #[test]
    fn a_body_does_not_keep_the_read_buffer_alive() {
        // A small frame at the end of a big read (heart-beats, earlier frames).
        let mut bytes = vec![b'\n'; 1 << 20];
        bytes.extend_from_slice(b"SEND\ndestination:/q\n\nx\0");
        let mut buf = BytesMut::from(&bytes[..]);
        let start = buf.as_ptr() as usize;
        let end = start + buf.capacity();
        let frame = Decoder::new(Limits::default())
            .decode(&mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(&frame.body[..], b"x");
        let body = frame.body.as_ptr() as usize;
        assert!(
            !(start..end).contains(&body),
            "the body is a slice of the 1 MiB read buffer"
        );
        // Nothing else holds the buffer: it can be reclaimed in place.
        drop(frame);
        assert!(buf.try_reclaim(1 << 20));
    }

    #[test]
    fn content_length_allows_nul_in_body() {
        let frames = decode_all(b"SEND\ndestination:/q\ncontent-length:3\n\na\0b\0").unwrap();
        assert_eq!(&frames[0].body[..], b"a\0b");
    }

    #[test]
    fn first_repeated_header_wins() {
        let frames = decode_all(b"SEND\nfoo:1\nfoo:2\n\n\0").unwrap();
        assert_eq!(frames[0].get("foo"), Some("1"));
    }

    #[test]
    fn unescapes_except_on_connect() {
        let frames =
            decode_all(b"SEND\nk\\cx:a\\nb\\\\c\\r\n\n\0CONNECT\nlogin:a\\nb\n\n\0").unwrap();
        assert_eq!(frames[0].get("k:x"), Some("a\nb\\c\r"));
        assert_eq!(frames[1].get("login"), Some("a\\nb"));
    }

    #[test]
    fn version_1_0_does_not_unescape() {
        let mut d = Decoder::new(Limits::default());
        d.set_version(Version::V1_0);
        let mut buf = BytesMut::from(&b"SEND\nk:a\\tb\n\n\0"[..]);
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().get("k"), Some("a\\tb"));
    }

    #[test]
    fn errors_name_the_problem() {
        let cases: &[(&[u8], &str)] = &[
            (b"FOO\n\n\0", "unknown command 'FOO'"),
            (
                b"SEND\nbad\\t:x\n\n\0",
                "invalid escape sequence '\\t' in header 'bad\\t'",
            ),
            (b"SEND\nnocolon\n\n\0", "header line without ':'"),
            (
                b"SEND\ncontent-length:x\n\n\0",
                "invalid content-length 'x'",
            ),
            (b"SEND\ncontent-length:1\n\nab\0", "not followed by a NUL"),
            (
                b"SUBSCRIBE\nid:1\n\nbody\0",
                "SUBSCRIBE frame must not have a body",
            ),
            (b"SEND\nk:\xff\n\n\0", "invalid UTF-8 in header"),
        ];
        for (input, msg) in cases {
            let err = decode_all(input).unwrap_err().to_string();
            assert!(err.contains(msg), "{err:?} should contain {msg:?}");
        }
    }

    #[test]
    fn receipt_hint_reads_a_failed_frame() {
        assert_eq!(
            receipt_hint(b"\nSEND\nreceipt:r1\ncontent-length:x\n\n\0"),
            Some("r1".into())
        );
        assert_eq!(
            receipt_hint(b"SEND\r\nreceipt:r2\r\n\r\n"),
            Some("r2".into())
        );
        assert_eq!(receipt_hint(b"SEND\n\nreceipt:body\0"), None);
    }

    #[test]
    fn limits_are_enforced_before_buffering() {
        let limits = Limits {
            max_frame: 100,
            max_headers: 2,
            max_header_line: 20,
        };
        let run = |bytes: &[u8]| {
            let mut d = Decoder::new(limits);
            d.decode(&mut BytesMut::from(bytes)).map(|_| ())
        };
        assert_eq!(
            run(b"SEND\na:1\nb:2\nc:3\n\n\0"),
            Err(DecodeError::TooManyHeaders { limit: 2 })
        );
        assert_eq!(
            run(b"SEND\nxxxxxxxxxxxxxxxxxxxxxxxxx"),
            Err(DecodeError::HeaderLineTooLong { limit: 20 })
        );
        assert_eq!(
            run(b"SEND\ncontent-length:500\n\n"),
            Err(DecodeError::FrameTooLarge { limit: 100 })
        );
        assert_eq!(
            run(&[&b"SEND\n\n"[..], &[b'a'; 200][..]].concat()),
            Err(DecodeError::FrameTooLarge { limit: 100 })
        );
    }
}
