//! The STOMP frame as a value: a command, an ordered header list and a body.
//!
//! Headers keep their order and any repeats, because the specification says the
//! first occurrence of a repeated header wins and a relay must not reorder them.

use std::fmt;

use bytes::Bytes;

/// Protocol version negotiated at CONNECT time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// STOMP 1.0: header values are not escaped.
    V1_0,
    /// STOMP 1.1: adds header escaping, heart-beats and NACK.
    V1_1,
    /// STOMP 1.2: as 1.1, plus CRLF line ends; ACK and NACK name the MESSAGE's `ack`.
    V1_2,
}

impl Version {
    /// The version string used in `accept-version` and `version` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// The version a `version` or `accept-version` entry names (`1.2`, whitespace
    /// around it ignored); `None` for any other text.
    pub fn parse(s: &str) -> Option<Version> {
        match s.trim() {
            "1.0" => Some(Version::V1_0),
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }

    /// The WebSocket subprotocol name for this version (`v12.stomp`).
    pub fn subprotocol(self) -> &'static str {
        match self {
            Version::V1_0 => "v10.stomp",
            Version::V1_1 => "v11.stomp",
            Version::V1_2 => "v12.stomp",
        }
    }

    /// The version a WebSocket subprotocol name (`v12.stomp`) stands for; `None` for
    /// any other name.
    pub fn from_subprotocol(s: &str) -> Option<Version> {
        match s.trim() {
            "v10.stomp" => Some(Version::V1_0),
            "v11.stomp" => Some(Version::V1_1),
            "v12.stomp" => Some(Version::V1_2),
            _ => None,
        }
    }

    /// Header values are escaped in 1.1 and 1.2 (but never on CONNECT/CONNECTED).
    pub fn escapes_headers(self) -> bool {
        self >= Version::V1_1
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every command of STOMP 1.0–1.2, client and server side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    // client frames
    /// Opens a session; `accept-version` lists the versions the client speaks.
    Connect,
    /// CONNECT under its 1.1 name, which cannot be mistaken for HTTP's CONNECT.
    Stomp,
    /// Publishes the body to the `destination` header's destination.
    Send,
    /// Subscribes to a `destination`, under the client's subscription `id`.
    Subscribe,
    /// Ends the subscription the `id` header names.
    Unsubscribe,
    /// Acknowledges a MESSAGE received with ack mode `client` or `client-individual`.
    Ack,
    /// Rejects a MESSAGE (1.1 and later).
    Nack,
    /// Starts the transaction the `transaction` header names.
    Begin,
    /// Commits a transaction: its SEND and ACK frames take effect.
    Commit,
    /// Rolls back a transaction: its SEND and ACK frames are dropped.
    Abort,
    /// Ends the session; with a `receipt` header, after the server confirms it.
    Disconnect,
    // server frames
    /// Accepts a CONNECT, naming the negotiated `version` and `heart-beat`.
    Connected,
    /// Delivers a message to a subscription (`subscription`, `message-id`).
    Message,
    /// Confirms the client frame whose `receipt` header its `receipt-id` echoes.
    Receipt,
    /// Reports a failure; the server closes the connection after sending it.
    Error,
}

impl Command {
    /// The command line as written on the wire (`SEND`).
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Every command name, client and server side.
    pub const NAMES: [&'static str; 15] = [
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
        "CONNECTED",
        "MESSAGE",
        "RECEIPT",
        "ERROR",
    ];

    /// Whether `s` can still become a command name once more bytes arrive.
    pub fn could_start(s: &[u8]) -> bool {
        Command::NAMES.iter().any(|n| n.as_bytes().starts_with(s))
    }

    /// The command a command line names (exact, upper case, no EOL); `None` for
    /// any other bytes.
    pub fn parse(s: &[u8]) -> Option<Command> {
        Some(match s {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" => Command::Subscribe,
            b"UNSUBSCRIBE" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            b"CONNECTED" => Command::Connected,
            b"MESSAGE" => Command::Message,
            b"RECEIPT" => Command::Receipt,
            b"ERROR" => Command::Error,
            _ => return None,
        })
    }

    /// CONNECT, STOMP and CONNECTED never escape header values (the version is not
    /// known yet when they are written).
    pub fn escapes_headers(self, version: Version) -> bool {
        version.escapes_headers()
            && !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }

    /// Only SEND, MESSAGE and ERROR may carry a body.
    pub fn allows_body(self) -> bool {
        matches!(self, Command::Send | Command::Message | Command::Error)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ordered header list. Lookups return the first occurrence, as the spec requires.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// No headers, with room for `n` before it reallocates.
    pub fn with_capacity(n: usize) -> Self {
        Headers(Vec::with_capacity(n))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` occurs at least once.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Appends a header (a repeat of an existing name is kept, and loses to the first).
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Replaces every occurrence of `name` by one value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.0.push((name.to_owned(), value.into()));
    }

    /// Removes every occurrence of `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| k != name);
    }

    /// Every header in wire order, repeats included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Each name once, with its first value.
    pub fn iter_first(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .enumerate()
            .filter(|(i, (k, _))| !self.0[..*i].iter().any(|(k2, _)| k2 == k))
            .map(|(_, (k, v))| (k.as_str(), v.as_str()))
    }

    /// Number of header lines, repeats included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no header lines.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Headers(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// One STOMP frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the frame does (its first line).
    pub command: Command,
    /// The header lines in wire order, unescaped.
    pub headers: Headers,
    /// What follows the blank line, up to the NUL that ends the frame (or exactly
    /// `content-length` bytes, which may include NULs).
    pub body: Bytes,
}

impl Frame {
    /// A `command` frame with no headers and an empty body.
    pub fn new(command: Command) -> Self {
        Frame {
            command,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Builder-style header append.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// Builder-style body. Only SEND, MESSAGE and ERROR may carry one.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of header `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}
