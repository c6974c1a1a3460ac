-- What operators ask about (`worker explain`, `worker status`).
--
-- Each dedupe row names what its event is about (the directory user, group or directory id),
-- so a user's history is one index lookup, and counts the deliveries that came again after it.
ALTER TABLE processed_events
    ADD COLUMN subject_id        text,
    ADD COLUMN duplicates        integer     NOT NULL DEFAULT 0,
    ADD COLUMN last_duplicate_at timestamptz;
CREATE INDEX processed_events_subject ON processed_events (organization_id, subject_id)
    WHERE subject_id IS NOT NULL;

-- Events the worker dead-lettered, and why. Kept apart from `processed_events`: a dead-lettered
-- event was not applied, and a replay from the dead-letter queue must still apply it.
CREATE TABLE dead_lettered_events (
    id                 bigserial   PRIMARY KEY,
    event_id           text        NOT NULL,
    event_type         text,
    organization_id    text,
    subject_id         text,
    occurred_at        timestamptz,
    source             text,
    reason             text        NOT NULL,
    detail             text,
    dead_lettered_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_lettered_events_subject ON dead_lettered_events (organization_id, subject_id);
CREATE INDEX dead_lettered_events_at ON dead_lettered_events (dead_lettered_at);

-- One row per directory sync run: when, how it ended, how many users it listed and found changed (created, updated, deactivated).
CREATE TABLE sync_runs (
    id                 bigserial   PRIMARY KEY,
    organization_id    text        NOT NULL,
    directory_id       text,
    started_at         timestamptz NOT NULL,
    finished_at        timestamptz NOT NULL DEFAULT now(),
    outcome            text        NOT NULL,
    users_listed       integer,
    users_changed      integer,
    detail             text
);
CREATE INDEX sync_runs_directory ON sync_runs (organization_id, directory_id, finished_at DESC);
