//! [`NotificationStore`]: one typed sqlx pool per backend, side by side
//! (`sqlite.rs`, `mysql.rs`, `postgres.rs`), each with its own
//! migrations under `crates/herald/migrations/{sqlite,mysql,postgres}/`. The backend is
//! chosen by the URL's scheme: `sqlite:` (or a plain file path), `mysql:`/`mariadb:`,
//! `postgres:`/`postgresql:`.
//!
//! The SQL is written once (`sql.rs`, per dialect) and so are the methods that run
//! it (`shared_methods!`, expanded in each backend over its own typed pool); a backend
//! file holds only how its pool is opened and how a multi-row `INSERT` tells the new
//! ids (`RETURNING` on SQLite and PostgreSQL, `LAST_INSERT_ID()` on MySQL).
//!
//! Pools connect lazily: a store exists whether or not its database is reachable, and
//! [`NotificationStore::migrate`] is what first needs it (the notifier retries it).
//!
//! Rows: one per recipient, a broadcast is one row with recipient [`EVERYONE`]. Read
//! state is `notification_reads` (user, notification): per user, so broadcasts have it too.

mod model;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(all(test, feature = "sqlite"))]
mod tests;

use std::collections::HashMap;

pub use model::{Draft, EVERYONE, Inserted, MAX_ROWS_PER_INSERT, MarkRead, PoolSettings, Stored};
#[cfg(feature = "mysql")]
use mysql::MySqlStore;
#[cfg(feature = "postgres")]
use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
use sqlite::SqliteStore;

#[cfg(not(any(feature = "sqlite", feature = "mysql", feature = "postgres")))]
compile_error!("herald needs a notification store: enable a feature of sqlite, mysql, postgres");

/// The store of one backend; each is a cargo feature (`sqlite`, `mysql`,
/// `postgres`, all on by default), so a build can leave out the drivers it does not
/// use.
#[derive(Debug, Clone)]
pub enum NotificationStore {
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteStore),
    #[cfg(feature = "mysql")]
    MySql(MySqlStore),
    #[cfg(feature = "postgres")]
    Postgres(PostgresStore),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            #[cfg(feature = "sqlite")]
            NotificationStore::Sqlite($s) => $e,
            #[cfg(feature = "mysql")]
            NotificationStore::MySql($s) => $e,
            #[cfg(feature = "postgres")]
            NotificationStore::Postgres($s) => $e,
        }
    };
}

/// A URL whose backend this build leaves out.
#[allow(dead_code)]
fn not_built(backend: &str) -> sqlx::Error {
    sqlx::Error::Configuration(
        format!("this herald was built without the '{backend}' feature").into(),
    )
}

impl NotificationStore {
    /// The store for `url`, its pool connecting lazily: this fails only when the URL
    /// does not parse, never because the database is down. Use it after
    /// [`migrate`](Self::migrate) succeeded.
    pub fn connect_lazy(
        url: &str,
        settings: &PoolSettings,
    ) -> Result<NotificationStore, sqlx::Error> {
        let _ = settings;
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        Ok(match scheme {
            #[cfg(feature = "mysql")]
            "mysql" | "mariadb" => {
                let url = url.replacen("mariadb:", "mysql:", 1);
                NotificationStore::MySql(MySqlStore::connect_lazy(&url, settings)?)
            }
            #[cfg(not(feature = "mysql"))]
            "mysql" | "mariadb" => return Err(not_built("mysql")),
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => {
                NotificationStore::Postgres(PostgresStore::connect_lazy(url, settings)?)
            }
            #[cfg(not(feature = "postgres"))]
            "postgres" | "postgresql" => return Err(not_built("postgres")),
            #[cfg(feature = "sqlite")]
            _ => NotificationStore::Sqlite(SqliteStore::connect_lazy(url, settings)?),
            #[cfg(not(feature = "sqlite"))]
            _ => return Err(not_built("sqlite")),
        })
    }

    /// Connects and runs the backend's migrations (those already applied are skipped).
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        each!(self, s => s.migrate().await)
    }

    /// [`connect_lazy`](Self::connect_lazy), then [`migrate`](Self::migrate).
    pub async fn open(
        url: &str,
        settings: &PoolSettings,
    ) -> Result<NotificationStore, sqlx::Error> {
        let store = NotificationStore::connect_lazy(url, settings)?;
        store.migrate().await?;
        Ok(store)
    }

    /// "sqlite", "mysql" or "postgres".
    pub fn backend(&self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            NotificationStore::Sqlite(_) => "sqlite",
            #[cfg(feature = "mysql")]
            NotificationStore::MySql(_) => "mysql",
            #[cfg(feature = "postgres")]
            NotificationStore::Postgres(_) => "postgres",
        }
    }

    /// Inserts `draft` once per recipient (recipients must be distinct), all in one
    /// transaction, [`MAX_ROWS_PER_INSERT`] rows per statement. With an idempotency
    /// key (already scoped to its caller), a recipient that has a row under that key
    /// gets that row back instead of a new one: the key is unique per recipient.
    pub async fn insert(
        &self,
        recipients: &[String],
        draft: &Draft,
    ) -> Result<Inserted, sqlx::Error> {
        let Some(key) = &draft.idempotency_key else {
            let rows = each!(self, s => s.insert_rows(recipients, draft).await)?;
            let written = vec![true; rows.len()];
            return Ok(Inserted { rows, written });
        };
        let earlier = self.by_key(key, recipients).await?;
        let missing: Vec<String> = recipients
            .iter()
            .filter(|r| !earlier.contains_key(r.as_str()))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(merge(recipients, earlier, Vec::new()));
        }
        match each!(self, s => s.insert_rows(&missing, draft).await) {
            Ok(new) => Ok(merge(recipients, earlier, new)),
            // A concurrent request with the same key won the race: its rows are
            // committed, so they are all found now.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                let earlier = self.by_key(key, recipients).await?;
                if earlier.len() == recipients.len() {
                    Ok(merge(recipients, earlier, Vec::new()))
                } else {
                    Err(sqlx::Error::Database(e))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The rows stored under `key` for any of `recipients`, by recipient.
    async fn by_key(
        &self,
        key: &str,
        recipients: &[String],
    ) -> Result<std::collections::HashMap<String, Stored>, sqlx::Error> {
        let mut found = std::collections::HashMap::new();
        for chunk in recipients.chunks(MAX_ROWS_PER_INSERT) {
            let rows = each!(self, s => s.by_key(key, chunk).await)?;
            found.extend(rows.into_iter().map(|row| (row.recipient.clone(), row)));
        }
        Ok(found)
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

/// The rows of `recipients` in their order: each one found under the key, or the
/// next of `new` (written for the recipients not found, in the same order).
fn merge(
    recipients: &[String],
    mut earlier: HashMap<String, Stored>,
    new: Vec<Stored>,
) -> Inserted {
    let mut new = new.into_iter();
    let mut rows = Vec::with_capacity(recipients.len());
    let mut written = Vec::with_capacity(recipients.len());
    for recipient in recipients {
        if let Some(row) = earlier.remove(recipient) {
            rows.push(row);
            written.push(false);
        } else if let Some(row) = new.next() {
            rows.push(row);
            written.push(true);
        }
    }
    Inserted { rows, written }
}
