-- Directory state mirrored from Scalekit. Keys are Scalekit ids; every table carries
-- organization_id. Rows that events change keep (source_updated_at, source_event_id): the
-- version of the event that last changed them, so older events change nothing.

CREATE TABLE directories (
    organization_id    text        NOT NULL,
    id                 text        NOT NULL,
    provider           text,
    directory_type     text,
    enabled            boolean     NOT NULL,
    last_synced_at     timestamptz,
    source_updated_at  timestamptz NOT NULL,
    source_event_id    text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE directory_users (
    organization_id    text        NOT NULL,
    directory_user_id  text        NOT NULL,
    directory_id       text,
    email              text,
    given_name         text,
    family_name        text,
    display_name       text,
    preferred_username text,
    active             boolean     NOT NULL,
    deactivated_at     timestamptz,
    erased_at          timestamptz,
    attributes         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- lifecycle version: the newest event of any kind (decides active / deactivated)
    source_updated_at  timestamptz NOT NULL,
    source_event_id    text        NOT NULL,
    -- profile version: the newest user_created/updated (decides the profile columns)
    profile_updated_at timestamptz,
    profile_event_id   text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, directory_user_id)
);
CREATE INDEX directory_users_email ON directory_users (organization_id, lower(email));
CREATE INDEX directory_users_directory ON directory_users (organization_id, directory_id);

CREATE TABLE directory_groups (
    organization_id    text        NOT NULL,
    directory_group_id text        NOT NULL,
    directory_id       text,
    display_name       text,
    external_id        text,
    deleted_at         timestamptz,
    attributes         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    source_updated_at  timestamptz NOT NULL,
    source_event_id    text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, directory_group_id)
);

CREATE TABLE directory_group_memberships (
    organization_id    text        NOT NULL,
    directory_user_id  text        NOT NULL,
    directory_group_id text        NOT NULL,
    group_name         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, directory_user_id, directory_group_id)
);
CREATE INDEX directory_group_memberships_group
    ON directory_group_memberships (organization_id, directory_group_id);

CREATE TABLE user_roles (
    organization_id    text        NOT NULL,
    directory_user_id  text        NOT NULL,
    role_name          text        NOT NULL,
    source             text        NOT NULL CHECK (source IN ('scalekit', 'mapping')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, directory_user_id, role_name, source)
);

CREATE TABLE processed_events (
    event_id           text        PRIMARY KEY,
    webhook_id         text,
    event_type         text        NOT NULL,
    organization_id    text,
    occurred_at        timestamptz,
    source             text        NOT NULL,
    outcome            text        NOT NULL,
    processed_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

CREATE TABLE audit_log (
    id                 bigserial   PRIMARY KEY,
    event_id           text        NOT NULL,
    organization_id    text        NOT NULL,
    entity_type        text        NOT NULL,
    entity_id          text        NOT NULL,
    action             text        NOT NULL,
    before             jsonb,
    after              jsonb,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_entity ON audit_log (organization_id, entity_type, entity_id);
