//! The HTTP API as a contract: the OpenAPI 3.1 document, generated from the
//! handlers' `#[utoipa::path]` annotations and their request and response types (so
//! it changes with the code), served at `GET /api/openapi.json`.
//!
//! It lists every REST route, its schemas, every error it answers (the shape
//! `{"error", "code", ...}` with the stable codes of `ErrorCode`), and the ways to
//! authenticate. The routes whose handlers are closures or live in the web UI are
//! described in [`apps`]. The sessions' own endpoints (WebSocket, SockJS, the web
//! UI's pages) are not REST and are left out; a test holds the router and the
//! document to the same routes.

mod apps;

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{self, HttpMethod, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorCode};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald HTTP API",
        description = "Herald's REST API: publish to destinations and users, presence, notifications and jobs, the demo chat rooms, the web UI's sign-in, the admin API and the operators' endpoints. Every error is `{\"error\": <for a person>, \"code\": <stable, for a program>, ...details}` with one of the codes of the `ErrorCode` schema. With no credentials configured (anonymous mode) the service APIs are open and a user is named by `X-User` or `?user=`; otherwise services send an API key (`X-API-Key`) or a token with `auth.service_role`, users a token (bearer header, the `access_token` cookie or query parameter).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::health,
        spec,
        super::asyncapi::spec,
        super::publish::publish,
        super::publish::to_user,
        super::presence::users,
        super::presence::user,
        super::notifications::create,
        super::notifications::list,
        super::notifications::unread_count,
        super::notifications::read_one,
        super::notifications::read_all,
        super::notifications::job_progress,
        apps::rooms,
        apps::create_room,
        apps::room,
        apps::web_session,
        apps::signin,
        apps::signout,
        apps::dev_login,
        apps::dev_logout,
        super::admin::sessions,
        super::admin::disconnect_session,
        super::admin::disconnect_user,
        super::admin::destinations,
        super::admin::info,
        super::admin::metrics,
        super::admin::live,
        super::admin::ready,
    ),
    components(schemas(ErrorCode, ErrorBody)),
    modifiers(&Security, &EveryRequest),
    tags(
        (name = "publish", description = "Messages to destinations and users, from services"),
        (name = "presence", description = "Who is online, on any node"),
        (name = "notifications", description = "Stored notifications and their read state"),
        (name = "jobs", description = "Progress of long-running jobs"),
        (name = "rooms", description = "The demo chat rooms (`apps.demo`)"),
        (name = "web", description = "The web UI's sign-in"),
        (name = "admin", description = "Sessions and settings; needs `auth.admin_role`"),
        (name = "operations", description = "Health, metrics and this document"),
    ),
)]
struct ApiDoc;

/// The document, as JSON text.
pub(crate) fn document() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    })
}

/// This document.
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)),
)]
pub(crate) async fn spec() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}

/// What `/health` says about the cluster bus (`cluster::BusStatus`, which the cluster
/// module writes).
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code, reason = "a schema only")]
pub(super) struct ClusterStatus {
    /// `local` or `redis`.
    kind: String,
    /// False while Redis cannot be reached (local delivery goes on).
    connected: bool,
    /// Publishes that could not reach Redis when sent, since the start.
    failed_publishes: u64,
    /// Publishes waiting in the outage spool.
    spooled: u64,
    /// Channels and patterns this node listens to.
    channels: u64,
    /// Redis Cluster shards that do not answer (address, slots, why); absent while
    /// every shard answers. Any of them makes `status` `degraded`.
    shards_down: Option<Vec<String>>,
}

/// The ways to authenticate. Which one a route takes is in its `security`; `{}`
/// there means the route is open in anonymous mode.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let key = |name: &str, description: &str, at: fn(ApiKeyValue) -> ApiKey| {
            SecurityScheme::ApiKey(at(ApiKeyValue::with_description(name, description)))
        };
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A token of a configured issuer (`auth.issuers`); for the service and admin APIs, with `auth.service_role` or `auth.admin_role`. An API key is taken here too.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKey",
            key(
                "X-API-Key",
                "A key of `auth.api_keys`: a service, or an administrator when its principal has `auth.admin_role`",
                ApiKey::Header,
            ),
        );
        components.add_security_scheme(
            "cookie",
            key(
                "access_token",
                "The web UI's HttpOnly token cookie (`auth.cookie_name`); a state-changing request carrying it must come from an allowed origin",
                ApiKey::Cookie,
            ),
        );
        components.add_security_scheme(
            "queryToken",
            key(
                "access_token",
                "A token in the query (`auth.query_param`)",
                ApiKey::Query,
            ),
        );
        components.add_security_scheme(
            "userHeader",
            key(
                "X-User",
                "Anonymous mode only: the user a notification call is about",
                ApiKey::Header,
            ),
        );
    }
}

/// What the layers in front of every route may answer (`http::router`): a `Host`
/// outside `server.allowed_hosts` (421), a cookie-carrying state change from another
/// origin (403), and under `/api/` a body over `server.max_body` (413) or one that
/// could not be read (400).
struct EveryRequest;

