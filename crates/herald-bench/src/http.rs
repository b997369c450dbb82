//! A minimal HTTP/1.1 client for the REST scenarios and for scraping /metrics: one
//! keep-alive connection, one request at a time, `Content-Length` bodies (and chunked
//! responses). No dependency beyond tokio, and nothing the bench does not need.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one request (connect, write, whole response) may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct HttpConn {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    buf: BytesMut,
}

pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpConn {
    pub(crate) fn new(addr: SocketAddr, host: String) -> HttpConn {
        HttpConn {
            addr,
            host,
            stream: None,
            buf: BytesMut::with_capacity(8192),
        }
    }

    /// POSTs a JSON body; reconnects when the previous connection was closed.
    pub(crate) async fn post_json(
        &mut self,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Response> {
        self.request("POST", path, Some("application/json"), headers, body)
            .await
    }

    /// GETs a path; reconnects when the previous connection was closed.
    pub(crate) async fn get(&mut self, path: &str) -> Result<Response> {
        self.request("GET", path, None, &[], b"").await
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Response> {
        let exchange = async {
            let mut req = format!(
                "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
                self.host,
                body.len()
            );
            if let Some(t) = content_type {
                req.push_str("content-type: ");
                req.push_str(t);
                req.push_str("\r\n");
            }
            for (k, v) in headers {
                req.push_str(k);
                req.push_str(": ");
                req.push_str(v);
                req.push_str("\r\n");
            }
            req.push_str("\r\n");
            let mut out = Vec::with_capacity(req.len() + body.len());
            out.extend_from_slice(req.as_bytes());
            out.extend_from_slice(body);
            if self.stream.is_none() {
                let s = TcpStream::connect(self.addr)
                    .await
                    .with_context(|| format!("HTTP connect to {}", self.addr))?;
                s.set_nodelay(true)?;
                self.stream = Some(s);
                self.buf.clear();
            }
            let r = self.exchange(&out).await;
            if r.is_err() {
                self.stream = None;
            }
            r
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow!("HTTP request timed out after {REQUEST_TIMEOUT:?}"))?
    }

    async fn exchange(&mut self, out: &[u8]) -> Result<Response> {
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(out).await.context("HTTP write")?;
        // Head.
        let head_end = loop {
            if let Some(i) = memchr::memmem::find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > 64 * 1024 {
                bail!("HTTP response head too large");
            }
            if stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed before the HTTP response");
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("HTTP head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad HTTP status line {status_line:?}"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close");
            }
        }
        self.buf.advance(head_end);
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = memchr::memmem::find(&self.buf, b"\r\n") {
                        break i;
                    }
                    if stream.read_buf(&mut self.buf).await? == 0 {
                        bail!("connection closed inside a chunked body");
                    }
                };
                let size_str = std::str::from_utf8(&self.buf[..line_end])?;
                let size =
                    usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                        .context("bad chunk size")?;
                // chunk + CRLF (the last chunk is followed by an empty trailer line)
                let need = line_end + 2 + size + 2;
                while self.buf.len() < need {
                    if stream.read_buf(&mut self.buf).await? == 0 {
                        bail!("connection closed inside a chunk");
                    }
                }
                body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.advance(need);
                if size == 0 {
                    break body;
                }
            }
        } else {
            let n = length.unwrap_or(0);
            while self.buf.len() < n {
                if stream.read_buf(&mut self.buf).await? == 0 {
                    bail!("connection closed inside the HTTP body");
                }
            }
            self.buf.split_to(n).to_vec()
        };
        if close {
            self.stream = None;
        }
        Ok(Response { status, body })
    }
}
