-- The pull API (`GET /v1/changes`) tells a reader whose cursor points below what retention
-- kept that it must resync (410 `cursor_expired`) instead of answering with a silent gap. The
-- retention pass raises `pruned_through` to the highest `seq` it deleted. For a deployment that
-- pruned before this column existed, everything below the oldest kept row counts as pruned
-- (or, with no row kept, everything published).
ALTER TABLE change_relay ADD COLUMN pruned_through bigint NOT NULL DEFAULT 0;
UPDATE change_relay
   SET pruned_through = COALESCE((SELECT min(seq) - 1 FROM changes), published_through);
