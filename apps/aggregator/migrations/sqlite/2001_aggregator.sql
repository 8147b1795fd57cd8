-- The log aggregator. Versions 2000-2099 belong to the aggregator app.
CREATE TABLE IF NOT EXISTS agg_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    topic       TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    timestamp   TEXT NOT NULL,
    source      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    received_at TEXT NOT NULL,
    UNIQUE (topic, event_id)
);
CREATE INDEX IF NOT EXISTS agg_events_topic_newest ON agg_events (topic, id DESC);

CREATE TABLE IF NOT EXISTS agg_topics (topic TEXT PRIMARY KEY);

-- Counters, sharded over slots so concurrent batches do not queue on one row; /stats sums them.
CREATE TABLE IF NOT EXISTS agg_stats (
    slot              INTEGER PRIMARY KEY,
    received          INTEGER NOT NULL DEFAULT 0,
    unique_processed  INTEGER NOT NULL DEFAULT 0,
    duplicate_dropped INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO agg_stats (slot)
VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9), (10), (11), (12), (13), (14), (15);
