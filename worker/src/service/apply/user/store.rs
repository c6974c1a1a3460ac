//! Set-based reads and writes of users, their memberships and roles: one statement per table
//! for a whole batch (a single event is a batch of one). Membership and role reads probe the primary key once per user
//! (`LATERAL … OFFSET 0` keeps the planner from hashing a whole table when its statistics are
//! stale, as they are while a fresh database fills up).

use super::plan::{Profile, RoleSource, StoredUser};
use crate::service::apply::version::Version;
use crate::service::db::cached::{cached, column};
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, Bool, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::{BTreeMap, BTreeSet};

/// (organization id, user or group id).
pub type Key = (String, String);

#[derive(diesel::QueryableByName)]
struct UserRow {
    #[diesel(sql_type = Text)]
    organization_id: String,
    #[diesel(sql_type = Text)]
    directory_user_id: String,
    #[diesel(sql_type = Bool)]
    active: bool,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    deactivated_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    erased_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    provisioned_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    email: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    given_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    family_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    display_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    preferred_username: Option<String>,
    #[diesel(sql_type = Jsonb)]
    attributes: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    source_updated_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    source_event_id: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    profile_updated_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    profile_event_id: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct PairRow {
    #[diesel(sql_type = Text)]
    organization_id: String,
    #[diesel(sql_type = Text)]
    directory_user_id: String,
    #[diesel(sql_type = Text)]
    a: String,
    #[diesel(sql_type = Nullable<Text>)]
    b: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    organization_id: String,
    #[diesel(sql_type = Text)]
    id: String,
}

fn split(keys: &[Key]) -> (Vec<&str>, Vec<&str>) {
    keys.iter().map(|(o, u)| (o.as_str(), u.as_str())).unzip()
}

/// The stored users among `keys`, with memberships and roles.
pub async fn load_users(
    conn: &mut AsyncPgConnection,
    keys: &[Key],
) -> diesel::QueryResult<BTreeMap<Key, StoredUser>> {
    let (orgs, users) = split(keys);
    let rows: Vec<UserRow> = cached(diesel::sql_query(
        "SELECT u.organization_id, u.directory_user_id, active, deactivated_at, erased_at, provisioned_at, email, given_name, family_name, display_name, preferred_username, attributes, source_updated_at, source_event_id, profile_updated_at, profile_event_id \
         FROM directory_users u JOIN unnest($1::text[], $2::text[]) AS k(o, id) ON u.organization_id = k.o AND u.directory_user_id = k.id",
    )
    .bind::<Array<Text>, _>(&orgs)
    .bind::<Array<Text>, _>(&users))
    .load(conn)
    .await?;
    let mut out: BTreeMap<Key, StoredUser> = rows
        .into_iter()
        .map(|r| {
            (
                (r.organization_id, r.directory_user_id),
                StoredUser {
                    version: Version::new(r.source_updated_at, r.source_event_id),
                    profile_version: r
                        .profile_updated_at
                        .zip(r.profile_event_id)
                        .map(|(at, id)| Version::new(at, id)),
                    active: r.active,
                    deactivated_at: r.deactivated_at,
                    erased: r.erased_at.is_some(),
                    provisioned: r.provisioned_at.is_some(),
                    profile: Profile {
                        email: r.email,
                        given_name: r.given_name,
                        family_name: r.family_name,
                        display_name: r.display_name,
                        preferred_username: r.preferred_username,
                        attributes: r.attributes.into(),
                    },
                    memberships: BTreeMap::new(),
                    roles: BTreeSet::new(),
                },
            )
        })
        .collect();
    let memberships: Vec<PairRow> = cached(diesel::sql_query(
        "SELECT k.o AS organization_id, k.id AS directory_user_id, m.a, m.b FROM unnest($1::text[], $2::text[]) AS k(o, id) \
         CROSS JOIN LATERAL (SELECT directory_group_id AS a, group_name AS b FROM directory_group_memberships \
         WHERE organization_id = k.o AND directory_user_id = k.id OFFSET 0) m",
    )
    .bind::<Array<Text>, _>(&orgs)
    .bind::<Array<Text>, _>(&users))
    .load(conn)
    .await?;
    for m in memberships {
        if let Some(u) = out.get_mut(&(m.organization_id, m.directory_user_id)) {
            u.memberships.insert(m.a, m.b);
        }
    }
    let roles: Vec<PairRow> = cached(diesel::sql_query(
        "SELECT k.o AS organization_id, k.id AS directory_user_id, r.a, r.b FROM unnest($1::text[], $2::text[]) AS k(o, id) \
         CROSS JOIN LATERAL (SELECT role_name AS a, source AS b FROM user_roles \
         WHERE organization_id = k.o AND directory_user_id = k.id OFFSET 0) r",
    )
    .bind::<Array<Text>, _>(&orgs)
    .bind::<Array<Text>, _>(&users))
    .load(conn)
    .await?;
    for r in roles {
        if let (Some(u), Some(source)) = (
            out.get_mut(&(r.organization_id, r.directory_user_id)),
            r.b.as_deref().and_then(RoleSource::parse),
        ) {
            u.roles.insert((r.a, source));
        }
    }
    Ok(out)
}

/// Which of the (org, group) pairs are soft-deleted.
pub async fn deleted_groups(
    conn: &mut AsyncPgConnection,
    keys: &[Key],
) -> diesel::QueryResult<BTreeSet<Key>> {
    if keys.is_empty() {
        return Ok(BTreeSet::new());
    }
    let (orgs, groups) = split(keys);
    let rows: Vec<KeyRow> = cached(diesel::sql_query(
        "SELECT g.organization_id, g.directory_group_id AS id FROM directory_groups g \
         JOIN unnest($1::text[], $2::text[]) AS k(o, id) ON g.organization_id = k.o AND g.directory_group_id = k.id WHERE g.deleted_at IS NOT NULL",
    )
    .bind::<Array<Text>, _>(&orgs)
    .bind::<Array<Text>, _>(&groups))
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.organization_id, r.id))
        .collect())
}

