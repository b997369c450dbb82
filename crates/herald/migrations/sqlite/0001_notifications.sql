-- Notifications (issue [notify]). One row per recipient; a broadcast is one row with
-- recipient '*'. Read state lives in notification_reads, one row per (user, notification),
-- so a broadcast has per-user read state. Times are milliseconds since the Unix epoch.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient       TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    title           TEXT    NOT NULL DEFAULT '',
    message         TEXT    NOT NULL,
    redirect_path   TEXT,
    payload         TEXT,
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX notifications_recipient_id ON notifications (recipient, id);
CREATE UNIQUE INDEX notifications_idempotency ON notifications (idempotency_key, recipient);
CREATE INDEX notifications_created ON notifications (created_at);

CREATE TABLE notification_reads (
    user_id         TEXT    NOT NULL,
    notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    read_at         INTEGER NOT NULL,
    PRIMARY KEY (user_id, notification_id)
);
CREATE INDEX notification_reads_notification ON notification_reads (notification_id);
