-- Erasure (HARD_DELETE) reaches every copy of a user's personal data. The apply transaction
-- scrubs what it can find by index (audit_log, held_events, dead_lettered_events) and notes the
-- user here; the leading relay's retention pass then scrubs the user's earlier states from the
-- `changes` outbox (a scan it does once for every user erased since its last pass) and deletes
-- the note.
CREATE TABLE erasures_pending (
    organization_id   text        NOT NULL,
    directory_user_id text        NOT NULL,
    erased_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, directory_user_id)
);
