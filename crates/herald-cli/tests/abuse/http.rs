//! Plain HTTP/1.1 over a TCP stream: what the attacks send is not always valid HTTP,
//! and the bystander's keep-alive connection must be the one it opened before the
//! attack.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stomp::connect_from;

/// One keep-alive connection, reopened when the server closed it.
pub struct KeepAlive {
    to: SocketAddr,
    from: Option<IpAddr>,
    conn: Option<(TcpStream, Vec<u8>)>,
}

impl KeepAlive {
    pub fn new(to: SocketAddr, from: Option<IpAddr>) -> KeepAlive {
        KeepAlive {
            to,
            from,
            conn: None,
        }
    }

    /// Forgets the connection (after a timeout its state is unknown).
    pub fn reset(&mut self) {
        self.conn = None;
    }

    pub async fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>), String> {
        self.request("GET", path, None).await
    }

    /// Sends a request (with a JSON body when given) and reads its response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        json: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.to);
        if let Some(body) = json {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut req = head.into_bytes();
        req.extend_from_slice(json.unwrap_or_default());
        for attempt in 0..2 {
            if self.conn.is_none() {
                let s = connect_from(self.to, self.from)
                    .await
                    .map_err(|e| e.to_string())?;
                self.conn = Some((s, Vec::new()));
            }
            let (s, buf) = self.conn.as_mut().expect("connected");
            let result = match s.write_all(&req).await {
                Ok(()) => read_response(s, buf).await,
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok((status, body, keep)) => {
                    if !keep {
                        self.conn = None;
                    }
                    return Ok((status, body));
                }
                // A keep-alive connection the server closed meanwhile: once more, anew.
                Err(e) if attempt == 0 => {
                    self.conn = None;
                    let _ = e;
                }
                Err(e) => {
                    self.conn = None;
                    return Err(e);
                }
            }
        }
        unreachable!("the second attempt returns")
    }
}

/// Reads one response from `s` (bytes already read wait in `buf`): status, body, and
/// whether the connection stays open.
async fn read_response(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<(u16, Vec<u8>, bool), String> {
    let mut tmp = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut tmp).await {
            Ok(0) => return Err("closed before a response".into()),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) => return Err(e.to_string()),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let keep = !header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) else {
        // No length: the body runs to the close.
        let mut body = buf.split_off(head_end);
        buf.clear();
        s.read_to_end(&mut body).await.map_err(|e| e.to_string())?;
        return Ok((status, body, false));
    };
    while buf.len() < head_end + len {
        match s.read(&mut tmp).await {
            Ok(0) => return Err("closed inside a response body".into()),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Ok((status, body, keep))
}

/// One request on a fresh connection from the attacker's address; the raw bytes
/// of `request` are sent as they are. `Err` when no response came within `limit`
/// (or the connection closed first).
pub async fn raw(
    to: SocketAddr,
    request: &[u8],
    limit: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let exchange = async {
        let mut s = connect_from(to, None).await.map_err(|e| e.to_string())?;
        s.write_all(request).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        read_response(&mut s, &mut buf)
            .await
            .map(|(status, body, _)| (status, body))
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| format!("no response within {limit:?}"))?
}

/// A GET on a fresh connection from the attacker's address.
pub async fn get(to: SocketAddr, path: &str, limit: Duration) -> Result<(u16, Vec<u8>), String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n");
    raw(to, req.as_bytes(), limit).await
}
