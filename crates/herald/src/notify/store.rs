//! [`NotificationStore`]: one typed sqlx pool per backend, side by side
//! (`store_sqlite.rs`, `store_mysql.rs`, `store_postgres.rs`), each with its own
//! migrations under `crates/herald/migrations/{sqlite,mysql,postgres}/`. The backend is
//! chosen by the URL's scheme: `sqlite:` (or a plain file path), `mysql:`/`mariadb:`,
//! `postgres:`/`postgresql:`.
//!
//! Rows: one per recipient, a broadcast is one row with recipient [`EVERYONE`]. Read
//! state is `notification_reads` (user, notification): per user, so broadcasts have it too.

use std::time::Duration;

use super::store_mysql::MySqlStore;
use super::store_postgres::PostgresStore;
use super::store_sqlite::SqliteStore;

/// The recipient of a broadcast row.
pub const EVERYONE: &str = "*";

/// A notification to insert (for each of several recipients).
#[derive(Clone, Debug)]
pub struct Draft {
    pub kind: String,
    pub title: String,
    pub message: String,
    pub redirect_path: Option<String>,
    /// JSON text.
    pub payload: Option<String>,
    pub idempotency_key: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A stored notification as one user sees it (`read_at` is that user's).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Stored {
    pub id: i64,
    pub recipient: String,
    pub kind: String,
    pub title: String,
    pub message: String,
    pub redirect_path: Option<String>,
    pub payload: Option<String>,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

#[derive(Debug)]
pub struct Inserted {
    pub rows: Vec<Stored>,
    /// The idempotency key had been used: `rows` are the earlier notifications and
    /// nothing new was written.
    pub duplicate: bool,
}

/// What marking one notification read found.
#[derive(Debug, PartialEq, Eq)]
pub enum MarkRead {
    /// No such notification for this user.
    NotFound,
    AlreadyRead,
    Marked,
}

/// Pool settings shared by the backends.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum NotificationStore {
    Sqlite(SqliteStore),
    MySql(MySqlStore),
    Postgres(PostgresStore),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            NotificationStore::Sqlite($s) => $e,
            NotificationStore::MySql($s) => $e,
            NotificationStore::Postgres($s) => $e,
        }
    };
}

impl NotificationStore {
    /// Opens the pool for `url` and runs that backend's migrations.
    pub async fn open(url: &str, settings: &PoolSettings) -> Result<NotificationStore, sqlx::Error> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        Ok(match scheme {
            "mysql" | "mariadb" => {
                let url = url.replacen("mariadb:", "mysql:", 1);
                NotificationStore::MySql(MySqlStore::open(&url, settings).await?)
            }
            "postgres" | "postgresql" => {
                NotificationStore::Postgres(PostgresStore::open(url, settings).await?)
            }
            _ => NotificationStore::Sqlite(SqliteStore::open(url, settings).await?),
        })
    }

    /// "sqlite", "mysql" or "postgres".
    pub fn backend(&self) -> &'static str {
        match self {
            NotificationStore::Sqlite(_) => "sqlite",
            NotificationStore::MySql(_) => "mysql",
            NotificationStore::Postgres(_) => "postgres",
        }
    }

    /// Inserts `draft` once per recipient in one transaction. With an idempotency key
    /// that was used before, inserts nothing and returns the earlier rows.
    pub async fn insert(&self, recipients: &[String], draft: &Draft) -> Result<Inserted, sqlx::Error> {
        each!(self, s => s.insert(recipients, draft).await)
    }

    /// `user`'s notifications (their own and broadcasts), newest first, ids below
    /// `before`, at most `limit`, optionally unread only.
    pub async fn list(
        &self,
        user: &str,
        before: Option<i64>,
        limit: i64,
        unread_only: bool,
    ) -> Result<Vec<Stored>, sqlx::Error> {
        let before = before.unwrap_or(i64::MAX);
        each!(self, s => s.list(user, before, limit, unread_only).await)
    }

    pub async fn unread_count(&self, user: &str) -> Result<i64, sqlx::Error> {
        each!(self, s => s.unread_count(user).await)
    }

    pub async fn mark_read(&self, user: &str, id: i64, now: i64) -> Result<MarkRead, sqlx::Error> {
        each!(self, s => s.mark_read(user, id, now).await)
    }

    /// Marks everything `user` has unread; returns the ids it marked.
    pub async fn mark_all_read(&self, user: &str, now: i64) -> Result<Vec<i64>, sqlx::Error> {
        each!(self, s => s.mark_all_read(user, now).await)
    }

    /// Retention: deletes notifications their recipient read before `cutoff`, and
    /// broadcasts created before `cutoff`. Returns how many notifications went.
    pub async fn purge(&self, cutoff: i64) -> Result<u64, sqlx::Error> {
        each!(self, s => s.purge(cutoff).await)
    }

    /// Closes the pool: every later call fails (and the REST API answers 503).
    pub async fn close(&self) {
        each!(self, s => s.close().await)
    }
}

/// The columns every `SELECT` of [`Stored`] lists, `n` being notifications and `r`
/// the reader's row of notification_reads.
pub(super) const COLUMNS: &str = "n.id, n.recipient, n.kind, n.title, n.message, n.redirect_path, n.payload, n.created_at, r.read_at";
