-- The deprovisioning brake (worker/src/brake/): per organization, whether it is engaged, and the
-- deactivating events it holds (in arrival order, `seq`) until an operator releases or discards
-- them. A held event keeps its `processed_events` row (outcome `held`), so redeliveries stay
-- duplicates.

CREATE TABLE deprovision_brakes (
    organization_id text        PRIMARY KEY,
    engaged_at      timestamptz,
    -- deactivations before this no longer count towards the window (set by release / discard)
    released_at     timestamptz
);

CREATE TABLE held_events (
    seq               bigserial   PRIMARY KEY,
    event_id          text        NOT NULL UNIQUE,
    organization_id   text        NOT NULL,
    event_type        text        NOT NULL,
    directory_user_id text        NOT NULL,
    email             text,
    occurred_at       timestamptz NOT NULL,
    held_at           timestamptz NOT NULL DEFAULT now(),
    source            text        NOT NULL,
    webhook_id        text,
    -- the event envelope as received
    body              jsonb       NOT NULL
);
CREATE INDEX held_events_org ON held_events (organization_id, seq);

-- The window count: deactivations of one organization, recent first.
CREATE INDEX changes_deprovisions ON changes (organization_id, committed_at)
    WHERE kind IN ('user.deprovisioned', 'user.erased');
