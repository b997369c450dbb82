//! PostgreSQL backend: `postgres://user@host:5432/db`. The payload is `jsonb`.

use sqlx::Postgres;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::model::{Draft, EVERYONE, MarkRead, PoolSettings, Stored};
use super::sql::{Dialect, bind_notifications, returning_insert_batch, shared_methods};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    const DIALECT: Dialect = Dialect::Postgres;

    pub(super) fn connect_lazy(
        url: &str,
        settings: &PoolSettings,
    ) -> Result<PostgresStore, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy(url)?;
        Ok(PostgresStore { pool })
    }

    returning_insert_batch!(Postgres);
    shared_methods!();
}
