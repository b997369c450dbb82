//! A client of plain JSON WebSocket endpoints (no STOMP): the rooms' `/ws/chat`, the
//! notifications socket, the endpoints a test defines through `herald::plain`.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, CloseCode, MaybeTlsStream, Message, WebSocketStream};

use super::WAIT;

pub struct PlainWs(pub WebSocketStream<MaybeTlsStream<TcpStream>>);

impl PlainWs {
    /// Opens `ws://{http}{path}` (`path` with its query, if any).
    pub async fn open(http: SocketAddr, path: &str) -> PlainWs {
        let url = format!("ws://{http}{path}");
        let (ws, _) = tokio::time::timeout(WAIT, ClientBuilder::new().uri(&url).unwrap().connect())
            .await
            .unwrap_or_else(|_| panic!("{path}: handshake in time"))
            .unwrap_or_else(|e| panic!("{path}: handshake: {e}"));
        PlainWs(ws)
    }

    pub async fn send_text(&mut self, text: &str) {
        tokio::time::timeout(WAIT, self.0.send(Message::text(text.to_owned())))
            .await
            .expect("send in time")
            .expect("send");
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// The next text message (pings are answered on the way); a close fails the test.
    pub async fn recv_text(&mut self) -> String {
        loop {
            let m = tokio::time::timeout(WAIT, self.0.next())
                .await
                .expect("a message in time")
                .expect("still open")
                .expect("a message");
            if let Some(t) = m.as_text() {
                return t.to_owned();
            }
            assert!(!m.is_close(), "closed: {:?}", m.as_close());
        }
    }

    /// The next text message, as JSON.
    pub async fn recv(&mut self) -> Value {
        let t = self.recv_text().await;
        serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
    }

    /// Text messages until the close frame: (texts, close code and reason).
    pub async fn until_close(&mut self) -> (Vec<String>, Option<(CloseCode, String)>) {
        let mut texts = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.0.next())
                .await
                .expect("closed in time")
            {
                Some(Ok(m)) => {
                    if let Some(t) = m.as_text() {
                        texts.push(t.to_owned());
                    } else if let Some((code, reason)) = m.as_close() {
                        return (texts, Some((code, reason.to_owned())));
                    }
                }
                _ => return (texts, None),
            }
        }
    }
}
