//! Settings: defaults, then a TOML file, then `HERALD_*` environment variables
//! (`HERALD_STOMP__MAX_FRAME=1024`: sections split by a double underscore), then flags.
//! `herald.example.toml` at the repository root documents every key; keep them in step.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub stomp: StompConfig,
    pub broker: BrokerConfig,
    pub routing: RoutingConfig,
    pub apps: AppsConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub database: DatabaseConfig,
    pub notifications: NotificationsConfig,
    pub cluster: ClusterConfig,
    pub ops: OpsConfig,
    pub web: WebConfig,
    pub sockjs: SockJsConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// HTTP listener: WebSocket at `/ws`, `/health`.
    pub http: SocketAddr,
    /// Plain STOMP over TCP; `None` turns it off.
    pub stomp: Option<SocketAddr>,
    /// Node id, unique in a cluster; generated at start when empty.
    pub node_id: String,
    /// How long shutdown waits for sessions to close after telling them.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Host names the HTTP listener answers to (the `Host` header), against DNS
    /// rebinding: "chat.example.com", "*.example.com" (any subdomain), "*" (any).
    /// Localhost names and IP addresses are always allowed.
    pub allowed_hosts: Vec<String>,
    /// Serve HTTP/2 with prior knowledge (h2c) besides HTTP/1.1.
    pub http2: bool,
    /// Largest request body of a REST endpoint (`/api/**`), refused with 413 while
    /// it is read, so a client cannot make the server buffer more.
    pub max_body: usize,
}

/// `server.max_body` by default: 1 MiB, room for a notification to
/// `notifications.max_recipients` users with the largest message and payload.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http: ([0, 0, 0, 0], 8080).into(),
            stomp: Some(([0, 0, 0, 0], 61613).into()),
            node_id: String::new(),
            drain_timeout: Duration::from_secs(5),
            allowed_hosts: Vec::new(),
            http2: false,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Unacknowledged deliveries per client-ack subscription by default (`stomp.prefetch`):
/// RabbitMQ's advice is 100 to 300; at 100 a subscription holds at most 100 messages
/// of `stomp.max_frame` (6.4 MiB by default) for a client that never ACKs.
pub const DEFAULT_PREFETCH: usize = 100;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StompConfig {
    /// Largest inbound frame (headers and body), bytes.
    pub max_frame: usize,
    /// Most headers in one inbound frame.
    pub max_headers: usize,
    /// Longest inbound header line, bytes.
    pub max_header_line: usize,
    /// Bytes that may wait in a session's outbound queue before the session is
    /// closed as a slow consumer (Spring's sendBufferSizeLimit). With flow control
    /// only what cannot be paced gets this far: other nodes' messages, many
    /// publishers at once.
    pub outbound_queue: usize,
    /// Producer flow control: a publish that leaves a subscriber with more than this
    /// many bytes waiting pauses its publisher (the session stops reading its socket)
    /// until the subscriber is under `outbound_low_water`. Equal to `outbound_queue`:
    /// no flow control, a subscriber past the limit is closed (Spring's behaviour).
    /// Unset: a quarter of `outbound_queue`.
    pub outbound_high_water: Option<usize>,
    /// Where a paused publisher is let go again. Unset: a quarter of the high-water
    /// mark.
    pub outbound_low_water: Option<usize>,
    /// Longest a write to a client may go without progress (not one byte taken)
    /// before the session is closed as a slow consumer (Spring's sendTimeLimit);
    /// also how long a REST publish waits for paced subscribers.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// Heart-beat the server offers to send (0 = none).
    #[serde(with = "humantime_serde")]
    pub heartbeat_send: Duration,
    /// Heart-beat the server asks to receive (0 = none).
    #[serde(with = "humantime_serde")]
    pub heartbeat_receive: Duration,
    /// Time from connection to CONNECT frame.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    // Budgets: what one session can make the server hold.
    /// Transactions one session may have open at once.
    pub max_transactions: usize,
    /// Frames (SEND, ACK, NACK) one transaction may buffer until COMMIT.
    pub transaction_max_frames: usize,
    /// Bytes (bodies and headers) one transaction may buffer until COMMIT.
    pub transaction_max_bytes: usize,
    /// Unacknowledged deliveries per subscription with client acks, unless its
    /// SUBSCRIBE says `prefetch-count`.
    pub prefetch: usize,
    /// The largest `prefetch-count` a SUBSCRIBE gets; more (or 0) is clamped to it.
    pub prefetch_max: usize,
}

impl StompConfig {
    /// Bytes waiting for a subscriber above which its publishers pause.
    pub fn high_water(&self) -> usize {
        self.outbound_high_water.unwrap_or(self.outbound_queue / 4)
    }

