//! Notifications (as Spring services built on MySQL and STOMP keep them): persisted first, then delivered live.
//!
//! - [`Notifier::notify`] writes one row per recipient (a broadcast: one row for
//!   everyone) in one transaction, and only after the commit publishes each row to
//!   `/user/{id}` + `notifications.destination` (every session of that user) or, for a
//!   broadcast, to `notifications.broadcast_destination`. A client that was offline, or
//!   missed a message, finds it in its unread list: the database is the record, the
//!   STOMP message only the live copy. A database error publishes nothing.
//! - Read state is per user (`notification_reads`), so broadcasts have it too. Marking
//!   read pushes `{"event":"read","ids":[..],"unreadCount":n}` to the user's
//!   notification destination, so the badges of their other sessions update.
//! - [`Notifier::job_progress`] pushes a long-running job's progress to the user's
//!   `notifications.jobs_destination`; a final status (done/failed) is stored as a
//!   notification too.
//! - Storage: [`store::NotificationStore`] (SQLite, MySQL/MariaDB, PostgreSQL).
//! - A database that is down at startup does not stop the server: the notifier starts
//!   degraded (the API answers 503, `/health/ready` names the database, STOMP works),
//!   retries in the background and runs the migrations once the database answers.
//!   Later outages fail single requests (503) and the pool reconnects by itself.
//! - REST routes: `http.rs`.

pub mod config;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald_stomp::Headers;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::handler::Messaging;
use config::{DatabaseConfig, NotificationsConfig};
pub use store::{Draft, EVERYONE, MarkRead, NotificationStore, PoolSettings, Stored};

/// Field limits, checked before the database sees them (so every backend agrees).
pub const MAX_USER: usize = 255;
pub const MAX_KIND: usize = 100;
pub const MAX_TITLE: usize = 255;
pub const MAX_KEY: usize = 255;
pub const MAX_REDIRECT: usize = 1024;
pub const MAX_JOB_ID: usize = 100;

/// Who a notification is for.
#[derive(Clone, Debug, PartialEq)]
pub enum Recipients {
    Users(Vec<String>),
    Everyone,
}

/// A notification to create.
#[derive(Clone, Debug)]
pub struct NewNotification {
    pub to: Recipients,
    pub kind: String,
    pub title: String,
    pub message: String,
    pub redirect_path: Option<String>,
    pub payload: Option<Value>,
    pub idempotency_key: Option<String>,
    /// Who asks (the service's principal; empty when anonymous): idempotency keys
    /// are this caller's own, so two services using the same key never collide.
    pub caller: String,
}

/// What [`Notifier::notify`] did.
#[derive(Debug)]
pub struct Created {
    /// One per recipient, in the order of the request's users.
    pub notifications: Vec<Stored>,
    /// How many of them were written (and published) now; the others the caller
    /// had created before with the same idempotency key.
    pub written: usize,
    /// The idempotency key was used before for every recipient: nothing was written
    /// or published.
    pub duplicate: bool,
    /// Subscriptions the live copies reached (0 when nobody was connected).
    pub delivered: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The request is wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// The request is over a budget (413); `limit` is the setting.
    #[error("{message}")]
    TooLarge {
        limit: &'static str,
        message: String,
    },
    /// The database failed (503): nothing was published.
    #[error("notification store unavailable: {0}")]
    Store(#[from] sqlx::Error),
    /// The database has not been reachable since startup (503); Herald keeps trying
    /// and runs the migrations once it answers.
    #[error(
        "notification store unavailable: the database has not been reachable since startup ({0}); retrying, notifications work again once it answers"
    )]
    NotReady(String),
}

/// The notification service: the store plus live delivery through [`Messaging`].
#[derive(Debug)]
pub struct Notifier {
    store: NotificationStore,
    /// Set once the migrations ran; until then every call answers
    /// [`NotifyError::NotReady`] without touching the database.
    migrated: AtomicBool,
    /// Why the database is not ready yet (the last failed attempt).
    not_ready: Mutex<String>,
    messaging: Messaging,
    config: NotificationsConfig,
}

