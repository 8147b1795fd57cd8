-- The transactional outbox: events written in the business transaction, published by the relay.
CREATE TABLE IF NOT EXISTS kafkube_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT    NOT NULL,
    msg_key    BLOB,
    payload    BLOB    NOT NULL,
    headers    TEXT    NOT NULL DEFAULT '[]',
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