    /// Bytes waiting for a subscriber under which paused publishers go on.
    pub fn low_water(&self) -> usize {
        self.outbound_low_water.unwrap_or(self.high_water() / 4)
    }
}

impl Default for StompConfig {
    fn default() -> Self {
        StompConfig {
            max_frame: 64 * 1024,
            max_headers: 64,
            max_header_line: 8 * 1024,
            outbound_queue: 1024 * 1024,
            outbound_high_water: None,
            outbound_low_water: None,
            send_timeout: Duration::from_secs(10),
            heartbeat_send: Duration::from_secs(10),
            heartbeat_receive: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(60),
            max_transactions: 8,
            transaction_max_frames: 1000,
            transaction_max_bytes: 1024 * 1024,
            prefetch: DEFAULT_PREFETCH,
            prefetch_max: 1000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Destination prefixes with publish-subscribe semantics (every subscriber).
    pub topic_prefixes: Vec<String>,
    /// Destination prefixes with queue semantics (one subscriber per message).
    pub queue_prefixes: Vec<String>,
    /// Messages a queue keeps waiting for a subscriber (or for room in one).
    pub queue_capacity: usize,
    // Budgets: what clients can make the broker hold.
    /// Bytes of messages one queue keeps waiting.
    pub queue_max_bytes: usize,
    /// Bytes of messages all queues together keep waiting.
    pub queues_max_bytes: usize,
    /// Queues that may exist at once (holding messages or a round-robin position).
    pub max_queues: usize,
    /// What a full queue does with one more message.
    pub queue_overflow: QueueOverflow,
    /// Times a queue message may be given back (NACK, or its session ended or
    /// unsubscribed before an ACK) and still be redelivered; given back once more,
    /// it is dead-lettered. 0: dead-lettered at the first give-back.
    pub max_redeliveries: u32,
    /// Where dead-lettered queue messages go. A name without a leading `/` goes
    /// between the queue prefix and the queue's name (`"dlq."`: `/queue/orders` →
    /// `/queue/dlq.orders`); a destination (`/queue/dead-letters`) is one queue for
    /// every queue; empty: dead letters are dropped (and counted).
    pub dead_letter: String,

    // What a client may name (SUBSCRIBE, SEND, the publish API); over a limit is an
    // ERROR (400 over HTTP) naming the setting.
    /// Longest destination, bytes.
    pub max_destination_length: usize,
    /// Most segments in a destination (`/` and `.` separate them).
    pub max_destination_segments: usize,
    /// Most wildcards (`*`, `**`, `#`) in one destination.
    pub max_wildcards: usize,
}

/// `broker.max_redeliveries` by default: ActiveMQ's `maximumRedeliveries`.
pub const DEFAULT_MAX_REDELIVERIES: u32 = 6;

/// `broker.dead_letter` by default: `/queue/orders` dead-letters to `/queue/dlq.orders`.
pub const DEFAULT_DEAD_LETTER: &str = "dlq.";

/// What a queue at one of its limits does with a new message (RabbitMQ's `x-overflow`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum QueueOverflow {
    /// Refuse the publish: the sender gets ERROR "queue full" (REST: 503).
    RejectPublish,
    /// Drop the queue's oldest messages to make room; when that cannot make room
    /// (other queues use up `queues_max_bytes`), refuse as `reject-publish` does.
    DropHead,
}

impl BrokerConfig {
    pub fn destination_limits(&self) -> crate::destination::Limits {
        crate::destination::Limits {
            max_length: self.max_destination_length,
            max_segments: self.max_destination_segments,
            max_wildcards: self.max_wildcards,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            topic_prefixes: vec!["/topic/".into()],
            queue_prefixes: vec!["/queue/".into()],
            queue_capacity: 10_000,
            queue_max_bytes: 8 * 1024 * 1024,
            queues_max_bytes: 64 * 1024 * 1024,
            max_queues: 10_000,
            queue_overflow: QueueOverflow::RejectPublish,
            max_redeliveries: DEFAULT_MAX_REDELIVERIES,
            dead_letter: DEFAULT_DEAD_LETTER.into(),
            max_destination_length: 1024,
            max_destination_segments: 32,
            max_wildcards: 8,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Prefixes of application destinations: a SEND there goes to a handler.
    pub app_prefixes: Vec<String>,
    /// Prefix of user destinations (`/user/queue/x`, `/user/{name}/queue/x`).
    pub user_prefix: String,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            app_prefixes: vec!["/app/".into()],
            user_prefix: "/user/".into(),
        }
    }
}

/// How a handler's error reaches the sender.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ErrorDelivery {
    /// An ERROR frame, which closes the connection (STOMP's only error frame).
    Frame,
    /// A MESSAGE on the sender's `apps.error_destination` (`/user/queue/errors`), like
    /// Spring's `@MessageExceptionHandler` + `@SendToUser("/queue/errors")`.
    Queue,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AppsConfig {
    /// The seeds' demo apps (chat, greeting, rooms, /ws/chat).
    pub demo: bool,
    /// How a handler's error reaches the sender: "frame" or "queue".
    pub errors: ErrorDelivery,
    /// With `errors = "queue"`: the user destination errors go to.
    pub error_destination: String,
    /// Longest an application handler may take.
    #[serde(with = "humantime_serde")]
    pub handler_timeout: Duration,
    /// Most chat rooms that may exist at once (the three starting rooms included):
    /// creating one more is refused.
    pub max_rooms: usize,
    /// A room without members this long is removed (the starting rooms stay).
    #[serde(with = "humantime_serde")]
    pub room_idle_timeout: Duration,
    pub backend: BackendConfig,
}

impl Default for AppsConfig {
    fn default() -> Self {
        AppsConfig {
            demo: true,
            errors: ErrorDelivery::Frame,
            error_destination: "/queue/errors".into(),
            handler_timeout: Duration::from_secs(10),
            max_rooms: 1000,
            room_idle_timeout: Duration::from_secs(300),
            backend: BackendConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// URL Herald POSTs application SENDs to; empty turns the proxy off.
    pub url: String,
    /// Longest a backend call may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Application paths the backend owns (after the prefix); in-process handlers win.
    pub destinations: Vec<String>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            url: String::new(),
            timeout: Duration::from_secs(5),
            destinations: vec!["/**".into()],
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Refuse handshakes and CONNECTs without a valid token.
    pub required: bool,
    /// Where a token is looked for, in order: "cookie", "header" (Authorization:
    /// Bearer on the handshake), "query" (`?access_token=`), "connect" (the CONNECT
    /// frame's `Authorization` or `passcode` header).
    pub token_sources: Vec<TokenSource>,
    pub cookie_name: String,
    pub query_param: String,
    /// Claim paths (dotted, e.g. "realm_access.roles") for the principal.
    pub user_claim: String,
    pub name_claim: String,
    pub roles_claim: String,
    /// Clock skew allowed on exp and nbf.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// How often keys from a JWKS URL or file are reloaded.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// Token issuers and their keys; none configured means anonymous mode.
    pub issuers: Vec<IssuerConfig>,
    /// Destination rules, first match wins (per SUBSCRIBE and SEND). They come after
    /// the reserved rules and before the default rules (see `default_rules`).
    pub rules: Vec<RuleConfig>,
    /// The built-in rules: the server's own destinations (notifications, broadcasts,
    /// jobs) SEND by `service_role`/`admin_role` only, checked before `rules`; user
    /// destinations SEND by their owner, a service or an admin, and `/topic/admin/**`
    /// by admins, checked after `rules`. Off: the default rules go; the reserved ones
    /// stay while `notifications.enabled`.
    pub default_rules: bool,
    /// Allowed Origin patterns for WebSocket and SockJS handshakes ("https://*.example.com",
    /// "http://localhost:*", "*"). Empty: the server's own origin and localhost.
    pub allowed_origins: Vec<String>,
    /// API keys (header `X-API-Key`): `{ key, principal, roles }` tables, or plain
    /// strings, which are keys of a service (`service_role`).
    pub api_keys: Vec<ApiKeyConfig>,
    /// Who may connect while no issuer and no API key is configured: "loopback"
    /// (protected mode: loopback clients only) or "open" (anyone who can reach it).
    pub anonymous: AnonymousAccess,
    /// Role a token needs for the publishing REST API (the admin role works too).
    pub service_role: String,
    /// Role for the admin API and `/topic/admin/**`.
    pub admin_role: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TokenSource {
    Cookie,
    Header,
    Query,
    Connect,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            required: false,
            token_sources: vec![
                TokenSource::Cookie,
                TokenSource::Header,
                TokenSource::Query,
                TokenSource::Connect,
            ],
            cookie_name: "access_token".into(),
            query_param: "access_token".into(),
            user_claim: "sub".into(),
            name_claim: "name".into(),
            roles_claim: "roles".into(),
            leeway: Duration::from_secs(30),
            jwks_refresh: Duration::from_secs(300),
            issuers: Vec::new(),
            rules: Vec::new(),
            default_rules: true,
            allowed_origins: Vec::new(),
            api_keys: Vec::new(),
            anonymous: AnonymousAccess::Loopback,
            service_role: "SERVICE".into(),
            admin_role: "ADMIN".into(),
        }
    }
}

/// An API key and the service principal it stands for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ApiKeyConfig {
    /// A bare key: a service (`auth.service_role`) named "service".
    Plain(String),
    Full {
        key: String,
        /// The principal's name (REST publishes are sent as it).
        principal: String,
        /// Its roles: `auth.admin_role` opens the admin API.
        #[serde(default)]
        roles: Vec<String>,
    },
}

impl From<&str> for ApiKeyConfig {
    fn from(key: &str) -> Self {
        ApiKeyConfig::Plain(key.to_owned())
    }
}

/// Access to a server without credentials configured (no issuer, no API key).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousAccess {
    /// Protected mode: only loopback clients are answered.
    Loopback,
    /// Anyone who can reach the listeners: for a trusted network.
    Open,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` the tokens carry; "" matches tokens without `iss`.
    pub issuer: String,
    /// Accepted audiences; empty means `aud` is not checked.
    pub audience: Vec<String>,
    /// HMAC secret (HS256/384/512).
    pub secret: String,
    /// PEM public key: RSA (RS*/PS*), EC (ES256/384) or Ed25519 (EdDSA).
    pub public_key_file: String,
    /// PEM private key, used only by `herald token` to mint development tokens.
    pub private_key_file: String,
    /// A JWKS document on disk, or at a URL; keys matched by `kid`.
    pub jwks_file: String,
    pub jwks_url: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// Destination pattern: `*` one segment, `**` (or `#`) any number, `/` and `.` both
    /// separate segments; `{user}` a whole `/` segment that `owner` compares with the
    /// principal.
    pub pattern: String,
    /// Who may SUBSCRIBE: "anyone", "authenticated", "role:X", "admin", "owner", "deny",
    /// or a list of them, any of which admits (`["owner", "role:SERVICE"]`).
    pub subscribe: Option<Grants>,
    /// Who may SEND, same values.
    pub send: Option<Grants>,
}

