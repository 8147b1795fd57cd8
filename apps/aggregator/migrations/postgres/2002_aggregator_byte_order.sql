-- Topics and event ids are identifiers: compare them byte by byte ("C") instead of by the
-- database's locale. The unique (topic, event_id) check every insert makes gets cheaper, and the
-- order no longer depends on how the server was installed. Indexes on the columns are rebuilt.
ALTER TABLE agg_events
    ALTER COLUMN topic TYPE TEXT COLLATE "C",
    ALTER COLUMN event_id TYPE TEXT COLLATE "C";
ALTER TABLE agg_topics ALTER COLUMN topic TYPE TEXT COLLATE "C";
