//! Incremental STOMP decoder.
//!
//! Bytes arrive in arbitrary pieces (a TCP read, a WebSocket message, stomp.js's 16 KiB
//! chunks); [`Decoder::decode`] consumes whole frames from the front of a buffer and
//! leaves a partial one in place, so any split of a byte stream decodes the same.
//! Every limit is checked before the bytes it guards are buffered in full, and every
//! malformed input is a [`DecodeError`] whose message names the problem — the session
//! turns it into an ERROR frame verbatim, so what it echoes of the input is escaped
//! (`\x00`) and short.
//!
//! Between frames, EOLs (heart-beats) and stray NULs are skipped. Bytes that cannot
//! begin a command are refused as soon as they arrive, without waiting for an EOL.
//! Header names and values carry no control characters but TAB (in values), and no
//! name contains `:`, even one an escape produced: what is delivered to a 1.0
//! subscriber, who has no escaping, must still frame the same way.

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
    /// The (escaped, shortened) command line, possibly still incomplete.
    #[error("unknown command '{0}'")]
    UnknownCommand(String),
    /// The named part of the frame (`header`) is not UTF-8.
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(&'static str),
    /// A header line has no `:`; holds the line, escaped and shortened.
    #[error("header line without ':' ('{0}')")]
    MissingColon(String),
    /// A header name holds a control character, or a `:` that an escape produced.
    #[error("invalid header name '{header}': {problem}")]
    HeaderName {
        /// The name, escaped and shortened.
        header: String,
        /// What is wrong with the name.
        problem: &'static str,
    },
    /// A header value holds a control character other than TAB.
    #[error("header '{header}' has a control character (\\x{byte:02x}) in its value")]
    HeaderValue {
        /// The header's name, escaped and shortened.
        header: String,
        /// The first control character in the value.
        byte: u8,
    },
    /// A 1.1/1.2 header holds an escape other than `\r`, `\n`, `\c` and `\\`.
    #[error("invalid escape sequence '\\{seq}' in header '{header}'")]
    InvalidEscape {
        /// The header's name, escaped and shortened.
        header: String,
        /// What follows the backslash (empty when the name or value ends there).
        seq: String,
    },
    /// A command or header line is longer than [`Limits::max_header_line`].
    #[error("header line longer than {limit} bytes")]
    HeaderLineTooLong {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A frame has more header lines than [`Limits::max_headers`].
    #[error("too many headers (limit {limit})")]
    TooManyHeaders {
        /// The limit, in header lines.
        limit: usize,
    },
    /// A frame, or the size its `content-length` announces, exceeds
    /// [`Limits::max_frame`].
    #[error("frame larger than {limit} bytes")]
    FrameTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// `content-length` is not a non-negative integer; holds the value, escaped and
    /// shortened.
    #[error("invalid content-length '{0}'")]
    InvalidContentLength(String),
    /// The `content-length` bytes of body are not followed by the NUL that ends the
    /// frame.
    #[error("frame body of content-length bytes is not followed by a NUL octet")]
    MissingNul,
    /// A body on a command that may not carry one (only SEND, MESSAGE and ERROR may).
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

/// Turns one connection's byte stream into frames. Between calls it keeps the
/// parsed headers of a frame whose body is still arriving.
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

    /// Decodes for the negotiated `version` from now on (whether header values are
    /// unescaped).
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// The version frames are decoded for.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Takes the next whole frame off the front of `buf`. Heart-beat EOLs between
    /// frames are consumed silently. `Ok(None)` means more bytes are needed.
    ///
    /// Fails when the bytes are not valid STOMP or break a [`Limits`] bound; the
    /// stream cannot be resumed after that (the session answers with an ERROR).
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
        let mut kept = body_len;
        if body_len > 0 && !p.command.allows_body() {
            // Clients that end CONNECT with an extra EOL before the NUL exist, and
            // RabbitMQ and ActiveMQ both take it: a body of EOLs alone is no body.
            let body = &buf[p.body_start..p.body_start + body_len];
            let only_eols = body.iter().all(|b| matches!(b, b'\n' | b'\r'));
            if !(only_eols && matches!(p.command, Command::Connect | Command::Stomp)) {
                return Err(DecodeError::BodyNotAllowed(p.command));
            }
            kept = 0;
        }
        // The body gets an allocation of its own. A slice of `buf` would keep the
        // whole read buffer alive (a WebSocket message of up to 1 MiB) for as long as
        // the message lives: queued, in history, unacknowledged. A `BytesMut` does not
        // tell how much of its allocation lies before the body (consumed frames,
        // heart-beats), so a slice is never provably small overhead; and the broker
        // copies the body into every MESSAGE it encodes anyway.
        let body = Bytes::copy_from_slice(&buf[p.body_start..p.body_start + kept]);
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
        let mut command = None;
        let head_end = loop {
            let Some(nl) = memchr(b'\n', &buf[pos..]) else {
                if command.is_none() && !Command::could_start(trim_cr(buf)) {
                    return Err(unknown_command(buf));
                }
                // The line's CR may be here already, its LF not yet.
                if trim_cr(&buf[pos..]).len() > limits.max_header_line {
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
            if command.is_none() {
                command = Some(Command::parse(line).ok_or_else(|| unknown_command(line))?);
            }
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
        next_line(&mut rest);
        let command = command.expect("the command line was parsed");
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
                .ok_or_else(|| DecodeError::MissingColon(printable(line.as_bytes())))?;
            if has_control(line.as_bytes()) {
                check_name(name)?;
                let byte = value.bytes().find(|&b| is_control(b)).unwrap_or_default();
                return Err(DecodeError::HeaderValue {
                    header: printable(name.as_bytes()),
                    byte,
                });
            }
            // A raw name has no ':' (the first one ends it) and, checked above, no
            // control character: only an escape can bring one in.
            if escaped {
                let unescaped = unescape(name, name)?;
                if unescaped.len() != name.len() {
                    check_name(&unescaped)?;
                }
                let value = unescape(value, &unescaped)?;
                headers.push(unescaped, value);
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
                    .map_err(|_| DecodeError::InvalidContentLength(printable(v.as_bytes())))?;
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
/// ERROR for a frame that failed to decode can still name the client's receipt (one
/// that is short and plain: it is echoed without the decoder's checks).
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
        .filter(|v| v.len() <= ECHO_MAX && !v.iter().any(|&b| is_control(b) || b == b'\\'))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

/// Drops heart-beat EOLs (`\n` or `\r\n`) and stray NULs (as RabbitMQ and ActiveMQ
/// do) at the front of the buffer. A lone trailing `\r` stays until its `\n` arrives.
fn skip_eols(buf: &mut BytesMut) {
    let mut n = 0;
    loop {
        match &buf[n..] {
            [b'\n' | 0, ..] => n += 1,
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

/// A control character a header may not hold (TAB is text: some clients put it in
/// free-text values, and it cannot break a frame).
fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Whether `bytes` hold a control character; written to run without a branch per byte
/// (every header line of every frame passes here).
fn has_control(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |bad, &b| {
        bad | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    })
}

/// A header name, after unescaping: no control character, no `:`.
fn check_name(name: &str) -> Result<(), DecodeError> {
    let problem = if name.bytes().any(|b| b < 0x20 || b == 0x7f) {
        "it contains a control character"
    } else if name.contains(':') {
        "it contains ':'"
    } else {
        return Ok(());
    };
    Err(DecodeError::HeaderName {
        header: printable(name.as_bytes()),
        problem,
    })
}

/// Checks a header that did not come through the decoder (one a server-side API was
/// given): its name as [`Decoder`] checks names, its value free of control
/// characters but TAB, CR and LF (which the encoder escapes, or turns into spaces
/// for 1.0).
pub fn check_header(name: &str, value: &str) -> Result<(), DecodeError> {
    check_name(name)?;
    match value
        .bytes()
        .find(|&b| is_control(b) && b != b'\r' && b != b'\n')
    {
        Some(byte) => Err(DecodeError::HeaderValue {
            header: printable(name.as_bytes()),
            byte,
        }),
        None => Ok(()),
    }
}

/// Client bytes fit to echo in an ERROR: printable text as is, anything else (control
/// characters, invalid UTF-8) as `\xNN`, at most [`ECHO_MAX`] bytes of input.
pub fn printable(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let cut = bytes.len() > ECHO_MAX;
    let mut rest = &bytes[..bytes.len().min(ECHO_MAX)];
    let mut out = String::with_capacity(rest.len() + 8);
    while !rest.is_empty() {
        let (good, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                (std::str::from_utf8(good).unwrap_or_default(), bad)
            }
        };
        for c in good.chars() {
            match c {
                c if c.is_control() => {
                    let mut b = [0; 4];
                    for byte in c.encode_utf8(&mut b).bytes() {
                        let _ = write!(out, "\\x{byte:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        if let Some((&byte, tail)) = bad.split_first() {
            let _ = write!(out, "\\x{byte:02x}");
            rest = tail;
        } else {
            rest = bad;
        }
    }
    if cut {
        out.push('…');
    }
    out
}

/// Most input bytes an error message echoes.
pub const ECHO_MAX: usize = 64;

fn unknown_command(line: &[u8]) -> DecodeError {
    DecodeError::UnknownCommand(printable(line))
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
                    header: printable(header.as_bytes()),
                    seq: other.map_or(String::new(), |c| printable(c.to_string().as_bytes())),
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
            decode_all(b"SEND\nk\\\\x:a\\nb\\\\c\\r\\c\n\n\0CONNECT\nlogin:a\\nb\n\n\0").unwrap();
        assert_eq!(frames[0].get("k\\x"), Some("a\nb\\c\r:"));
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
    fn a_connect_body_of_eols_is_no_body() {
        for input in [
            &b"CONNECT\naccept-version:1.2\n\n\n\0"[..],
            b"STOMP\r\naccept-version:1.2\r\n\r\n\r\n\0",
        ] {
            let frames = decode_all(input).unwrap();
            assert_eq!(frames.len(), 1, "{input:?}");
            assert!(frames[0].body.is_empty(), "{input:?}");
        }
        for input in [
            &b"CONNECT\n\nx\n\0"[..],
            b"SUBSCRIBE\nid:1\ndestination:/q\n\n\n\0",
        ] {
            let err = decode_all(input).unwrap_err().to_string();
            assert!(err.contains("must not have a body"), "{err:?}");
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
        assert_eq!(receipt_hint(b"SEND\nreceipt:a\0b\n\n\0"), None);
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

    #[test]
    fn garbage_is_refused_before_any_eol() {
        let mut d = Decoder::new(Limits::default());
        let mut buf = BytesMut::from(&b"\xff\xfe garbage \0\0"[..]);
        let e = d.decode(&mut buf).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown command '\\xff\\xfe garbage \\x00\\x00'"
        );
        for partial in [&b"SUBSCR"[..], b"SEND\r", b"\r", b"\n\0\r\n\0CONN"] {
            let mut buf = BytesMut::from(partial);
            assert_eq!(
                Decoder::new(Limits::default()).decode(&mut buf),
                Ok(None),
                "{partial:?}"
            );
        }
        for junk in [
            &b"SEND \r"[..],
            b"SE\0",
            b"UNSUBSCRIBEX",
            b"send",
            b"\rX",
            b"CONNECT\xc3",
        ] {
            let mut buf = BytesMut::from(junk);
            assert!(
                matches!(
                    Decoder::new(Limits::default()).decode(&mut buf),
                    Err(DecodeError::UnknownCommand(_))
                ),
                "{junk:?}"
            );
        }
        // A complete but unknown command line is refused before its headers arrive.
        let mut buf = BytesMut::from(&b"HELLO\nheader:"[..]);
        assert!(d.decode(&mut buf).is_err());
    }

    #[test]
    fn a_longest_line_split_between_its_cr_and_lf_still_decodes() {
        let limits = Limits {
            max_frame: 1024,
            max_headers: 4,
            max_header_line: 20,
        };
        let line = format!("k:{}", "v".repeat(18));
        let input = format!("SEND\r\n{line}\r\n\r\n\0");
        let cut = input.find(&line).unwrap() + line.len() + 1;
        let mut d = Decoder::new(limits);
        let mut buf = BytesMut::from(&input.as_bytes()[..cut]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&input.as_bytes()[cut..]);
        assert_eq!(
            d.decode(&mut buf).unwrap().unwrap().get("k").map(str::len),
            Some(18)
        );
    }

    #[test]
    fn stray_nuls_between_frames_are_skipped() {
        let frames = decode_all(b"\0SEND\n\nA\0\0\n\0\r\nSEND\n\nB\0\0").unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(&frames[1].body[..], b"B");
    }

    #[test]
    fn headers_with_control_characters_or_colons_in_names_are_refused() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"SEND\nx:a\0MESSAGE\n\n\0",
                "header 'x' has a control character (\\x00) in its value",
            ),
            (
                b"SEND\nx:a\x01\n\n\0",
                "header 'x' has a control character (\\x01) in its value",
            ),
            (b"SEND\nx:a\rb\n\n\0", "(\\x0d)"),
            (
                b"SEND\nx\x7f:a\n\n\0",
                "invalid header name 'x\\x7f': it contains a control character",
            ),
            (
                b"SEND\nn\\cx:a\n\n\0",
                "invalid header name 'n:x': it contains ':'",
            ),
            (
                b"SEND\nn\\nx:a\n\n\0",
                "invalid header name 'n\\x0ax': it contains a control character",
            ),
            (
                b"CONNECT\nlogin:a\0\n\n\0",
                "header 'login' has a control character",
            ),
        ];
        for (input, msg) in cases {
            let err = decode_all(input).unwrap_err().to_string();
            assert!(err.contains(msg), "{err:?} should contain {msg:?}");
            assert!(
                !err.bytes().any(|b| b < 0x20),
                "{err:?} echoes a control character"
            );
        }
        // TAB is text; escaped EOLs in values are what escaping is for.
        let f = &decode_all(b"SEND\nx:a\tb\ny:1\\n2\\c3\n\n\0").unwrap()[0];
        assert_eq!((f.get("x"), f.get("y")), (Some("a\tb"), Some("1\n2:3")));
        assert!(check_header("x-ok", "a\r\nb\t").is_ok());
        assert!(check_header("x:y", "a").is_err());
        assert!(check_header("x", "a\0").is_err());
    }

    #[test]
    fn echoed_input_is_escaped_and_short() {
        assert_eq!(
            printable(b"ok \xe2\x82\xac \x00\x1b\xff"),
            "ok \u{20ac} \\x00\\x1b\\xff"
        );
        let long = printable(&[b'a'; 500]);
        assert!(long.len() < 70 && long.ends_with('…'), "{long}");
        let e = decode_all(&[&b"SEND\nk:"[..], &[1u8; 300], b"\n\n\0"].concat()).unwrap_err();
        assert!(!e.to_string().bytes().any(|b| b < 0x20));
    }
}