/// A rule's access for one operation: one grant, or several of which any admits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Grants {
    One(String),
    Any(Vec<String>),
}

impl Grants {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let all: &[String] = match self {
            Grants::One(g) => std::slice::from_ref(g),
            Grants::Any(list) => list,
        };
        all.iter().map(String::as_str)
    }
}

impl From<&str> for Grants {
    fn from(grant: &str) -> Self {
        Grants::One(grant.to_owned())
    }
}

impl From<&[&str]> for Grants {
    fn from(grants: &[&str]) -> Self {
        Grants::Any(grants.iter().map(|g| (*g).to_owned()).collect())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Concurrent connections from one IP address (0: no limit).
    pub max_connections_per_ip: usize,
    /// Concurrent STOMP sessions of one user (0: no limit).
    pub max_connections_per_user: usize,
    /// Subscriptions one session may hold (0: no limit).
    pub max_subscriptions_per_session: usize,
    /// Inbound frames per second per session, a token bucket (0: no limit).
    pub frame_rate: u32,
    /// Burst the bucket allows (defaults to frame_rate when 0).
    pub frame_burst: u32,
    /// Time for a client to send its HTTP request headers (the WebSocket handshake);
    /// also how long an HTTP/1.1 keep-alive connection may wait for its next request.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Open connections on all listeners together (0: RLIMIT_NOFILE less 256).
    pub max_connections: usize,
    /// An HTTP/2 connection without a request in flight for this long is closed.
    #[serde(with = "humantime_serde")]
    pub http2_idle_timeout: Duration,
    /// HTTP/2 keep-alive ping interval; a peer that does not answer within it is dropped.
    #[serde(with = "humantime_serde")]
    pub http2_keepalive: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections_per_ip: 0,
            max_connections_per_user: 0,
            max_subscriptions_per_session: 1000,
            frame_rate: 0,
            frame_burst: 0,
            handshake_timeout: Duration::from_secs(10),
            max_connections: 0,
            http2_idle_timeout: Duration::from_secs(60),
            http2_keepalive: Duration::from_secs(20),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// How often a stats line is logged (like Spring's WebSocketMessageBrokerStats).
    #[serde(with = "humantime_serde")]
    pub stats_interval: Duration,
    /// `/metrics` needs an API key (`X-API-Key`, or `Authorization: Bearer <key>`) or
    /// a token with `auth.admin_role`.
    pub metrics_auth: bool,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            stats_interval: Duration::from_secs(30 * 60),
            metrics_auth: false,
        }
    }
}