impl Modify for EveryRequest {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let error = |description: &str| -> RefOr<Response> {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        openapi::ContentBuilder::new()
                            .schema(Some(openapi::Ref::from_schema_name("Error")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let api = path.starts_with("/api/");
            let operations = [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ];
            for (method, op) in operations {
                let Some(op) = op else { continue };
                let responses = &mut op.responses.responses;
                responses.entry("421".into()).or_insert_with(|| {
                    error("`host_not_allowed`: the `Host` is not in `server.allowed_hosts`")
                });
                if method != HttpMethod::Get {
                    responses.entry("403".into()).or_insert_with(|| {
                        error("`origin_not_allowed`, `cross_site`: a request carrying the auth cookie from another origin")
                    });
                }
                if api {
                    responses.entry("413".into()).or_insert_with(|| {
                        error("`too_large`: the body exceeds `server.max_body`")
                    });
                    responses
                        .entry("400".into())
                        .or_insert_with(|| error("`bad_body`: the body could not be read"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_error_code() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
        let codes: Vec<&str> = codes
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes, all);
        for scheme in ["bearer", "apiKey", "cookie"] {
            assert!(
                doc["components"]["securitySchemes"][scheme].is_object(),
                "{scheme}"
            );
        }
    }

    #[test]
    fn every_error_response_is_the_error_shape() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let mut errors = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    if !status.starts_with('4') && !status.starts_with('5')
                        || path == "/health/ready"
                    {
                        continue;
                    }
                    errors += 1;
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
        assert!(errors > 50, "{errors}");
    }
}

/// The router and the document describe the same REST routes.
#[cfg(test)]
mod routes {
    use std::collections::{BTreeMap, BTreeSet};

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use tower::ServiceExt;

    use super::document;
    use crate::config::Config;
    use crate::server::Server;
    use crate::transport::Context;

    /// What the REST API is: everything else the router serves opens a session
    /// (WebSocket, SockJS) or is a page of the web UI.
    fn is_rest(path: &str) -> bool {
        path.starts_with("/api/") || path.starts_with("/health") || path == "/metrics"
    }

    /// Every (path, methods) the router serves. axum keeps its routes private; its
    /// `Debug` names every path, and a method it does not route is answered 405 with
    /// the methods it does in `Allow`.
    async fn served(app: &axum::Router) -> BTreeMap<String, BTreeSet<String>> {
        let debug = format!("{app:?}");
        let mut paths = BTreeSet::new();
        for part in debug.split("RouteId(").skip(1) {
            if let Some(path) = part.split('"').nth(1) {
                paths.insert(path.to_owned());
            }
        }
        assert!(paths.len() > 20, "axum's Debug changed: {debug:.500}");
        let mut routes = BTreeMap::new();
        for path in paths {
            let concrete: String = path
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let probe = Request::builder()
                .method(Method::from_bytes(b"PROBE").unwrap())
                .uri(&concrete)
                .header(header::HOST, "localhost")
                .body(Body::empty())
                .unwrap();
            let response = app.clone().oneshot(probe).await.unwrap();
            let methods: BTreeSet<String> = if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                response.headers()[header::ALLOW]
                    .to_str()
                    .unwrap()
                    .split(',')
                    .map(|m| m.trim().to_lowercase())
                    .filter(|m| m != "head")
                    .collect()
            } else {
                // Any method (SockJS): never a REST route.
                assert!(!is_rest(&path), "{path} takes any method");
                BTreeSet::from(["any".to_owned()])
            };
            routes.insert(path, methods);
        }
        routes
    }

    fn documented() -> BTreeMap<String, BTreeSet<String>> {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(path, item)| {
                let methods = item.as_object().unwrap().keys().cloned().collect();
                (path.clone(), methods)
            })
            .collect()
    }

    #[tokio::test]
    async fn every_rest_route_is_in_the_document_and_every_documented_one_is_served() {
        let mut config = Config::default();
        config.server.http = "127.0.0.1:0".parse().unwrap();
        config.server.stomp = None;
        config.database.url = "sqlite::memory:".into();
        let server = Server::bind(config).await.unwrap();
        let state = Context {
            node: server.node().clone(),
            shutdown: server.shutdown_token(),
            tasks: tokio_util::task::TaskTracker::new(),
        };
        let served = served(&server.routes(&state)).await;
        let rest: BTreeMap<_, _> = served
            .iter()
            .filter(|(path, _)| is_rest(path))
            .map(|(p, m)| (p.clone(), m.clone()))
            .collect();
        let documented = documented();
        for (path, methods) in &rest {
            assert_eq!(
                documented.get(path),
                Some(methods),
                "{path} ({methods:?}) is served but not documented as such: annotate its handler with #[utoipa::path] and list it in http/openapi"
            );
        }
        for (path, methods) in &documented {
            assert_eq!(
                rest.get(path),
                Some(methods),
                "{path} is documented but not served"
            );
        }
        // The pages and session endpoints are there too, just not REST.
        assert!(
            served.contains_key("/ws") && served.contains_key("/"),
            "{served:?}"
        );
    }
}
