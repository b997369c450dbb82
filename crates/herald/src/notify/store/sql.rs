//! The SQL, written once for the three backends, and the macros that expand the
//! methods running it inside each backend over its own typed pool.

use std::sync::LazyLock;

/// Which SQL a backend speaks. The statements below are written with `$n`
/// placeholders, each used once and in ascending order, so that for SQLite and MySQL
/// they become `?` one for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    MySql,
    Postgres,
}

/// The statements of one dialect, made once (see [`Dialect::sql`]).
pub(super) struct Sql {
    dialect: Dialect,
    pub list: String,
    pub list_unread: String,
    pub unread_count: String,
    pub visible: String,
    pub unread_ids: String,
    pub purge_read: String,
    pub purge_broadcasts: String,
    /// [`Sql::insert_reads`] of one row.
    pub mark_read: String,
}

/// The columns every `SELECT` of [`Stored`] lists, `n` being notifications and `r`
/// the reader's row of notification_reads; `{payload}` is the dialect's payload as text.
const COLUMNS: &str = "n.id, n.recipient, n.kind, n.title, n.message, n.redirect_path, {payload}, n.created_at, r.read_at";

/// `user`'s notifications with their read state: `$1` user, `$2` user, `$3` EVERYONE.
const USERS_ROWS: &str = "FROM notifications n \
     LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.user_id = $1 \
     WHERE n.recipient IN ($2, $3)";

const NOTIFICATION_COLUMNS: &str =
    "recipient, kind, title, message, redirect_path, payload, idempotency_key, created_at";
/// Values per row of [`NOTIFICATION_COLUMNS`].
pub(super) const NOTIFICATION_VALUES: usize = 8;
/// Values per row of a notification_reads insert.
pub(super) const READ_VALUES: usize = 3;

impl Dialect {
    pub(super) fn sql(self) -> &'static Sql {
        static SQLITE: LazyLock<Sql> = LazyLock::new(|| Sql::new(Dialect::Sqlite));
        static MYSQL: LazyLock<Sql> = LazyLock::new(|| Sql::new(Dialect::MySql));
        static POSTGRES: LazyLock<Sql> = LazyLock::new(|| Sql::new(Dialect::Postgres));
        match self {
            Dialect::Sqlite => &SQLITE,
            Dialect::MySql => &MYSQL,
            Dialect::Postgres => &POSTGRES,
        }
    }

    /// `$n` placeholders as this dialect writes them (checked: each once, in order).
    fn placeholders(self, sql: &str) -> String {
        if self == Dialect::Postgres {
            return sql.to_owned();
        }
        let mut out = String::with_capacity(sql.len());
        let mut rest = sql;
        let mut expected = 1;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let digits = rest[at + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            let n: usize = rest[at + 1..at + 1 + digits]
                .parse()
                .expect("a $n placeholder");
            assert_eq!(n, expected, "placeholders out of order in {sql}");
            expected += 1;
            out.push('?');
            rest = &rest[at + 1 + digits..];
        }
        out.push_str(rest);
        out
    }

    fn columns(self) -> String {
        let payload = if self == Dialect::Postgres {
            "n.payload::text AS payload"
        } else {
            "n.payload"
        };
        COLUMNS.replace("{payload}", payload)
    }
}

impl Sql {
    fn new(d: Dialect) -> Sql {
        let cols = d.columns();
        let user_rows = |tail: &str| d.placeholders(&format!("{USERS_ROWS} {tail}"));
        let mut sql = Sql {
            dialect: d,
            list: format!("SELECT {cols} {}", user_rows("AND n.id < $4 ORDER BY n.id DESC LIMIT $5")),
            list_unread: format!(
                "SELECT {cols} {}",
                user_rows("AND n.id < $4 AND r.read_at IS NULL ORDER BY n.id DESC LIMIT $5")
            ),
            unread_count: format!("SELECT COUNT(*) {}", user_rows("AND r.read_at IS NULL")),
            visible: d.placeholders("SELECT id FROM notifications WHERE id = $1 AND recipient IN ($2, $3)"),
            unread_ids: format!("SELECT n.id {}", user_rows("AND r.read_at IS NULL ORDER BY n.id")),
            purge_read: d.placeholders(
                "DELETE FROM notifications WHERE recipient <> $1 AND EXISTS (SELECT 1 FROM notification_reads r \
                 WHERE r.notification_id = notifications.id AND r.user_id = notifications.recipient AND r.read_at < $2)",
            ),
            purge_broadcasts: d.placeholders("DELETE FROM notifications WHERE recipient = $1 AND created_at < $2"),
            mark_read: String::new(),
        };
        sql.mark_read = sql.insert_reads(1);
        sql
    }

