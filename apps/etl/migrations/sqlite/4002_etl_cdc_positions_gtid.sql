-- MariaDB's GTID position (`0-1-1234`, one GTID per domain) at the stored file and offset; empty
-- on servers whose GTIDs are not tracked.
ALTER TABLE etl_cdc_positions ADD COLUMN gtid TEXT;