/// First and longest pause between attempts to reach a database that was down at startup.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Notifier {
    /// Opens the store and runs its migrations. Only a URL that does not parse is an
    /// error: when the database is down, the notifier starts degraded (every call
    /// answers [`NotifyError::NotReady`], i.e. 503) and keeps trying in the background,
    /// running the migrations as soon as the database answers.
    pub async fn open(
        database: &DatabaseConfig,
        config: &NotificationsConfig,
        messaging: Messaging,
    ) -> Result<Arc<Notifier>, sqlx::Error> {
        let settings = PoolSettings {
            max_connections: database.max_connections,
            acquire_timeout: database.acquire_timeout,
        };
        let store = NotificationStore::connect_lazy(&database.url, &settings)?;
        let notifier = Arc::new(Notifier {
            store,
            migrated: AtomicBool::new(false),
            not_ready: Mutex::new("not tried yet".into()),
            messaging,
            config: config.clone(),
        });
        if let Err(e) = notifier.try_migrate().await {
            tracing::warn!(
                backend = notifier.store.backend(),
                error = %e,
                "notification database unavailable at startup: the notification API answers 503 until it is reachable (retrying)"
            );
            notifier.spawn_migrate_retry();
        }
        Ok(notifier)
    }

    /// One attempt to reach the database and run the migrations.
    async fn try_migrate(&self) -> Result<(), sqlx::Error> {
        match self.store.migrate().await {
            Ok(()) => {
                self.migrated.store(true, Ordering::Release);
                tracing::info!(backend = self.store.backend(), "notification store ready");
                Ok(())
            }
            Err(e) => {
                *self.not_ready.lock() = e.to_string();
                Err(e)
            }
        }
    }

    /// Retries [`Notifier::try_migrate`] with a growing pause until it succeeds or the
    /// notifier is dropped.
    fn spawn_migrate_retry(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut pause = RETRY_FIRST;
            loop {
                tokio::time::sleep(pause).await;
                let Some(this) = weak.upgrade() else { return };
                match this.try_migrate().await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "notification database still unavailable")
                    }
                }
                pause = (pause * 2).min(RETRY_MAX);
            }
        });
    }

    /// Whether the database was reached and migrated (since then, failures are
    /// per request and the pool reconnects by itself).
    pub fn is_ready(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    /// The store, whether or not it is ready (tests and operators' tools).
    pub fn store(&self) -> &NotificationStore {
        &self.store
    }

    /// The store once it is ready; before, why not.
    fn ready_store(&self) -> Result<&NotificationStore, NotifyError> {
        if self.is_ready() {
            Ok(&self.store)
        } else {
            Err(NotifyError::NotReady(self.not_ready.lock().clone()))
        }
    }

    /// The readiness check: migrated, and the database answers now.
    pub async fn check_ready(&self) -> Result<(), String> {
        let store = self.ready_store().map_err(|e| e.to_string())?;
        store
            .unread_count("")
            .await
            .map(|_| ())
            .map_err(|e| format!("database unreachable: {e}"))
    }

    pub fn config(&self) -> &NotificationsConfig {
        &self.config
    }

    /// Persists `n`, then publishes it. A repeated idempotency key returns the
    /// earlier notifications and publishes nothing again.
    pub async fn notify(&self, n: NewNotification) -> Result<Created, NotifyError> {
        let (recipients, payload) = validate(&n, &self.config)?;
        let idempotency_key = n.idempotency_key.map(|k| scoped_key(&n.caller, &k));
        let draft = Draft {
            kind: n.kind,
            title: n.title,
            message: n.message,
            redirect_path: n.redirect_path,
            payload,
            idempotency_key,
            created_at: now_ms(),
        };
        let store = self.ready_store()?;
        let started = std::time::Instant::now();
        let inserted = store.insert(&recipients, &draft).await;
        crate::ops::metrics::database_time("insert", started.elapsed());
        let inserted = inserted?;
        let duplicate = inserted.duplicate();
        let new = || {
            inserted
                .rows
                .iter()
                .zip(&inserted.written)
                .filter(|(_, written)| **written)
                .map(|(row, _)| row)
        };
        let delivered = new().map(|row| self.publish(row)).sum();
        let written = new().count();
        if written > 0 {
            crate::ops::metrics::notifications_created(written);
            crate::ops::metrics::notifications_delivered(delivered);
        }
        Ok(Created {
            notifications: inserted.rows,
            written,
            duplicate,
            delivered,
        })
    }

    /// The live copy of a committed row. It cannot lose the notification: the row is
    /// already stored, and a session that misses this finds it in its unread list.
    fn publish(&self, row: &Stored) -> usize {
        let body = Bytes::from(message_json(row, "notification").to_string());
        let headers = event_headers("notification");
        if row.recipient == EVERYONE {
            match self
                .messaging
                .send(&self.config.broadcast_destination, &headers, body)
            {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e.message, id = row.id, "broadcast stored but not published");
                    0
                }
            }
        } else {
            self.messaging
                .send_to_user(&row.recipient, &self.config.destination, &headers, body)
        }
    }

    pub async fn list(
        &self,
        user: &str,
        before: Option<i64>,
        limit: i64,
        unread_only: bool,
    ) -> Result<Vec<Stored>, NotifyError> {
        let started = std::time::Instant::now();
        let rows = self
            .ready_store()?
            .list(user, before, limit, unread_only)
            .await;
        crate::ops::metrics::database_time("list", started.elapsed());
        Ok(rows?)
    }

    pub async fn unread_count(&self, user: &str) -> Result<i64, NotifyError> {
        Ok(self.ready_store()?.unread_count(user).await?)
    }

    /// Marks one notification read and tells the user's sessions. `None`: not found.
    pub async fn mark_read(&self, user: &str, id: i64) -> Result<Option<(bool, i64)>, NotifyError> {
        let store = self.ready_store()?;
        let marked = match store.mark_read(user, id, now_ms()).await? {
            MarkRead::NotFound => return Ok(None),
            MarkRead::AlreadyRead => false,
            MarkRead::Marked => true,
        };
        let unread = store.unread_count(user).await?;
        if marked {
            self.push_read(user, &[id], unread, false);
        }
        Ok(Some((marked, unread)))
    }

    /// Marks everything read; returns the ids it marked.
    pub async fn mark_all_read(&self, user: &str) -> Result<Vec<i64>, NotifyError> {
        let ids = self.ready_store()?.mark_all_read(user, now_ms()).await?;
        if !ids.is_empty() {
            self.push_read(user, &ids, 0, true);
        }
        Ok(ids)
    }

    /// `{"event":"read","type":"read","ids":[..],"unreadCount":n,"all":bool}` to every
    /// session of `user`, so other devices update their badges.
    fn push_read(&self, user: &str, ids: &[i64], unread: i64, all: bool) {
        let body = json!({
            "event": "read",
            "type": "read",
            "memberId": user,
            "ids": ids,
            "unreadCount": unread,
            "all": all,
        });
        self.messaging.send_to_user(
            user,
            &self.config.destination,
            &event_headers("read"),
            Bytes::from(body.to_string()),
        );
    }

    /// A long-running job's progress, pushed to `user`'s jobs destination. A final
    /// status ("done" or "failed") is stored first as a notification (idempotent per
    /// job and status), then both are published. Returns (delivered, notification).
    pub async fn job_progress(
        &self,
        job: &JobProgress,
        caller: &str,
    ) -> Result<(usize, Option<Created>), NotifyError> {
        if job.id.is_empty() || job.id.len() > MAX_JOB_ID {
            return Err(NotifyError::Invalid(format!(
                "the job id must be 1 to {MAX_JOB_ID} bytes"
            )));
        }
        if let Some(result) = &job.result {
            payload_text(result, &self.config)?;
        }
        if job.user.is_empty() || job.user.len() > MAX_USER || job.user == EVERYONE {
            return Err(NotifyError::Invalid(format!(
                "'user' must name one user (1 to {MAX_USER} bytes, not '*')"
            )));
        }
        if !(0.0..=100.0).contains(&job.percent) {
            return Err(NotifyError::Invalid(
                "'percent' must be between 0 and 100".into(),
            ));
        }
        if job.status.is_empty() || job.status.len() > 50 {
            return Err(NotifyError::Invalid(
                "'status' must be 1 to 50 bytes".into(),
            ));
        }
        let final_status = matches!(job.status.as_str(), "done" | "failed");
        let created = if final_status {
            let message = job.message.clone().unwrap_or_else(|| {
                if job.status == "done" {
                    format!("Job {} is done.", job.id)
                } else {
                    format!("Job {} failed.", job.id)
                }
            });
            Some(
                self.notify(NewNotification {
                    to: Recipients::Users(vec![job.user.clone()]),
                    kind: format!("job.{}", job.status),
                    title: job
                        .title
                        .clone()
                        .unwrap_or_else(|| format!("Job {}", job.id)),
                    message,
                    redirect_path: job.redirect_path.clone(),
                    payload: Some(json!({
                        "jobId": job.id,
                        "status": job.status,
                        "result": job.result,
                    })),
                    idempotency_key: Some(format!("job:{}:{}", job.id, job.status)),
                    caller: caller.to_owned(),
                })
                .await?,
            )
        } else {
            None
        };
        let body = json!({
            "event": "job",
            "jobId": job.id,
            "memberId": job.user,
            "percent": job.percent,
            "status": job.status,
            "result": job.result,
            "notificationId": created.as_ref().and_then(|c| c.notifications.first()).map(|n| n.id),
        });
        let delivered = self.messaging.send_to_user(
            &job.user,
            &self.config.jobs_destination,
            &event_headers("job"),
            Bytes::from(body.to_string()),
        );
        Ok((delivered, created))
    }

    /// Retention: deletes read notifications (and broadcasts) older than
    /// `notifications.retention`, every `notifications.retention_interval`, until
    /// `shutdown`. A zero retention keeps everything.
    pub fn spawn_retention(self: &Arc<Self>, shutdown: CancellationToken) {
        let retention = self.config.retention;
        if retention.is_zero() {
            return;
        }
        let every = self.config.retention_interval.max(Duration::from_secs(1));
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if !this.is_ready() {
                    continue;
                }
                let cutoff = now_ms() - retention.as_millis() as i64;
                match this.store.purge(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "notification retention"),
                    Err(e) => tracing::warn!(error = %e, "notification retention failed"),
                }
            }
        });
    }
}

