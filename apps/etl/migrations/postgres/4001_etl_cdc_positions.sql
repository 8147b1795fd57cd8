-- Where each CDC client stopped reading the binlog: written only after Kafka acknowledged every
-- change before that position.
CREATE TABLE IF NOT EXISTS etl_cdc_positions (
    client_id TEXT PRIMARY KEY,
    binlog_file TEXT NOT NULL,
    binlog_position BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
