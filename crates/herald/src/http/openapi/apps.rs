//! The contract of routes whose handlers cannot carry the annotation themselves: the
//! demo rooms' REST API (closures over the registry, `apps/rooms/rest.rs`) and the web
//! UI's sign-in (`web/mod.rs`). Each function here only documents its route; the
//! schemas mirror the JSON those handlers write, which the schemathesis run in
//! `scripts/test.sh` checks against them.

#![allow(dead_code, reason = "schemas and documentation only")]

use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::ErrorBody;

/// A chat room (`apps/rooms`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Room {
    id: String,
    name: String,
    /// RFC 3339.
    created_at: String,
    /// Who is in it, by name.
    members: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "general"}))]
pub(super) struct NewRoom {
    /// 1 to 100 characters, not blank.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    name: String,
}

/// Every room with its members.
#[utoipa::path(
    get, path = "/api/rooms", tag = "rooms",
    responses(
        (status = 200, description = "The rooms", body = Vec<Room>),
        (status = 503, description = "`unavailable`: the cluster's room map does not answer", body = ErrorBody),
    ),
)]
pub(super) fn rooms() {}

/// Creates a room.
#[utoipa::path(
    post, path = "/api/rooms", tag = "rooms",
    request_body = NewRoom,
    responses(
        (status = 201, description = "Created", body = Room),
        (status = 400, description = "`bad_request` (JSON), `invalid` (the name)", body = ErrorBody),
        (status = 429, description = "`max_rooms`: `apps.max_rooms` rooms exist", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    ),
)]
pub(super) fn create_room() {}

/// One room.
#[utoipa::path(
    get, path = "/api/rooms/{id}", tag = "rooms",
    params(("id" = String, Path, description = "The room's id")),
    responses(
        (status = 200, description = "The room", body = Room),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    ),
)]
pub(super) fn room() {}

/// Who the request's cookie or bearer token names, and how signing in works here.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct WebSession {
    /// `anonymous` (no issuer configured) or `jwt`.
    mode: String,
    /// `auth.required`.
    required: bool,
    /// Whether the development login answers (`web.dev_login`).
    dev_login: bool,
    admin_role: String,
    node: String,
    version: String,
    user: Option<WebUser>,
    /// Why the request's token was refused.
    error: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct WebUser {
    name: String,
    display_name: String,
    roles: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
pub(super) struct SignIn {
    /// A token of a configured issuer.
    token: String,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SignedIn {
    name: String,
    display_name: String,
    roles: Vec<String>,
    /// Seconds until the token (and the cookie) expire.
    expires_in: u64,
}

#[derive(Deserialize, ToSchema)]
pub(super) struct DevLogin {
    /// The principal, 1 to 255 bytes.
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DevLoggedIn {
    sub: String,
    roles: Vec<String>,
    /// The minted token, also set as the cookie.
    token: String,
    expires_in: u64,
}

/// The auth mode and who the request is.
#[utoipa::path(
    get, path = "/api/web/session", tag = "web",
    responses((status = 200, description = "The session", body = WebSession)),
    security((), ("cookie" = []), ("bearer" = [])),
)]
pub(super) fn web_session() {}

/// Verifies a pasted token and sets it as the HttpOnly auth cookie.
#[utoipa::path(
    post, path = "/api/web/signin", tag = "web",
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in; `Set-Cookie` carries the token", body = SignedIn),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the token was refused", body = ErrorBody),
        (status = 403, description = "`origin_not_allowed`, `cross_site`: from another site", body = ErrorBody),
        (status = 404, description = "`not_found`: anonymous mode has no sign-in", body = ErrorBody),
        (status = 409, description = "`conflict`: `cookie` is not one of `auth.token_sources`", body = ErrorBody),
    ),
)]
pub(super) fn signin() {}

/// Clears the auth cookie.
#[utoipa::path(
    post, path = "/api/web/signout", tag = "web",
    responses(
        (status = 204, description = "Signed out"),
        (status = 403, description = "`origin_not_allowed`, `cross_site`", body = ErrorBody),
    ),
)]
pub(super) fn signout() {}

/// Development only (`web.dev_login`, loopback clients): mints a token for anyone.
#[utoipa::path(
    post, path = "/api/dev/login", tag = "web",
    request_body = DevLogin,
    responses(
        (status = 200, description = "Signed in as `sub`", body = DevLoggedIn),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not loopback, or through a proxy; `origin_not_allowed`, `cross_site`", body = ErrorBody),
        (status = 404, description = "`not_found`: the development login is off", body = ErrorBody),
        (status = 500, description = "`internal`: no key to sign with", body = ErrorBody),
    ),
)]
pub(super) fn dev_login() {}

/// Clears the auth cookie (as `/api/web/signout`).
#[utoipa::path(
    post, path = "/api/dev/logout", tag = "web",
    responses(
        (status = 204, description = "Signed out"),
        (status = 403, description = "`origin_not_allowed`, `cross_site`", body = ErrorBody),
    ),
)]
pub(super) fn dev_logout() {}