/// `POST /api/jobs/{id}/progress`.
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"user": "alice", "percent": 100, "status": "done", "result": {"summary": "42 pages"}}))]
pub struct JobProgress {
    #[serde(skip)]
    pub id: String,
    #[schema(min_length = 1)]
    pub user: String,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub percent: f64,
    /// `done` and `failed` are final: stored as a notification too.
    #[schema(min_length = 1)]
    pub status: String,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub redirect_path: Option<String>,
}

/// Checks `n` against the field limits and the budgets; returns its distinct
/// recipients and its payload as JSON text.
fn validate(
    n: &NewNotification,
    config: &NotificationsConfig,
) -> Result<(Vec<String>, Option<String>), NotifyError> {
    let bad = |m: String| Err(NotifyError::Invalid(m));
    let recipients = match &n.to {
        Recipients::Everyone => vec![EVERYONE.to_owned()],
        Recipients::Users(users) => {
            if users.is_empty() {
                return bad("no recipient: give 'user', 'users' or 'broadcast': true".into());
            }
            if users.len() > config.max_recipients {
                return Err(too_large(
                    "notifications.max_recipients",
                    format!(
                        "{} users exceed notifications.max_recipients ({} per request)",
                        users.len(),
                        config.max_recipients
                    ),
                ));
            }
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::with_capacity(users.len());
            for (i, u) in users.iter().enumerate() {
                if u.is_empty() || u.len() > MAX_USER || u == EVERYONE {
                    return bad(format!(
                        "user {i}: a user id is 1 to {MAX_USER} bytes and not '*'"
                    ));
                }
                if seen.insert(u.as_str()) {
                    out.push(u.clone());
                }
            }
            out
        }
    };
    if n.message.is_empty() {
        return bad("'message' must not be empty".into());
    }
    if n.message.len() > config.max_message {
        return Err(too_large(
            "notifications.max_message",
            format!(
                "'message' ({} bytes) exceeds notifications.max_message ({} bytes)",
                n.message.len(),
                config.max_message
            ),
        ));
    }
    if n.kind.is_empty() || n.kind.len() > MAX_KIND {
        return bad(format!("'type' must be 1 to {MAX_KIND} bytes"));
    }
    if n.title.len() > MAX_TITLE {
        return bad(format!("'title' must be at most {MAX_TITLE} bytes"));
    }
    if let Some(r) = &n.redirect_path {
        if r.len() > MAX_REDIRECT {
            return bad(format!(
                "'redirectPath' must be at most {MAX_REDIRECT} bytes"
            ));
        }
        if !safe_redirect(r) {
            return bad(
                "'redirectPath' must be a path on this site ('/…', not '//…') or an http(s):// URL, without control characters"
                    .into(),
            );
        }
    }
    if let Some(k) = &n.idempotency_key
        && (k.is_empty() || k.len() > MAX_KEY)
    {
        return bad(format!("the idempotency key must be 1 to {MAX_KEY} bytes"));
    }
    let payload = match &n.payload {
        None => None,
        Some(p) => Some(payload_text(p, config)?),
    };
    Ok((recipients, payload))
}

