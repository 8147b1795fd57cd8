-- The transactional outbox: events written in the business transaction, published by the relay.
CREATE TABLE IF NOT EXISTS kafkube_outbox (
    id         BIGSERIAL   PRIMARY KEY,
    topic      TEXT        NOT NULL,
    msg_key    BYTEA,
    payload    BYTEA       NOT NULL,
    headers    TEXT        NOT NULL DEFAULT '[]',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
