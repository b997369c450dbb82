//! The rows the store reads and writes, and how many go in one statement.

use std::time::Duration;

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
