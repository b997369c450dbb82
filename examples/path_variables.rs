//! Path variables, the principal, and replies to users and to the sender:
//!
//! - SEND `/app/rooms/{room}/send` {"text": "..."} → `/topic/rooms/{room}`, stamped
//!   with the sender's name (the STOMP `login` header in anonymous mode);
//! - SEND `/app/whisper/{user}` {"text": "..."} → that user's `/user/queue/whispers`
//!   on every session, plus a confirmation on the sender's own session only.
//!
//! Run: `cargo run -p herald-examples --example path_variables`.

use herald::handler::{HandlerError, Handlers, Reply, Request};
use herald::{Config, Server};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Text {
    text: String,
}

fn handlers() -> Handlers {
    Handlers::new()
        .route("/rooms/{room}/send", |req: Request<Text>| async move {
            let room = req.param("room")?;
            Ok::<_, HandlerError>(Reply::to(
                format!("/topic/rooms/{room}"),
                &json!({ "from": req.principal().name, "text": req.payload.text }),
            ))
        })
        .route("/whisper/{user}", |req: Request<Text>| async move {
            let to = req.param("user")?.to_owned();
            let from = req.principal().name.clone();
            Ok::<_, HandlerError>(vec![
                Reply::to_user(
                    to.clone(),
                    "/queue/whispers",
                    &json!({ "from": from, "text": req.payload.text }),
                ),
                Reply::to_sender_session("/queue/receipts", &json!({ "delivered_to": to })),
            ])
        })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = Config::load(None)?; // defaults, overridable by HERALD_* variables
    config.apps.demo = false;
    let server = Server::bind_with(config, handlers()).await?;
    println!("path_variables example on ws://{}/ws", server.http_addr());
    server.run().await
}