/// Several nodes as one server (`cluster::Bus`): Redis when `redis_url` is set,
/// else this node alone. Also the history kept per destination for recovery.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:6379/0` (or `rediss://`): all the nodes need in common. Empty:
    /// a single node.
    pub redis_url: String,
    /// Prefix of every Redis key and channel Herald uses.
    pub key_prefix: String,
    /// Messages kept per topic destination for recovery by offset (0: none).
    pub history_size: usize,
    /// A destination's history is dropped after this long without a message (Redis).
    #[serde(with = "humantime_serde")]
    pub history_ttl: Duration,
    /// A cluster queue message a node took but did not ack within this time (its
    /// node died) is delivered again by another node.
    #[serde(with = "humantime_serde")]
    pub claim_after: Duration,
    /// How often a node renews its presence and checks Redis; its presence expires
    /// after three of these.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    // Budgets of the history a single node keeps (the local bus).
    /// Destinations with a history ring at once; past it the least recently
    /// published one is dropped.
    pub history_max_destinations: usize,
    /// Bytes of messages all history rings together keep; past it the least
    /// recently published destinations are dropped.
    pub history_max_bytes: usize,
    /// Longest a confirmed publish (a SEND or COMMIT with a `receipt`, the REST API,
    /// `Messaging::send_confirmed`) waits for Redis to take it while Redis is away;
    /// past it the message is refused and never written later.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// Bytes of publishes kept in order while Redis is away, written to it once it
    /// answers; past it new publishes are refused.
    pub spool_max_bytes: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: String::new(),
            key_prefix: "herald".into(),
            history_size: 100,
            history_ttl: Duration::from_secs(3600),
            claim_after: Duration::from_secs(30),
            heartbeat: Duration::from_secs(2),
            history_max_destinations: 10_000,
            history_max_bytes: 64 * 1024 * 1024,
            publish_timeout: Duration::from_secs(5),
            spool_max_bytes: 64 << 20,
        }
    }
}

