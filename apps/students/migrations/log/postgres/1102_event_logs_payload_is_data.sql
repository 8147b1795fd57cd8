-- `payload` holds the event's `data` (the student's row), as seed 000's logger stores it, so its
-- scripts' `payload->>'nim'` finds the row; the envelope is in the other columns already.
-- Rows written before this held the whole event: keep only their `data`.
UPDATE event_logs
SET payload = payload -> 'data'
WHERE jsonb_typeof(payload) = 'object' AND payload ? 'eventId' AND payload ? 'data';
