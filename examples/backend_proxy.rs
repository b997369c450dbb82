//! A team's existing HTTP backend owns application destinations. This example starts
//! a tiny backend (any language would do) and points Herald's `apps.backend.url` at it:
//! SEND `/app/orders.create` {"item": "tea"} → Herald POSTs it to the backend → the
//! backend answers messages to publish: one to `/topic/orders`, one to the sender's
//! `/user/queue/orders`.
//!
//! Run: `cargo run -p herald-examples --example backend_proxy`.

use axum::Json;
use axum::routing::post;
use herald::handler::Handlers;
use herald::{Config, Server};
use serde_json::{Value, json};

/// The backend: it receives {destination, path, headers, body, user, roles, session}.
async fn backend(Json(req): Json<Value>) -> Json<Value> {
    let user = req["user"].as_str().unwrap_or_default().to_owned();
    let order: Value =
        serde_json::from_str(req["body"].as_str().unwrap_or("{}")).unwrap_or(json!({}));
    Json(json!({ "messages": [
        { "destination": "/topic/orders", "body": { "item": order["item"], "by": user } },
        { "destination": "/queue/orders", "user": user, "body": "your order is in" },
    ]}))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let backend_url = format!("http://{}/stomp", listener.local_addr()?);
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().route("/stomp", post(backend))).await
    });

    let mut config = Config::load(None)?; // defaults, overridable by HERALD_* variables
    config.apps.demo = false;
    config.apps.backend.url = backend_url;
    config.apps.backend.destinations = vec!["/orders.create".into()];
    let server = Server::bind_with(config, Handlers::new()).await?;
    println!("backend_proxy example on ws://{}/ws", server.http_addr());
    server.run().await
}
