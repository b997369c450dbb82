//! SQLite backend: the embedded default (`sqlite://herald.db`, `sqlite::memory:`).
//! A file database runs in WAL mode; `:memory:` is one connection kept open for the
//! pool's life (each SQLite connection would otherwise get its own empty database).

use std::str::FromStr;

use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::model::{Draft, EVERYONE, MarkRead, PoolSettings, Stored};
use super::sql::{Dialect, bind_notifications, returning_insert_batch, shared_methods};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    const DIALECT: Dialect = Dialect::Sqlite;

    pub(super) fn connect_lazy(
        url: &str,
        settings: &PoolSettings,
    ) -> Result<SqliteStore, sqlx::Error> {
        // A plain path is a file database.
        let url = if url.starts_with("sqlite:") {
            url.to_owned()
        } else {
            format!("sqlite://{url}")
        };
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(settings.acquire_timeout);
        let mut pool = SqlitePoolOptions::new().acquire_timeout(settings.acquire_timeout);
        if memory {
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            pool = pool.max_connections(settings.max_connections.max(1));
        }
        Ok(SqliteStore {
            pool: pool.connect_lazy_with(options),
        })
    }

    returning_insert_batch!(Sqlite);
    shared_methods!();
}
