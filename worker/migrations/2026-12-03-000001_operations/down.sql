DROP TABLE IF EXISTS sync_runs;
DROP TABLE IF EXISTS dead_lettered_events;
DROP INDEX IF EXISTS processed_events_subject;
ALTER TABLE processed_events
    DROP COLUMN IF EXISTS last_duplicate_at,
    DROP COLUMN IF EXISTS duplicates,
    DROP COLUMN IF EXISTS subject_id;
