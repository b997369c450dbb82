//! The rooms' REST API: `GET /api/rooms` (every room with its members), `POST
//! /api/rooms` {name} (201 with the room; 400, 429 `max_rooms`, 503), `GET
//! /api/rooms/{id}` (404 for an unknown room).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;

use super::{CreateError, Rooms};
use crate::error::ApiError;
use crate::handler::HandlerError;
use crate::transport::Context;

#[derive(Deserialize)]
struct CreateRoom {
    name: String,
}

pub(super) fn routes(rooms: &Rooms) -> axum::Router<Context> {
    let (list, create, one) = (rooms.clone(), rooms.clone(), rooms.clone());
    axum::Router::new()
        .route(
            "/api/rooms",
            get(move |State(state): State<Context>| {
                let rooms = list.clone();
                async move {
                    rooms
                        .list(state.node.messaging.cluster())
                        .await
                        .map(Json)
                        .map_err(|e| unavailable(&e))
                }
            })
            .post(
                move |State(state): State<Context>,
                      body: Result<Json<CreateRoom>, JsonRejection>| {
                    let rooms = create.clone();
                    async move {
                        let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
                        rooms
                            .create(state.node.messaging.cluster(), &body.name)
                            .await
                            .map(|r| (StatusCode::CREATED, Json(r)))
                            .map_err(|e| refused(&e))
                    }
                },
            ),
        )
        .route(
            "/api/rooms/{id}",
            get(
                move |State(state): State<Context>, Path(id): Path<String>| {
                    let rooms = one.clone();
                    async move {
                        match rooms.get(state.node.messaging.cluster(), &id).await {
                            Ok(Some(room)) => Ok(Json(room)),
                            Ok(None) => Err(ApiError::not_found(format!("unknown room '{id}'"))),
                            Err(e) => Err(unavailable(&e)),
                        }
                    }
                },
            ),
        )
}

fn refused(e: &CreateError) -> ApiError {
    let (status, code, msg) = match e {
        CreateError::Invalid(m) => (StatusCode::BAD_REQUEST, "invalid", m),
        CreateError::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, "max_rooms", m),
        CreateError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
    };
    ApiError::new(status, code, msg.clone())
}

fn unavailable(e: &HandlerError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        e.message.clone(),
    )
}