/// The web UI served from the binary (`web.rs`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// `POST /api/dev/login {sub, roles}` mints a token with the first issuer that can
    /// sign and sets it as the `auth.cookie_name` cookie: anyone can become anyone.
    /// For demos and development only; never on a server others can reach.
    pub dev_login: bool,
}

/// The notification store.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://herald.db` (a file, created when missing; a plain path works too),
    /// `sqlite::memory:`, `mysql://user:pass@host:3306/db` (MariaDB too) or
    /// `postgres://user@host:5432/db`. Flag: --database-url
    pub url: String,
    /// Connections in the pool (an in-memory SQLite database always has one).
    pub max_connections: u32,
    /// Longest a request waits for a connection before it fails (503).
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://herald.db".into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Notifications: REST API, live delivery, read state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Off: no store is opened and the notification API answers 404.
    pub enabled: bool,
    /// User destination a user's notifications go to: clients subscribe to the user
    /// prefix + this (`/user/queue/notifications`). Spring notification services often use "/queue/notification".
    pub destination: String,
    /// Where broadcasts are published (every subscriber).
    pub broadcast_destination: String,
    /// User destination for long-running job progress (`/user/queue/jobs`).
    pub jobs_destination: String,
    /// Read notifications (and broadcasts) older than this are deleted; "0s" keeps all.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often retention runs.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// Default page size of GET /api/notifications.
    pub page_size: u32,
    /// Most users one `POST /api/notifications` names: each is a row written in the
    /// request's transaction.
    pub max_recipients: usize,
    /// Largest `message`, in bytes (stored once per recipient).
    pub max_message: usize,
    /// Largest `payload`, in bytes of its JSON (stored once per recipient).
    pub max_payload: usize,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            enabled: true,
            destination: "/queue/notifications".into(),
            broadcast_destination: "/topic/notifications".into(),
            jobs_destination: "/queue/jobs".into(),
            retention: Duration::from_secs(30 * 24 * 3600),
            retention_interval: Duration::from_secs(3600),
            page_size: 20,
            max_recipients: 1000,
            max_message: 4 * 1024,
            max_payload: 16 * 1024,
        }
    }
}