/// `payload` as JSON text, within `notifications.max_payload`.
fn payload_text(payload: &Value, config: &NotificationsConfig) -> Result<String, NotifyError> {
    let text = payload.to_string();
    if text.len() > config.max_payload {
        return Err(too_large(
            "notifications.max_payload",
            format!(
                "'payload' ({} bytes of JSON) exceeds notifications.max_payload ({} bytes)",
                text.len(),
                config.max_payload
            ),
        ));
    }
    Ok(text)
}

fn too_large(limit: &'static str, message: String) -> NotifyError {
    crate::ops::metrics::limit_hit(limit);
    NotifyError::TooLarge { limit, message }
}

/// Whether the web UI may make `r` a link: a path on this site (one `/`, so not a
/// scheme-relative `//host` nor `/\host`, which browsers read as `//host`), or an
/// absolute http(s) URL. Anything else (`javascript:`, `data:`, …) would run in the
/// page that shows it. Control characters are refused because browsers drop tabs and
/// newlines inside URLs, which would let `/\t/host` become `//host`.
pub fn safe_redirect(r: &str) -> bool {
    if r.chars().any(char::is_control) {
        return false;
    }
    if let Some(rest) = r.strip_prefix('/') {
        return !rest.starts_with(['/', '\\']);
    }
    let Some((scheme, rest)) = r.split_once("://") else {
        return false;
    };
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
        && !rest.is_empty()
}

