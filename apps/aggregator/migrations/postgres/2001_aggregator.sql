-- The log aggregator. Versions 2000-2099 belong to the aggregator app.
CREATE TABLE IF NOT EXISTS agg_events (
    id          BIGSERIAL   PRIMARY KEY,
    topic       TEXT        NOT NULL,
    event_id    TEXT        NOT NULL,
    timestamp   TIMESTAMPTZ NOT NULL,
    source      TEXT        NOT NULL,
    payload     JSONB       NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    UNIQUE (topic, event_id)
);
CREATE INDEX IF NOT EXISTS agg_events_topic_newest ON agg_events (topic, id DESC);

CREATE TABLE IF NOT EXISTS agg_topics (topic TEXT PRIMARY KEY);

-- Counters, sharded over slots so concurrent batches do not queue on one row; /stats sums them.
CREATE TABLE IF NOT EXISTS agg_stats (
    slot              INTEGER PRIMARY KEY,
    received          BIGINT NOT NULL DEFAULT 0,
    unique_processed  BIGINT NOT NULL DEFAULT 0,
    duplicate_dropped BIGINT NOT NULL DEFAULT 0
);
INSERT INTO agg_stats (slot) SELECT generate_series(0, 15) ON CONFLICT DO NOTHING;