impl Config {
    /// Defaults, overlaid by `file` (if any) and the `HERALD_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file(path));
        }
        // Only sectioned names are settings, so HERALD_BIN and the like are left alone.
        fig = fig.merge(
            Env::prefixed("HERALD_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        let config: Config = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks relations between settings that the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.stomp;
        let err = |key: &str, problem: &str| Err(ConfigError(format!("{key}: {problem}")));
        if s.max_frame < 256 {
            return err("stomp.max_frame", "must be at least 256 bytes");
        }
        if s.max_headers == 0 {
            return err("stomp.max_headers", "must be at least 1");
        }
        if s.max_header_line < 64 {
            return err("stomp.max_header_line", "must be at least 64 bytes");
        }
        let b = &self.broker;
        if b.max_destination_length < 16 {
            return err("broker.max_destination_length", "must be at least 16 bytes");
        }
        if b.max_destination_segments < 2 {
            return err("broker.max_destination_segments", "must be at least 2");
        }
        if b.max_wildcards == 0 {
            return err("broker.max_wildcards", "must be at least 1");
        }
        if self.server.max_body < 1024 {
            return err("server.max_body", "must be at least 1024 bytes");
        }
        let n = &self.notifications;
        if !(1..=crate::notify::MAX_RECIPIENTS).contains(&n.max_recipients) {
            return err(
                "notifications.max_recipients",
                &format!("must be 1 to {}", crate::notify::MAX_RECIPIENTS),
            );
        }
        if !(1..=crate::notify::MAX_MESSAGE).contains(&n.max_message) {
            return err(
                "notifications.max_message",
                &format!("must be 1 to {} bytes", crate::notify::MAX_MESSAGE),
            );
        }
        if !(2..=crate::notify::MAX_PAYLOAD).contains(&n.max_payload) {
            return err(
                "notifications.max_payload",
                &format!("must be 2 to {} bytes", crate::notify::MAX_PAYLOAD),
            );
        }
        let backend = &self.apps.backend;
        if !backend.url.is_empty()
            && !backend.url.starts_with("http://")
            && !backend.url.starts_with("https://")
        {
            return err("apps.backend.url", "must be an http:// or https:// URL");
        }
        if !self.apps.error_destination.starts_with('/') {
            return err("apps.error_destination", "must start with '/'");
        }
        for (i, issuer) in self.auth.issuers.iter().enumerate() {
            let keys = [
                &issuer.secret,
                &issuer.public_key_file,
                &issuer.jwks_file,
                &issuer.jwks_url,
            ]
            .iter()
            .filter(|k| !k.is_empty())
            .count();
            if keys == 0 {
                return err(
                    &format!("auth.issuers[{i}]"),
                    "needs a key: secret, public_key_file, jwks_file or jwks_url",
                );
            }
            if !issuer.secret.is_empty() && issuer.secret.len() < 32 {
                return err(
                    &format!("auth.issuers[{i}].secret"),
                    "must be at least 32 bytes",
                );
            }
        }
        if self.auth.required && self.auth.issuers.is_empty() {
            return err("auth.required", "needs at least one entry in auth.issuers");
        }
        if let Err((key, problem)) = crate::auth::rules::Rules::new(self) {
            return err(&key, &problem);
        }
        if self.ops.stats_interval.is_zero() {
            return err("ops.stats_interval", "must be longer than 0s");
        }
        let c = &self.cluster;
        if !c.redis_url.is_empty()
            && !c.redis_url.starts_with("redis://")
            && !c.redis_url.starts_with("rediss://")
            && !c.redis_url.starts_with("redis+unix://")
        {
            return err("cluster.redis_url", "must be a redis:// or rediss:// URL");
        }
        if c.heartbeat.is_zero() || c.claim_after.is_zero() {
            return err("cluster.heartbeat/claim_after", "must be more than 0s");
        }
        if c.publish_timeout.is_zero() {
            return err("cluster.publish_timeout", "must be more than 0s");
        }
        let sj = &self.sockjs;
        if !sj.path.starts_with('/') || sj.path.len() < 2 || sj.path.ends_with('/') {
            return err(
                "sockjs.path",
                "must start with '/' and not end with '/', like \"/ws-sockjs\"",
            );
        }
        if sj.heartbeat.is_zero() || sj.disconnect_delay.is_zero() {
            return err("sockjs.heartbeat/disconnect_delay", "must be more than 0s");
        }
        if sj.client_url.trim().is_empty() {
            return err(
                "sockjs.client_url",
                "must name the sockjs-client script, like \"/web/vendor/sockjs.min.js\"",
            );
        }
        if sj.response_limit == 0 {
            return err("sockjs.response_limit", "must be more than 0 bytes");
        }
        if let Some(t) = sj
            .transports
            .iter()
            .find(|t| !SOCKJS_TRANSPORTS.contains(&t.as_str()))
        {
            return err(
                "sockjs.transports",
                &format!(
                    "unknown transport '{t}' (known: {})",
                    SOCKJS_TRANSPORTS.join(", ")
                ),
            );
        }
        for (i, key) in self.auth.api_keys.iter().enumerate() {
            let (key, principal) = match key {
                ApiKeyConfig::Plain(k) => (k, "service"),
                ApiKeyConfig::Full { key, principal, .. } => (key, principal.as_str()),
            };
            if key.trim().is_empty() || principal.trim().is_empty() {
                return err(
                    &format!("auth.api_keys[{i}]"),
                    "needs a key and a principal that are not empty",
                );
            }
        }
        if self.ops.metrics_auth && self.auth.api_keys.is_empty() && self.auth.issuers.is_empty() {
            return err(
                "ops.metrics_auth",
                "needs an API key (auth.api_keys) or a token issuer (auth.issuers)",
            );
        }
        if self.limits.http2_idle_timeout.is_zero() || self.limits.http2_keepalive.is_zero() {
            return err(
                "limits.http2_idle_timeout/http2_keepalive",
                "must be more than 0s",
            );
        }
        let n = &self.notifications;
        if n.enabled {
            if self.database.url.is_empty() {
                return err(
                    "database.url",
                    "must name a database (or set notifications.enabled = false)",
                );
            }
            for (key, d) in [
                ("notifications.destination", &n.destination),
                ("notifications.jobs_destination", &n.jobs_destination),
                (
                    "notifications.broadcast_destination",
                    &n.broadcast_destination,
                ),
            ] {
                if !d.starts_with('/') {
                    return err(key, "must start with '/'");
                }
            }
            if !(1..=200).contains(&n.page_size) {
                return err("notifications.page_size", "must be 1 to 200");
            }
        }
        if self.apps.max_rooms == 0 {
            return err("apps.max_rooms", "must be at least 1");
        }
        if self.apps.room_idle_timeout.is_zero() {
            return err("apps.room_idle_timeout", "must be more than 0");
        }
        if s.outbound_queue < s.max_frame {
            return err("stomp.outbound_queue", "must be at least stomp.max_frame");
        }
        if s.high_water() > s.outbound_queue {
            return err(
                "stomp.outbound_high_water",
                "must be at most stomp.outbound_queue",
            );
        }
        if s.low_water() >= s.high_water() && s.high_water() < s.outbound_queue {
            return err(
                "stomp.outbound_low_water",
                "must be less than stomp.outbound_high_water",
            );
        }
        if s.send_timeout.is_zero() {
            return err("stomp.send_timeout", "must be more than 0");
        }
        self.validate_budgets()?;
        let b = &self.broker;
        let r = &self.routing;
        let all: Vec<&String> = b
            .topic_prefixes
            .iter()
            .chain(&b.queue_prefixes)
            .chain(&r.app_prefixes)
            .chain([&r.user_prefix])
            .collect();
        for p in &all {
            if !p.starts_with('/') || !p.ends_with('/') || p.len() < 3 {
                return err(
                    "broker/routing prefixes",
                    &format!("'{p}' must start and end with '/', like \"/topic/\""),
                );
            }
        }
        for (i, p) in all.iter().enumerate() {
            if let Some(q) = all[i + 1..]
                .iter()
                .find(|q| q.starts_with(p.as_str()) || p.starts_with(q.as_str()))
            {
                return err(
                    "broker/routing prefixes",
                    &format!("'{p}' and '{q}' overlap"),
                );
            }
        }
        if let Err(problem) = crate::broker::dead_letter::DeadLetters::check(b) {
            return err("broker.dead_letter", &problem);
        }
        Ok(())
    }

    /// The budgets must each hold at least one frame of `stomp.max_frame`, or a valid
    /// message could never get in.
    fn validate_budgets(&self) -> Result<(), ConfigError> {
        let (s, b, c) = (&self.stomp, &self.broker, &self.cluster);
        let frame = s.max_frame;
        let checks: [(&str, bool, &str); 10] = [
            (
                "stomp.max_transactions",
                s.max_transactions >= 1,
                "must be at least 1",
            ),
            (
                "stomp.transaction_max_frames",
                s.transaction_max_frames >= 1,
                "must be at least 1",
            ),
            (
                "stomp.transaction_max_bytes",
                s.transaction_max_bytes >= frame,
                "must be at least stomp.max_frame",
            ),
            (
                "stomp.prefetch",
                s.prefetch >= 1 && s.prefetch <= s.prefetch_max,
                "must be 1 to stomp.prefetch_max",
            ),
            (
                "broker.queue_capacity",
                b.queue_capacity >= 1,
                "must be at least 1",
            ),
            (
                "broker.queue_max_bytes",
                b.queue_max_bytes >= frame,
                "must be at least stomp.max_frame",
            ),
            (
                "broker.queues_max_bytes",
                b.queues_max_bytes >= b.queue_max_bytes,
                "must be at least broker.queue_max_bytes",
            ),
            ("broker.max_queues", b.max_queues >= 1, "must be at least 1"),
            (
                "cluster.history_max_destinations",
                c.history_max_destinations >= 1,
                "must be at least 1",
            ),
            (
                "cluster.history_max_bytes",
                c.history_max_bytes >= frame,
                "must be at least stomp.max_frame",
            ),
        ];
        match checks.iter().find(|(_, ok, _)| !ok) {
            Some((key, _, problem)) => Err(ConfigError(format!("{key}: {problem}"))),
            None => Ok(()),
        }
    }

    pub(crate) fn limits(&self) -> herald_stomp::Limits {
        herald_stomp::Limits {
            max_frame: self.stomp.max_frame,
            max_headers: self.stomp.max_headers,
            max_header_line: self.stomp.max_header_line,
        }
    }
}