/// The final state of one user after a batch.
pub struct FinalUser<'a> {
    pub key: &'a Key,
    pub state: &'a StoredUser,
    pub directory_id: Option<&'a str>,
    /// Whether memberships or roles differ from what is stored (only then are they rewritten).
    pub sets_changed: bool,
    /// Whether any membership or role row is stored for the user (read under its lock: only
    /// the user's own writes add rows, so when none were read there is nothing to delete).
    pub had_rows: bool,
}

impl<'a> FinalUser<'a> {
    /// `state` to be written over `stored` (what was read under the user's lock; `None` for a
    /// new user).
    pub fn new(
        key: &'a Key,
        state: &'a StoredUser,
        directory_id: Option<&'a str>,
        stored: Option<&StoredUser>,
    ) -> Self {
        Self {
            key,
            state,
            directory_id,
            sets_changed: stored
                .is_none_or(|s| s.memberships != state.memberships || s.roles != state.roles),
            had_rows: stored.is_some_and(|s| !s.memberships.is_empty() || !s.roles.is_empty()),
        }
    }
}

/// Deletes the memberships and roles of `keys` (to be rewritten).
async fn delete_sets(conn: &mut AsyncPgConnection, keys: &[Key]) -> diesel::QueryResult<()> {
    let (orgs, ids) = split(keys);
    for table in ["directory_group_memberships", "user_roles"] {
        cached(diesel::sql_query(format!(
            "DELETE FROM {table} t USING unnest($1::text[], $2::text[]) AS k(o, id) WHERE t.organization_id = k.o AND t.directory_user_id = k.id"
        ))
        .bind::<Array<Text>, _>(&orgs)
        .bind::<Array<Text>, _>(&ids))
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Writes the final users; replaces the memberships and roles of those whose sets changed.
/// One statement of fixed text for any number of users (kept prepared: see `crate::service::db::cached`).
pub async fn write_users(
    conn: &mut AsyncPgConnection,
    users: &[FinalUser<'_>],
) -> diesel::QueryResult<()> {
    if users.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    cached(
        diesel::sql_query(
            "INSERT INTO directory_users AS d (organization_id, directory_user_id, directory_id, email, given_name, \
             family_name, display_name, preferred_username, active, deactivated_at, erased_at, provisioned_at, attributes, \
             source_updated_at, source_event_id, profile_updated_at, profile_event_id, updated_at) \
             SELECT *, $18 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::text[], $9::bool[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::jsonb[], \
             $14::timestamptz[], $15::text[], $16::timestamptz[], $17::text[]) \
             ON CONFLICT (organization_id, directory_user_id) DO UPDATE SET \
             directory_id = COALESCE(excluded.directory_id, d.directory_id), email = excluded.email, \
             given_name = excluded.given_name, family_name = excluded.family_name, \
             display_name = excluded.display_name, preferred_username = excluded.preferred_username, \
             active = excluded.active, deactivated_at = excluded.deactivated_at, \
             erased_at = CASE WHEN excluded.erased_at IS NULL THEN NULL ELSE COALESCE(d.erased_at, excluded.erased_at) END, \
             provisioned_at = COALESCE(d.provisioned_at, excluded.provisioned_at), \
             attributes = excluded.attributes, source_updated_at = excluded.source_updated_at, \
             source_event_id = excluded.source_event_id, profile_updated_at = excluded.profile_updated_at, \
             profile_event_id = excluded.profile_event_id, updated_at = excluded.updated_at",
        )
        .bind::<Array<Text>, _>(column(users, |f| f.key.0.as_str()))
        .bind::<Array<Text>, _>(column(users, |f| f.key.1.as_str()))
        .bind::<Array<Nullable<Text>>, _>(column(users, |f| f.directory_id))
        .bind::<Array<Nullable<Text>>, _>(column(users, |f| f.state.profile.email.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(column(users, |f| f.state.profile.given_name.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(column(users, |f| f.state.profile.family_name.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(column(users, |f| f.state.profile.display_name.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(column(users, |f| f.state.profile.preferred_username.as_deref()))
        .bind::<Array<Bool>, _>(column(users, |f| f.state.active))
        .bind::<Array<Nullable<Timestamptz>>, _>(column(users, |f| f.state.deactivated_at))
        .bind::<Array<Nullable<Timestamptz>>, _>(column(users, |f| f.state.erased.then_some(now)))
        .bind::<Array<Nullable<Timestamptz>>, _>(column(users, |f| f.state.provisioned.then_some(now)))
        .bind::<Array<Jsonb>, _>(column(users, |f| &*f.state.profile.attributes))
        .bind::<Array<Timestamptz>, _>(column(users, |f| f.state.version.at))
        .bind::<Array<Text>, _>(column(users, |f| f.state.version.event_id.as_str()))
        .bind::<Array<Nullable<Timestamptz>>, _>(column(users, |f| f.state.profile_version.as_ref().map(|v| v.at)))
        .bind::<Array<Nullable<Text>>, _>(column(users, |f| f.state.profile_version.as_ref().map(|v| v.event_id.as_str())))
        .bind::<Timestamptz, _>(now),
    )
    .execute(conn)
    .await?;
    rewrite_sets(conn, users).await
}

/// Replaces the memberships and roles of the users whose sets changed (and only those: rows of
/// an unchanged user are not rewritten).
pub async fn rewrite_sets(
    conn: &mut AsyncPgConnection,
    users: &[FinalUser<'_>],
) -> diesel::QueryResult<()> {
    let users: Vec<&FinalUser<'_>> = users.iter().filter(|f| f.sets_changed).collect();
    let keys: Vec<Key> = users
        .iter()
        .filter(|f| f.had_rows)
        .map(|f| f.key.clone())
        .collect();
    if !keys.is_empty() {
        delete_sets(conn, &keys).await?;
    }
    // (organization, user, group or role, group name or role source) per row.
    let memberships: Vec<(&str, &str, &str, Option<&str>)> = users
        .iter()
        .flat_map(|f| {
            f.state.memberships.iter().map(move |(g, name)| {
                (
                    f.key.0.as_str(),
                    f.key.1.as_str(),
                    g.as_str(),
                    name.as_deref(),
                )
            })
        })
        .collect();
    let roles: Vec<(&str, &str, &str, Option<&str>)> = users
        .iter()
        .flat_map(|f| {
            f.state.roles.iter().map(move |(role, source)| {
                (
                    f.key.0.as_str(),
                    f.key.1.as_str(),
                    role.as_str(),
                    Some(source.as_str()),
                )
            })
        })
        .collect();
    for (rows, sql) in [
        (
            memberships,
            "INSERT INTO directory_group_memberships (organization_id, directory_user_id, directory_group_id, group_name) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
        ),
        (
            roles,
            "INSERT INTO user_roles (organization_id, directory_user_id, role_name, source) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
        ),
    ] {
        if rows.is_empty() {
            continue;
        }
        cached(
            diesel::sql_query(sql)
                .bind::<Array<Text>, _>(column(&rows, |r| r.0))
                .bind::<Array<Text>, _>(column(&rows, |r| r.1))
                .bind::<Array<Text>, _>(column(&rows, |r| r.2))
                .bind::<Array<Nullable<Text>>, _>(column(&rows, |r| r.3)),
        )
        .execute(conn)
        .await?;
    }
    Ok(())
}