    /// `rows` placeholder tuples of `width` values, `(… , …), (… , …)`; `cast` is what
    /// follows the placeholder of column `i` (PostgreSQL's `::jsonb` for the payload).
    fn values(&self, rows: usize, width: usize, cast: impl Fn(usize) -> &'static str) -> String {
        let mut out = String::with_capacity(rows * width * 6);
        let mut n = 0;
        for row in 0..rows {
            out.push_str(if row == 0 { "(" } else { ", (" });
            for col in 0..width {
                n += 1;
                if col > 0 {
                    out.push_str(", ");
                }
                if self.dialect == Dialect::Postgres {
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    out.push('?');
                }
                out.push_str(cast(col));
            }
            out.push(')');
        }
        out
    }

    /// The rows stored under a key (the first value) for any of `recipients` users
    /// (the next values).
    pub(super) fn by_key(&self, recipients: usize) -> String {
        let postgres = self.dialect == Dialect::Postgres;
        let mark = |i: usize| {
            if postgres {
                format!("${i}")
            } else {
                "?".to_owned()
            }
        };
        let users: Vec<String> = (2..recipients + 2).map(mark).collect();
        format!(
            "SELECT {cols} FROM notifications n \
             LEFT JOIN notification_reads r ON r.notification_id = n.id AND r.user_id = n.recipient \
             WHERE n.idempotency_key = {key} AND n.recipient IN ({users}) ORDER BY n.id",
            cols = self.dialect.columns(),
            key = mark(1),
            users = users.join(", "),
        )
    }

    /// One multi-row `INSERT` of `rows` notifications ([`NOTIFICATION_VALUES`] values
    /// each); SQLite and PostgreSQL return `(id, recipient)` of every row.
    pub(super) fn insert_notifications(&self, rows: usize) -> String {
        let postgres = self.dialect == Dialect::Postgres;
        let values = self.values(rows, NOTIFICATION_VALUES, |col| {
            if postgres && col == 5 { "::jsonb" } else { "" }
        });
        let returning = if self.dialect == Dialect::MySql {
            ""
        } else {
            " RETURNING id, recipient"
        };
        format!("INSERT INTO notifications ({NOTIFICATION_COLUMNS}) VALUES {values}{returning}")
    }

    /// One multi-row insert of `rows` read marks (user, notification, read_at) that
    /// skips the ones already there.
    pub(super) fn insert_reads(&self, rows: usize) -> String {
        let values = self.values(rows, READ_VALUES, |_| "");
        if self.dialect == Dialect::MySql {
            format!(
                "INSERT IGNORE INTO notification_reads (user_id, notification_id, read_at) VALUES {values}"
            )
        } else {
            format!(
                "INSERT INTO notification_reads (user_id, notification_id, read_at) VALUES {values} ON CONFLICT DO NOTHING"
            )
        }
    }
}

/// Binds the [`NOTIFICATION_VALUES`] values of each recipient to a query made by
/// [`Sql::insert_notifications`].
macro_rules! bind_notifications {
    ($query:expr, $recipients:expr, $d:expr) => {{
        let mut q = $query;
        for recipient in $recipients {
            q = q
                .bind(recipient)
                .bind(&$d.kind)
                .bind(&$d.title)
                .bind(&$d.message)
                .bind(&$d.redirect_path)
                .bind(&$d.payload)
                .bind(&$d.idempotency_key)
                .bind($d.created_at);
        }
        q
    }};
}
pub(super) use bind_notifications;

/// `insert_batch` for the backends with `RETURNING` (SQLite, PostgreSQL): one
/// multi-row `INSERT … RETURNING id, recipient`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! returning_insert_batch {
    ($db:ty) => {
        async fn insert_batch(
            tx: &mut sqlx::Transaction<'_, $db>,
            recipients: &[String],
            d: &Draft,
        ) -> Result<Option<Vec<(i64, String)>>, sqlx::Error> {
            let n = recipients.len();
            let sql = Self::sql().insert_notifications(n);
            let full = n == $crate::notify::store::model::MAX_ROWS_PER_INSERT;
            let query = sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(n == 1 || full);
            Ok(Some(
                bind_notifications!(query, recipients, d)
                    .fetch_all(&mut **tx)
                    .await?,
            ))
        }
    };
}
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(super) use returning_insert_batch;