/// The stored form of `caller`'s idempotency key: `{len}:{caller}:{key}` (the length
/// makes it unambiguous), or, when that would not fit the column, `sha1:` and the
/// hash of it. The key is unique per recipient in the table, so a key is scoped to
/// one caller and one recipient.
fn scoped_key(caller: &str, key: &str) -> String {
    let scoped = format!("{}:{caller}:{key}", caller.len());
    if scoped.len() <= MAX_KEY {
        scoped
    } else {
        format!("sha1:{}", sha1_smol::Sha1::from(scoped.as_bytes()).digest())
    }
}

/// A notification as clients see it, in the REST API and in the live message:
/// the Spring notification DTO's {memberId, notificationId, message, redirectPath} plus the rest.
/// `memberId` is null and `broadcast` true for a broadcast.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Notification)]
pub(crate) struct View<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    notification_id: i64,
    member_id: Option<&'a str>,
    broadcast: bool,
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    message: &'a str,
    redirect_path: Option<&'a str>,
    payload: Value,
    created_at: String,
    read: bool,
    read_at: Option<String>,
}

/// The JSON of a stored notification (`event` is set on live messages only).
pub fn view(row: &Stored) -> Value {
    to_json(row, None)
}

fn message_json(row: &Stored, event: &str) -> Value {
    to_json(row, Some(event))
}

fn to_json(row: &Stored, event: Option<&str>) -> Value {
    let broadcast = row.recipient == EVERYONE;
    serde_json::to_value(View {
        event,
        notification_id: row.id,
        member_id: (!broadcast).then_some(row.recipient.as_str()),
        broadcast,
        kind: &row.kind,
        title: &row.title,
        message: &row.message,
        redirect_path: row.redirect_path.as_deref(),
        payload: row
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(Value::Null),
        created_at: rfc3339(row.created_at),
        read: row.read_at.is_some(),
        read_at: row.read_at.map(rfc3339),
    })
    .unwrap_or(Value::Null)
}

/// MESSAGE headers: JSON, and `herald-event` (notification, read or job) so a client
/// can tell them apart without parsing.
fn event_headers(event: &str) -> Headers {
    let mut h = Headers::new();
    h.push("content-type", "application/json");
    h.push("herald-event", event);
    h
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_keys_never_collide_across_callers() {
        // The length prefix keeps "a" + "b:c" apart from "a:b" + "c".
        assert_ne!(scoped_key("a", "b:c"), scoped_key("a:b", "c"));
        assert_ne!(scoped_key("", "k"), scoped_key("x", "k"));
        assert_eq!(scoped_key("svc", "k"), scoped_key("svc", "k"));
        // Too long for the column: hashed, still per caller, and within it.
        let long = "k".repeat(MAX_KEY);
        let (a, b) = (scoped_key("one", &long), scoped_key("two", &long));
        assert!(a.starts_with("sha1:") && a.len() <= MAX_KEY, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn only_site_paths_and_http_urls_are_safe_redirects() {
        for ok in ["/", "/a/b?c#d", "https://x.example/", "HTTP://x"] {
            assert!(safe_redirect(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "//x",
            "/\\x",
            "/a\tb",
            "",
            "x",
            "https://",
        ] {
            assert!(!safe_redirect(bad), "{bad}");
        }
    }
}
