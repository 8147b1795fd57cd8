-- The event log written by the event logger. Versions 1100-1199: the students app's log database.
CREATE TABLE IF NOT EXISTS event_logs (
    id                       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id                 TEXT    NOT NULL UNIQUE,
    event_type               TEXT    NOT NULL,
    payload                  TEXT    NOT NULL,
    timestamp_api_sent       TEXT    NOT NULL,
    timestamp_kafka_received TEXT    NOT NULL,
    timestamp_processed      TEXT    NOT NULL,
    kafka_partition          INTEGER NOT NULL,
    kafka_offset             INTEGER NOT NULL,
    consumer                 TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS event_logs_processed ON event_logs (timestamp_processed);