/// The methods the three backends share, word for word but for the pool's type:
/// expanded inside `impl XStore`, which has `pool`, `DIALECT` and
/// `insert_batch(tx, recipients, draft) -> Option<Vec<(id, recipient)>>` (`None`: the
/// batch's ids are unknown, insert one row per statement instead).
macro_rules! shared_methods {
    () => {
        fn sql() -> &'static $crate::notify::store::sql::Sql {
            Self::DIALECT.sql()
        }

        /// Connects and runs this backend's migrations (the applied ones are skipped).
        pub(super) async fn migrate(&self) -> Result<(), sqlx::Error> {
            Ok(MIGRATOR.run(&self.pool).await?)
        }

        pub(super) async fn close(&self) {
            self.pool.close().await
        }

        /// Inserts one row per recipient in one transaction, in batches of
        /// `rows_per_insert` rows per statement.
        pub(super) async fn insert_rows(
            &self,
            recipients: &[String],
            d: &Draft,
        ) -> Result<Vec<Stored>, sqlx::Error> {
            let batch = $crate::notify::store::model::rows_per_insert(d);
            if let Some(rows) = self.insert_batches(recipients, d, batch).await? {
                return Ok(rows);
            }
            self.insert_batches(recipients, d, 1).await?.ok_or_else(|| {
                sqlx::Error::Protocol("the database did not tell the id of an inserted row".into())
            })
        }

        async fn insert_batches(
            &self,
            recipients: &[String],
            d: &Draft,
            batch: usize,
        ) -> Result<Option<Vec<Stored>>, sqlx::Error> {
            let mut tx = self.pool.begin().await?;
            let mut rows = Vec::with_capacity(recipients.len());
            for chunk in recipients.chunks(batch.max(1)) {
                let Some(ids) = Self::insert_batch(&mut tx, chunk, d).await? else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                // Recipients are distinct: match each id to its row whatever the order.
                let ids: std::collections::HashMap<String, i64> =
                    ids.into_iter().map(|(id, r)| (r, id)).collect();
                for recipient in chunk {
                    let id = ids.get(recipient).copied().ok_or_else(|| {
                        sqlx::Error::Protocol(format!("no id came back for recipient {recipient}"))
                    })?;
                    rows.push($crate::notify::store::model::stored(id, recipient, d));
                }
            }
            tx.commit().await?;
            Ok(Some(rows))
        }

        pub(super) async fn by_key(
            &self,
            key: &str,
            recipients: &[String],
        ) -> Result<Vec<Stored>, sqlx::Error> {
            let n = recipients.len();
            let full = n == $crate::notify::store::model::MAX_ROWS_PER_INSERT;
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(Self::sql().by_key(n)))
                .persistent(n == 1 || full)
                .bind(key);
            for recipient in recipients {
                q = q.bind(recipient);
            }
            q.fetch_all(&self.pool).await
        }

        pub(super) async fn list(
            &self,
            user: &str,
            before: i64,
            limit: i64,
            unread_only: bool,
        ) -> Result<Vec<Stored>, sqlx::Error> {
            let sql = if unread_only {
                &Self::sql().list_unread
            } else {
                &Self::sql().list
            };
            sqlx::query_as(sql.as_str())
                .bind(user)
                .bind(user)
                .bind(EVERYONE)
                .bind(before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
        }

        pub(super) async fn unread_count(&self, user: &str) -> Result<i64, sqlx::Error> {
            sqlx::query_scalar(Self::sql().unread_count.as_str())
                .bind(user)
                .bind(user)
                .bind(EVERYONE)
                .fetch_one(&self.pool)
                .await
        }

        pub(super) async fn mark_read(
            &self,
            user: &str,
            id: i64,
            now: i64,
        ) -> Result<MarkRead, sqlx::Error> {
            let visible: Option<i64> = sqlx::query_scalar(Self::sql().visible.as_str())
                .bind(id)
                .bind(user)
                .bind(EVERYONE)
                .fetch_optional(&self.pool)
                .await?;
            if visible.is_none() {
                return Ok(MarkRead::NotFound);
            }
            let done = sqlx::query(Self::sql().mark_read.as_str())
                .bind(user)
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
            Ok(if done.rows_affected() > 0 {
                MarkRead::Marked
            } else {
                MarkRead::AlreadyRead
            })
        }

        pub(super) async fn mark_all_read(
            &self,
            user: &str,
            now: i64,
        ) -> Result<Vec<i64>, sqlx::Error> {
            let mut tx = self.pool.begin().await?;
            let ids: Vec<i64> = sqlx::query_scalar(Self::sql().unread_ids.as_str())
                .bind(user)
                .bind(user)
                .bind(EVERYONE)
                .fetch_all(&mut *tx)
                .await?;
            for chunk in ids.chunks($crate::notify::store::model::MAX_ROWS_PER_INSERT) {
                let full = chunk.len() == $crate::notify::store::model::MAX_ROWS_PER_INSERT;
                let mut q = sqlx::query(sqlx::AssertSqlSafe(Self::sql().insert_reads(chunk.len())))
                    .persistent(full || chunk.len() == 1);
                for id in chunk {
                    q = q.bind(user).bind(id).bind(now);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(ids)
        }

        pub(super) async fn purge(&self, cutoff: i64) -> Result<u64, sqlx::Error> {
            let read = sqlx::query(Self::sql().purge_read.as_str())
                .bind(EVERYONE)
                .bind(cutoff)
                .execute(&self.pool)
                .await?;
            let broadcasts = sqlx::query(Self::sql().purge_broadcasts.as_str())
                .bind(EVERYONE)
                .bind(cutoff)
                .execute(&self.pool)
                .await?;
            Ok(read.rows_affected() + broadcasts.rows_affected())
        }
    };
}
pub(super) use shared_methods;
