-- Notifications (issue [notify]). One row per recipient; a broadcast is one row with
-- recipient '*'. Read state lives in notification_reads, one row per (user, notification),
-- so a broadcast has per-user read state. Times are milliseconds since the Unix epoch.
-- utf8mb4_bin: user ids and keys compare exactly, as on SQLite and PostgreSQL.
CREATE TABLE notifications (
    id              BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    recipient       VARCHAR(255)  NOT NULL,
    kind            VARCHAR(100)  NOT NULL,
    title           VARCHAR(255)  NOT NULL DEFAULT '',
    message         TEXT          NOT NULL,
    redirect_path   VARCHAR(1024) NULL,
    payload         LONGTEXT      NULL,
    idempotency_key VARCHAR(255)  NULL,
    created_at      BIGINT        NOT NULL,
    KEY notifications_recipient_id (recipient, id),
    UNIQUE KEY notifications_idempotency (idempotency_key, recipient),
    KEY notifications_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE notification_reads (
    user_id         VARCHAR(255) NOT NULL,
    notification_id BIGINT       NOT NULL,
    read_at         BIGINT       NOT NULL,
    PRIMARY KEY (user_id, notification_id),
    KEY notification_reads_notification (notification_id),
    CONSTRAINT notification_reads_fk FOREIGN KEY (notification_id)
        REFERENCES notifications (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
