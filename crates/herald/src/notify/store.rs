//! [`NotificationStore`]: one typed sqlx pool per backend, side by side
//! (`store_sqlite.rs`, `store_mysql.rs`, `store_postgres.rs`), each with its own
//! migrations under `crates/herald/migrations/{sqlite,mysql,postgres}/`. The backend is
//! chosen by the URL's scheme: `sqlite:` (or a plain file path), `mysql:`/`mariadb:`,
//! `postgres:`/`postgresql:`.
//!
//! The SQL is written once ([`Sql`], per [`Dialect`]) and so are the methods that run
//! it (`shared_methods!`, expanded in each backend over its own typed pool); a backend
//! file holds only how its pool is opened and how a multi-row `INSERT` tells the new
//! ids (`RETURNING` on SQLite and PostgreSQL, `LAST_INSERT_ID()` on MySQL).
//!
//! Pools connect lazily: a store exists whether or not its database is reachable, and
//! [`NotificationStore::migrate`] is what first needs it (the notifier retries it).
//!
//! Rows: one per recipient, a broadcast is one row with recipient [`EVERYONE`]. Read
//! state is `notification_reads` (user, notification): per user, so broadcasts have it too.

use std::sync::LazyLock;
use std::time::Duration;

#[cfg(feature = "mysql")]
use super::store_mysql::MySqlStore;
#[cfg(feature = "postgres")]
use super::store_postgres::PostgresStore;
#[cfg(feature = "sqlite")]
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
    /// One row per recipient, in the order of the recipients.
    pub rows: Vec<Stored>,
    /// Per row: written now (true), or found under the idempotency key (false).
    pub written: Vec<bool>,
}

impl Inserted {
    /// Every row was there before: nothing was written.
    pub fn duplicate(&self) -> bool {
        !self.written.contains(&true)
    }
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

/// Most rows one multi-row `INSERT` carries.
pub const MAX_ROWS_PER_INSERT: usize = 500;
/// Most bytes of values one multi-row `INSERT` carries (well under MySQL's smallest
/// usual `max_allowed_packet`), so large messages go in smaller batches.
const MAX_BYTES_PER_INSERT: usize = 4 << 20;

/// How many recipients of `d` one `INSERT` statement takes.
pub(super) fn rows_per_insert(d: &Draft) -> usize {
    // The recipient's id is at most 255 bytes; 64 more for the numbers and framing.
    let row = 64
        + 255
        + d.kind.len()
        + d.title.len()
        + d.message.len()
        + d.redirect_path.as_ref().map_or(0, String::len)
        + d.payload.as_ref().map_or(0, String::len)
        + d.idempotency_key.as_ref().map_or(0, String::len);
    (MAX_BYTES_PER_INSERT / row).clamp(1, MAX_ROWS_PER_INSERT)
}

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

// ---------------------------------------------------------------------------------
// The SQL, written once for the three backends.

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
    pub fn by_key(&self, recipients: usize) -> String {
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
    pub fn insert_notifications(&self, rows: usize) -> String {
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
    pub fn insert_reads(&self, rows: usize) -> String {
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

/// The rows of `recipients` in their order: each one found under the key, or the
/// next of `new` (written for the recipients not found, in the same order).
fn merge(
    recipients: &[String],
    mut earlier: std::collections::HashMap<String, Stored>,
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

/// The [`Stored`] row `draft` became for `recipient`.
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
            let full = n == $crate::notify::store::MAX_ROWS_PER_INSERT;
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
        fn sql() -> &'static $crate::notify::store::Sql {
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
            let batch = $crate::notify::store::rows_per_insert(d);
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
                    rows.push($crate::notify::store::stored(id, recipient, d));
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
            let full = n == $crate::notify::store::MAX_ROWS_PER_INSERT;
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
            for chunk in ids.chunks($crate::notify::store::MAX_ROWS_PER_INSERT) {
                let full = chunk.len() == $crate::notify::store::MAX_ROWS_PER_INSERT;
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
