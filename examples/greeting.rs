//! Spring's "getting started" greeting, as a Herald handler:
//!
//! ```java
//! @MessageMapping("/hello") @SendTo("/topic/greetings")
//! public Greeting greeting(HelloMessage message) { ... }
//! ```
//!
//! Run: `cargo run -p herald-examples --example greeting`, then with any STOMP client
//! subscribe to `/topic/greetings` and SEND `{"name":"Ada"}` to `/app/hello`
//! (ws://127.0.0.1:8080/ws or tcp 127.0.0.1:61613).

use herald::handler::{HandlerError, Handlers, Reply, Request};
use herald::{Config, Server};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct HelloMessage {
    name: String,
}

#[derive(Serialize)]
struct Greeting {
    content: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let handlers = Handlers::new().route("/hello", |req: Request<HelloMessage>| async move {
        if req.payload.name.trim().is_empty() {
            // The sender alone gets this, as an ERROR frame (or on /user/queue/errors).
            return Err(HandlerError::new("name must not be empty"));
        }
        let content = format!("Hello, {}!", req.payload.name);
        Ok(Reply::to("/topic/greetings", &Greeting { content }))
    });
    let mut config = Config::load(None)?; // defaults, overridable by HERALD_* variables
    config.apps.demo = false; // only this example's handler
    let server = Server::bind_with(config, handlers).await?;
    println!("greeting example on ws://{}/ws", server.http_addr());
    server.run().await
}
