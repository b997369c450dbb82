//! A plain JSON WebSocket endpoint (no STOMP), like a Spring `TextWebSocketHandler`:
//! browsers open `new WebSocket("ws://127.0.0.1:8080/ws/prices")`, send
//! `{"type":"WATCH","symbol":"ACME"}` (or `UNWATCH`), and receive each price published
//! to `/topic/prices.ACME` as a JSON text message. A background task publishes the
//! prices through `Messaging`, so STOMP clients subscribed to the same topic on `/ws`
//! see them too. Each connection is admitted, limited, pinged and shut down like a
//! STOMP session, and the admin API lists it with the `watching` it notes.
//!
//! Run: `cargo run -p herald-examples --example plain_socket`, then e.g.
//! `websocat ws://127.0.0.1:8080/ws/prices` and type `{"type":"WATCH","symbol":"ACME"}`.

use std::time::Duration;

use herald::plain::{self, Endpoint, MessageError, Socket};
use herald::{Config, Server};
use serde::Deserialize;
use serde_json::json;

const SYMBOLS: [&str; 3] = ["ACME", "GLOBEX", "INITECH"];

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "UPPERCASE")]
enum Request {
    Watch { symbol: String },
    Unwatch { symbol: String },
}

/// The topic of a symbol the server knows; a client never names a topic itself.
fn topic(symbol: &str) -> Result<String, MessageError> {
    SYMBOLS
        .contains(&symbol)
        .then(|| format!("/topic/prices.{symbol}"))
        .ok_or_else(|| MessageError::new(format!("unknown symbol '{symbol}': try {SYMBOLS:?}")))
}

async fn on_message(socket: Socket, text: String) -> Result<(), MessageError> {
    // Invalid JSON or an unknown type is answered with {"type":"ERROR","message":...}.
    match plain::parse::<Request>(&text, "request")? {
        Request::Watch { symbol } => {
            socket.subscribe(&topic(&symbol)?)?;
            socket.set_meta("watching", &symbol);
            socket.send(&json!({ "type": "WATCHING", "symbol": symbol }));
        }
        Request::Unwatch { symbol } => {
            socket.unsubscribe(&topic(&symbol)?);
            socket.send(&json!({ "type": "UNWATCHED", "symbol": symbol }));
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let prices = Endpoint::new("/ws/prices")
        .on_open(|socket: Socket| async move {
            let hello =
                json!({ "type": "HELLO", "user": socket.principal().name, "symbols": SYMBOLS });
            socket.send(&hello);
            Ok(())
        })
        .on_message(on_message);
    let mut config = Config::load(None)?; // defaults, overridable by HERALD_* variables
    config.apps.demo = false;
    let server = Server::bind(config).await?.endpoint(&prices);
    let messaging = server.node().messaging.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for n in 0u64.. {
            tick.tick().await;
            for (i, symbol) in SYMBOLS.iter().enumerate() {
                let price = 100.0 + ((n + i as u64 * 7) % 20) as f64 / 4.0;
                let _ = messaging.convert_and_send(
                    &format!("/topic/prices.{symbol}"),
                    &json!({ "type": "PRICE", "symbol": symbol, "price": price }),
                );
            }
        }
    });
    println!(
        "plain_socket example on ws://{}/ws/prices",
        server.http_addr()
    );
    server.run().await
}
