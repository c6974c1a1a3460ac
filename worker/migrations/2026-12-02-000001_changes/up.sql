-- The change feed's outbox: one row per net change, written in the transaction of the change
-- itself; a relay publishes the rows in `seq` order and then sets `published_at`.
-- `seq` is taken under a transaction-scoped advisory lock held until commit, so seq order is
-- commit order (with gaps where a transaction rolled back).

ALTER TABLE directory_users ADD COLUMN provisioned_at timestamptz;
-- Users stored before the feed existed: those that are active, or were deactivated, were
-- active once.
UPDATE directory_users SET provisioned_at = created_at
 WHERE erased_at IS NULL AND (active OR deactivated_at IS NOT NULL);

CREATE TABLE changes (
    seq              bigserial   PRIMARY KEY,
    id               text        NOT NULL DEFAULT ('chg_' || replace(gen_random_uuid()::text, '-', '')) UNIQUE,
    kind             text        NOT NULL,
    organization_id  text        NOT NULL,
    cause_event_id   text        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    committed_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- the kind's part of the body: user / group / directory state, granted, revoked, joined, left
    payload          jsonb       NOT NULL,
    published_at     timestamptz
);
CREATE INDEX changes_unpublished ON changes (seq) WHERE published_at IS NULL;
CREATE INDEX changes_published_at ON changes (published_at) WHERE published_at IS NOT NULL;
