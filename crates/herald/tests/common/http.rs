//! HTTP requests to the server under test. Requests a client library would send go
//! through reqwest; [`TestServer::raw_http`] writes bytes as they are, for upgrade
//! handshakes and requests no well-behaved client produces.

use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::server::TestServer;
use super::{HTTP_WAIT, WAIT};

impl TestServer {
    /// `method path` with `headers` and `body` (none when `body` is `None`); returns
    /// the status and the body's bytes.
    pub async fn http_send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, Vec<u8>) {
        let method = Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let url = format!("http://{}{path}", self.http);
        let mut request = self.http_client.request(method.clone(), &url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let exchange = async {
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            let status = response.status().as_u16();
            let body = response
                .bytes()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: body: {e}"));
            (status, body.to_vec())
        };
        tokio::time::timeout(HTTP_WAIT, exchange)
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within {HTTP_WAIT:?}"))
    }

    /// HTTP request with an optional content type; returns (status, body).
    pub async fn http_request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let headers: &[(&str, &str)] = match content_type {
            Some(ct) => &[("Content-Type", ct)],
            None => &[],
        };
        self.http_send(method, path, headers, Some(body.to_vec()))
            .await
    }

    /// POST a JSON text; returns (status, body parsed as JSON, or the text as a JSON
    /// string when it is not JSON).
    pub async fn http_post_json(&self, path: &str, json: &str) -> (u16, serde_json::Value) {
        self.http_call("POST", path, &[], Some(json)).await
    }

    /// Plain HTTP GET; returns (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, Vec<u8>) {
        self.http_send("GET", path, &[], None).await
    }

    /// HTTP request with extra `headers` and a JSON body; returns (status, body as text).
    pub async fn http_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        let (status, body) = self
            .http_send(method, path, &all, Some(body.as_bytes().to_vec()))
            .await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// An HTTP request with extra `headers` and an optional JSON body; returns (status,
    /// body parsed as JSON, or the text as a JSON string when it is not JSON).
    pub async fn http_call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        json: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut all = Vec::with_capacity(headers.len() + 1);
        if json.is_some() {
            all.push(("Content-Type", "application/json"));
        }
        all.extend_from_slice(headers);
        let body = json.unwrap_or("").as_bytes().to_vec();
        let (status, body) = self.http_send(method, path, &all, Some(body)).await;
        let v = serde_json::from_slice(&body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
        });
        (status, v)
    }

    /// A GET written on a raw socket, for a connection the server refuses at accept:
    /// its answer comes before the request is read, and an HTTP library may see the
    /// reset of the unread request instead of the answer.
    pub async fn http_get_raw(&self, path: &str) -> (u16, String) {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        self.raw_http(request.as_bytes()).await
    }

    /// A raw WebSocket upgrade request on `path_and_query` with `headers`; returns the
    /// status and body of the answer (the body is empty for a 101).
    pub async fn ws_handshake_raw(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let mut req = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            self.http
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.raw_http(req.as_bytes()).await
    }

    /// Writes `request` and reads one response: the status line, the headers and a
    /// `Content-Length` (or chunked, or close-delimited) body.
    pub async fn raw_http(&self, request: &[u8]) -> (u16, String) {
        let fut = async {
            let mut s = TcpStream::connect(self.http).await.unwrap();
            s.write_all(request).await.unwrap();
            let mut resp = Vec::new();
            let mut tmp = [0u8; 4096];
            loop {
                if let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&resp[..end]).to_ascii_lowercase();
                    let status: u16 = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("not an HTTP response: {head:?}"));
                    if status == 101 {
                        return (status, String::new());
                    }
                    let length = head.lines().find_map(|l| {
                        l.strip_prefix("content-length:")
                            .and_then(|v| v.trim().parse::<usize>().ok())
                    });
                    let chunked = head.contains("transfer-encoding: chunked");
                    let body = &resp[end + 4..];
                    match length {
                        Some(n) if body.len() >= n => {
                            return (status, String::from_utf8_lossy(&body[..n]).into_owned());
                        }
                        None if chunked && body.ends_with(b"0\r\n\r\n") => {
                            return (status, dechunk(body));
                        }
                        _ => {}
                    }
                }
                match s.read(&mut tmp).await {
                    Ok(0) | Err(_) => {
                        let text = String::from_utf8_lossy(&resp).into_owned();
                        let status: u16 = text
                            .split_whitespace()
                            .nth(1)
                            .and_then(|s| s.parse().ok())
                            .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
                        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                        return (status, body.to_owned());
                    }
                    Ok(n) => resp.extend_from_slice(&tmp[..n]),
                }
            }
        };
        tokio::time::timeout(HTTP_WAIT, fut)
            .await
            .expect("HTTP response in time")
    }
}

fn dechunk(mut body: &[u8]) -> String {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&body[..eol]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 2 + size + 2..];
    }
    String::from_utf8_lossy(&out).into_owned()
}