/// The transports `sockjs.transports` may name (sockjs-client's names).
pub const SOCKJS_TRANSPORTS: [&str; 6] = [
    "websocket",
    "xhr-streaming",
    "xhr-polling",
    "eventsource",
    "htmlfile",
    "jsonp-polling",
];

/// SockJS fallback transports (`transport::sockjs`), for browsers that cannot open a
/// WebSocket: the same STOMP sessions over xhr, xhr-streaming, eventsource, htmlfile
/// and jsonp.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SockJsConfig {
    /// Serve STOMP over SockJS at `path` (and, with the demo apps, the plain JSON chat
    /// at `/ws/chat-sockjs`).
    pub enabled: bool,
    /// The SockJS endpoint (the URL given to `new SockJS(url)`).
    pub path: String,
    /// The sockjs-client script the `/iframe.html` page loads (for iframe transports):
    /// by default Herald's own copy (`/web/vendor/sockjs.min.js`), so no CDN is needed.
    pub client_url: String,
    /// The transports offered, by sockjs-client's names: "websocket", "xhr-streaming",
    /// "xhr-polling", "eventsource", "htmlfile", "jsonp-polling". htmlfile and jsonp are
    /// off by default: a page of any site can open them with a plain navigation.
    pub transports: Vec<String>,
    /// SockJS sessions of the HTTP transports open at once, in total and per client IP.
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    /// Tell clients a `JSESSIONID` cookie is needed (sticky load balancers).
    pub cookie_needed: bool,
    /// How often a receiving request gets an `h` frame when nothing else is sent.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How long a session lives with no receiving request before it is closed.
    #[serde(with = "humantime_serde")]
    pub disconnect_delay: Duration,
    /// Bytes a streaming response carries before it ends and the client opens another.
    pub response_limit: usize,
    /// Serve the protocol test suite's endpoints (`/echo`, `/close`,
    /// `/disabled_websocket_echo`, `/cookie_needed_echo`): for conformance tests only.
    pub test_endpoints: bool,
}

