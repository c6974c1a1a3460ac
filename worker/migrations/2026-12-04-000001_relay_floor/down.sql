ALTER TABLE changes RESET (fillfactor);
CREATE INDEX changes_published_at ON changes (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX changes_unpublished ON changes (seq) WHERE published_at IS NULL;
DROP TABLE change_relay;
