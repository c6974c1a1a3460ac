-- The relay's marks as heap-only (HOT) updates. Marking a change published used to update an
-- indexed column (two partial indexes named `published_at`), so every mark wrote a new tuple
-- and an entry in each of the table's four indexes, while the worker was inserting. Now no
-- index names `published_at`: with room left in each page (fillfactor 50; a change is updated
-- once, soon after it is written), a mark rewrites the tuple in its page and touches no index.
--
-- What the indexes answered, the relay's floor answers: every change with `seq` at or below
-- `published_through` is published (marks cover a prefix of `seq`, which is commit order), so
-- the unpublished rows are found from there along the primary key.
--
-- A rolling update mixes this release with the one before, whose queries stay correct without
-- the two indexes (only slower): its relay marks without raising the stored floor (a new leader
-- then walks from a lower floor), and while it leads it looks for unpublished rows from the
-- start of the table. Nothing is dropped that the release before needs to be right.

CREATE TABLE change_relay (
    singleton          boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    published_through  bigint      NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
INSERT INTO change_relay (published_through)
SELECT COALESCE((SELECT min(seq) - 1 FROM changes WHERE published_at IS NULL),
                (SELECT max(seq) FROM changes),
                0);

DROP INDEX changes_unpublished;
DROP INDEX changes_published_at;
ALTER TABLE changes SET (fillfactor = 50);