impl Default for SockJsConfig {
    fn default() -> Self {
        SockJsConfig {
            enabled: true,
            path: "/ws-sockjs".into(),
            client_url: "/web/vendor/sockjs.min.js".into(),
            transports: ["websocket", "xhr-streaming", "xhr-polling", "eventsource"]
                .map(String::from)
                .to_vec(),
            max_sessions: 10_000,
            max_sessions_per_ip: 100,
            cookie_needed: false,
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            response_limit: 128 * 1024,
            test_endpoints: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_to_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../herald.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let parsed: Config = toml_from_str(&text);
        let mut expected = Config::default();
        expected.server.node_id = parsed.server.node_id.clone();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = std::env::temp_dir().join(format!("herald-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[stomp]\nmax_frme = 10\n").unwrap();
        let e = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("max_frme"), "{e}");
        std::fs::write(&path, "[stomp]\nmax_frame = 10\n").unwrap();
        let e = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("stomp.max_frame"), "{e}");
    }

    #[test]
    fn a_grant_is_one_string_or_a_list() {
        let c = toml_from_str(
            "[[auth.rules]]\npattern = \"/topic/a/**\"\nsubscribe = \"anyone\"\n\
             send = [\"owner\", \"role:SERVICE\"]\n",
        );
        let rule = &c.auth.rules[0];
        assert_eq!(rule.subscribe, Some(Grants::One("anyone".into())));
        assert_eq!(
            rule.send.as_ref().map(|g| g.iter().collect::<Vec<_>>()),
            Some(vec!["owner", "role:SERVICE"])
        );
        c.validate().unwrap();
        let c = toml_from_str("[[auth.rules]]\npattern = \"/topic/a\"\nsend = []\n");
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("auth.rules[0].send"), "{e}");
    }

    #[test]
    fn a_dead_letter_setting_that_is_no_queue_is_refused_by_name() {
        for bad in ["/topic/dlq", "/queue/", "dlq.*"] {
            let c = toml_from_str(&format!("[broker]\ndead_letter = \"{bad}\"\n"));
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("broker.dead_letter"), "{bad}: {e}");
        }
        for ok in ["", "dlq.", "/queue/dead-letters"] {
            let c = toml_from_str(&format!("[broker]\ndead_letter = \"{ok}\"\n"));
            assert!(c.validate().is_ok(), "{ok}");
        }
    }

    fn toml_from_str(text: &str) -> Config {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .unwrap()
    }
}
