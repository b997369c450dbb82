//! SQLite backend: the embedded default (`sqlite://herald.db`, `sqlite::memory:`).
//! A file database runs in WAL mode; `:memory:` is one connection kept open for the
//! pool's life (each SQLite connection would otherwise get its own empty database).

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::store::{Draft, Inserted, MarkRead, PoolSettings, Stored, COLUMNS, EVERYONE};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str, settings: &PoolSettings) -> Result<SqliteStore, sqlx::Error> {
        // A plain path is a file database.
        let url = if url.starts_with("sqlite:") { url.to_owned() } else { format!("sqlite://{url}") };
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(settings.acquire_timeout);
        let mut pool = SqlitePoolOptions::new().acquire_timeout(settings.acquire_timeout);
        if memory {
            pool = pool.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
        } else {
            options = options.journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Normal);
            pool = pool.max_connections(settings.max_connections.max(1));
        }
        let pool = pool.connect_with(options).await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    pub async fn insert(&self, recipients: &[String], draft: &Draft) -> Result<Inserted, sqlx::Error> {
        if let Some(key) = &draft.idempotency_key {
            let earlier = self.by_key(key).await?;
            if !earlier.is_empty() {
                return Ok(Inserted { rows: earlier, duplicate: true });
            }
        }
        match self.insert_all(recipients, draft).await {
            Ok(rows) => Ok(Inserted { rows, duplicate: false }),
            // A concurrent request with the same key won the race.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() && draft.idempotency_key.is_some() => {
                let key = draft.idempotency_key.as_deref().unwrap_or_default();
                Ok(Inserted { rows: self.by_key(key).await?, duplicate: true })
            }
            Err(e) => Err(e),
        }
    }

    async fn insert_all(&self, recipients: &[String], d: &Draft) -> Result<Vec<Stored>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut rows = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO notifications (recipient, kind, title, message, redirect_path, payload, idempotency_key, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(recipient)
            .bind(&d.kind)
            .bind(&d.title)
            .bind(&d.message)
            .bind(&d.redirect_path)
            .bind(&d.payload)
            .bind(&d.idempotency_key)
            .bind(d.created_at)
            .fetch_one(&mut *tx)
            .await?;
            rows.push(stored(id, recipient, d));
        }
        tx.commit().await?;
        Ok(rows)
    }

    async fn by_key(&self, key: &str) -> Result<Vec<Stored>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM notifications n \
             LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.user_id = n.recipient \
             WHERE n.idempotency_key = ? ORDER BY n.id"
        )))
        .bind(key)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn list(&self, user: &str, before: i64, limit: i64, unread_only: bool) -> Result<Vec<Stored>, sqlx::Error> {
        let unread = if unread_only { "AND r.read_at IS NULL" } else { "" };
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM notifications n \
             LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.user_id = ? \
             WHERE n.recipient IN (?, ?) AND n.id < ? {unread} ORDER BY n.id DESC LIMIT ?"
        )))
        .bind(user)
        .bind(user)
        .bind(EVERYONE)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn unread_count(&self, user: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM notifications n \
             LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.user_id = ? \
             WHERE n.recipient IN (?, ?) AND r.read_at IS NULL",
        )
        .bind(user)
        .bind(user)
        .bind(EVERYONE)
        .fetch_one(&self.pool)
        .await
    }

    pub async fn mark_read(&self, user: &str, id: i64, now: i64) -> Result<MarkRead, sqlx::Error> {
        let visible: Option<i64> = sqlx::query_scalar("SELECT id FROM notifications WHERE id = ? AND recipient IN (?, ?)")
            .bind(id)
            .bind(user)
            .bind(EVERYONE)
            .fetch_optional(&self.pool)
            .await?;
        if visible.is_none() {
            return Ok(MarkRead::NotFound);
        }
        let done = sqlx::query("INSERT INTO notification_reads (user_id, notification_id, read_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(user)
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(if done.rows_affected() > 0 { MarkRead::Marked } else { MarkRead::AlreadyRead })
    }

    pub async fn mark_all_read(&self, user: &str, now: i64) -> Result<Vec<i64>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT n.id FROM notifications n \
             LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.user_id = ? \
             WHERE n.recipient IN (?, ?) AND r.read_at IS NULL ORDER BY n.id",
        )
        .bind(user)
        .bind(user)
        .bind(EVERYONE)
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            sqlx::query("INSERT INTO notification_reads (user_id, notification_id, read_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
                .bind(user)
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    pub async fn purge(&self, cutoff: i64) -> Result<u64, sqlx::Error> {
        let read = sqlx::query(
            "DELETE FROM notifications WHERE recipient <> ? AND EXISTS (SELECT 1 FROM notification_reads r \
             WHERE r.notification_id = notifications.id AND r.user_id = notifications.recipient AND r.read_at < ?)",
        )
        .bind(EVERYONE)
        .bind(cutoff)
        .execute(&self.pool)
        .await?;
        let broadcasts = sqlx::query("DELETE FROM notifications WHERE recipient = ? AND created_at < ?")
            .bind(EVERYONE)
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(read.rows_affected() + broadcasts.rows_affected())
    }

    pub async fn close(&self) {
        self.pool.close().await
    }
}

pub(super) fn stored(id: i64, recipient: &str, d: &Draft) -> Stored {
    Stored {
        id,
        recipient: recipient.to_owned(),
        kind: d.kind.clone(),
        title: d.title.clone(),
        message: d.message.clone(),
        redirect_path: d.redirect_path.clone(),
        payload: d.payload.clone(),
        created_at: d.created_at,
        read_at: None,
    }
}
