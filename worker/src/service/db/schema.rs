//! Diesel table definitions, matching `migrations/`.

diesel::table! {
    directories (organization_id, id) {
        organization_id -> Text,
        id -> Text,
        provider -> Nullable<Text>,
        directory_type -> Nullable<Text>,
        enabled -> Bool,
        last_synced_at -> Nullable<Timestamptz>,
        source_updated_at -> Timestamptz,
        source_event_id -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    directory_users (organization_id, directory_user_id) {
        organization_id -> Text,
        directory_user_id -> Text,
        directory_id -> Nullable<Text>,
        email -> Nullable<Text>,
        given_name -> Nullable<Text>,
        family_name -> Nullable<Text>,
        display_name -> Nullable<Text>,
        preferred_username -> Nullable<Text>,
        active -> Bool,
        deactivated_at -> Nullable<Timestamptz>,
        erased_at -> Nullable<Timestamptz>,
        attributes -> Jsonb,
        source_updated_at -> Timestamptz,
        source_event_id -> Text,
        profile_updated_at -> Nullable<Timestamptz>,
        profile_event_id -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        provisioned_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    directory_groups (organization_id, directory_group_id) {
        organization_id -> Text,
        directory_group_id -> Text,
        directory_id -> Nullable<Text>,
        display_name -> Nullable<Text>,
        external_id -> Nullable<Text>,
        deleted_at -> Nullable<Timestamptz>,
        attributes -> Jsonb,
        source_updated_at -> Timestamptz,
        source_event_id -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    directory_group_memberships (organization_id, directory_user_id, directory_group_id) {
        organization_id -> Text,
        directory_user_id -> Text,
        directory_group_id -> Text,
        group_name -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    user_roles (organization_id, directory_user_id, role_name, source) {
        organization_id -> Text,
        directory_user_id -> Text,
        role_name -> Text,
        source -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    processed_events (event_id) {
        event_id -> Text,
        webhook_id -> Nullable<Text>,
        event_type -> Text,
        organization_id -> Nullable<Text>,
        occurred_at -> Nullable<Timestamptz>,
        source -> Text,
        outcome -> Text,
        processed_at -> Timestamptz,
        subject_id -> Nullable<Text>,
        duplicates -> Int4,
        last_duplicate_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    dead_lettered_events (id) {
        id -> Int8,
        event_id -> Text,
        event_type -> Nullable<Text>,
        organization_id -> Nullable<Text>,
        subject_id -> Nullable<Text>,
        occurred_at -> Nullable<Timestamptz>,
        source -> Nullable<Text>,
        reason -> Text,
        detail -> Nullable<Text>,
        dead_lettered_at -> Timestamptz,
    }
}

diesel::table! {
    sync_runs (id) {
        id -> Int8,
        organization_id -> Text,
        directory_id -> Nullable<Text>,
        started_at -> Timestamptz,
        finished_at -> Timestamptz,
        outcome -> Text,
        users_listed -> Nullable<Int4>,
        users_changed -> Nullable<Int4>,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        event_id -> Text,
        organization_id -> Text,
        entity_type -> Text,
        entity_id -> Text,
        action -> Text,
        before -> Nullable<Jsonb>,
        after -> Nullable<Jsonb>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    changes (seq) {
        seq -> Int8,
        id -> Text,
        kind -> Text,
        organization_id -> Text,
        cause_event_id -> Text,
        occurred_at -> Timestamptz,
        committed_at -> Timestamptz,
        payload -> Jsonb,
        published_at -> Nullable<Timestamptz>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    directories,
    directory_users,
    directory_groups,
    directory_group_memberships,
    user_roles,
    processed_events,
    audit_log,
    changes,
    dead_lettered_events,
    sync_runs,
);
