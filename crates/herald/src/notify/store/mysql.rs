//! MySQL / MariaDB backend (what Spring notification services most often use): `mysql://user:pass@host:3306/db`
//! (`mariadb://` is accepted as a synonym).

use sqlx::MySql;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};

use super::model::{Draft, EVERYONE, MAX_ROWS_PER_INSERT, MarkRead, PoolSettings, Stored};
use super::sql::{Dialect, bind_notifications, shared_methods};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");

#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
}

impl MySqlStore {
    const DIALECT: Dialect = Dialect::MySql;

    pub(super) fn connect_lazy(
        url: &str,
        settings: &PoolSettings,
    ) -> Result<MySqlStore, sqlx::Error> {
        let pool = MySqlPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy(url)?;
        Ok(MySqlStore { pool })
    }

    /// One multi-row `INSERT`. MySQL has no `RETURNING`: `LAST_INSERT_ID()` is the
    /// first row's id, and InnoDB gives the rows of one multi-row insert consecutive
    /// ids (`auto_increment_increment` apart) unless `innodb_autoinc_lock_mode = 2`
    /// interleaves concurrent inserts. So the ids are read back inside the transaction
    /// and checked; when they are not this batch's rows, `None` asks for one row per
    /// statement instead.
    async fn insert_batch(
        tx: &mut sqlx::Transaction<'_, MySql>,
        recipients: &[String],
        d: &Draft,
    ) -> Result<Option<Vec<(i64, String)>>, sqlx::Error> {
        let n = recipients.len();
        let sql = Self::sql().insert_notifications(n);
        let query =
            sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(n == 1 || n == MAX_ROWS_PER_INSERT);
        let done = bind_notifications!(query, recipients, d)
            .execute(&mut **tx)
            .await?;
        let first = done.last_insert_id() as i64;
        if let [only] = recipients {
            return Ok(Some(vec![(first, only.clone())]));
        }
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, recipient FROM notifications \
             WHERE id >= ? AND id <= ? + (? - 1) * @@auto_increment_increment ORDER BY id",
        )
        .bind(first)
        .bind(first)
        .bind(n as i64)
        .fetch_all(&mut **tx)
        .await?;
        let ours = rows.len() == n
            && rows
                .iter()
                .zip(recipients)
                .all(|((_, got), sent)| got == sent);
        if !ours {
            tracing::warn!(
                "a multi-row insert's ids were not consecutive; inserting one row per statement"
            );
        }
        Ok(ours.then_some(rows))
    }

    shared_methods!();
}
