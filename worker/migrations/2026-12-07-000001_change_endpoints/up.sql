-- Push delivery of the change feed (`docs/changes.md`, "Push"): one row per configured
-- endpoint, and its position per organization. Positions move only after the endpoint answered
-- 2xx for the batch that reached them.
CREATE TABLE change_endpoints (
    name             text        PRIMARY KEY,
    -- as configured, credentials removed: for `worker endpoints list`
    url              text        NOT NULL,
    kinds            text[]      NOT NULL DEFAULT '{}',
    -- every change with `seq` at or below it is delivered to this endpoint (or not for it)
    scanned_through  bigint      NOT NULL,
    -- raised by `worker endpoints replay`: a leader's writes carry the generation it loaded,
    -- so a delivery finishing after a replay cannot move a position back up
    generation       bigint      NOT NULL DEFAULT 0,
    paused_at        timestamptz,
    paused_reason    text,
    failing_since    timestamptz,
    last_status      text,
    last_failure_at  timestamptz,
    last_delivered_at timestamptz,
    -- set when the leading worker's configuration no longer names it: retention no longer
    -- waits for it
    retired_at       timestamptz,
    configured_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE change_endpoint_positions (
    endpoint           text        NOT NULL REFERENCES change_endpoints (name) ON DELETE CASCADE,
    organization_id    text        NOT NULL,
    delivered_through  bigint      NOT NULL,
    delivered_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint, organization_id)
);
