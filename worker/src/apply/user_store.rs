//! Loads and writes users, their memberships and roles, for the user planner.

use super::user_plan::{Memberships, Profile, RoleSet, RoleSource, StoredUser};
use super::version::Version;
use crate::db::schema::{
    directory_group_memberships as m, directory_groups as g, directory_users as u, user_roles as r,
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::BTreeSet;

type UserColumns = (
    bool,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    serde_json::Value,
    DateTime<Utc>,
    String,
    Option<DateTime<Utc>>,
    Option<String>,
);

/// The stored user, with memberships and roles, or `None`.
pub async fn load(
    conn: &mut AsyncPgConnection,
    org: &str,
    user: &str,
) -> QueryResult<Option<StoredUser>> {
    let row: Option<UserColumns> = u::table
        .filter(
            u::organization_id
                .eq(org)
                .and(u::directory_user_id.eq(user)),
        )
        .select((
            u::active,
            u::deactivated_at,
            u::erased_at,
            u::email,
            u::given_name,
            u::family_name,
            u::display_name,
            u::preferred_username,
            u::attributes,
            u::source_updated_at,
            u::source_event_id,
            u::profile_updated_at,
            u::profile_event_id,
        ))
        .first(conn)
        .await
        .optional()?;
    let Some((
        active,
        deactivated_at,
        erased_at,
        email,
        given,
        family,
        display,
        preferred,
        attributes,
        at,
        event_id,
        p_at,
        p_id,
    )) = row
    else {
        return Ok(None);
    };
    let memberships = load_memberships(conn, org, user).await?;
    let roles = load_roles(conn, org, user).await?;
    Ok(Some(StoredUser {
        version: Version::new(at, event_id),
        profile_version: p_at.zip(p_id).map(|(at, id)| Version::new(at, id)),
        active,
        deactivated_at,
        erased: erased_at.is_some(),
        profile: Profile {
            email,
            given_name: given,
            family_name: family,
            display_name: display,
            preferred_username: preferred,
            attributes,
        },
        memberships,
        roles,
    }))
}

pub async fn load_roles(
    conn: &mut AsyncPgConnection,
    org: &str,
    user: &str,
) -> QueryResult<RoleSet> {
    let rows: Vec<(String, String)> = r::table
        .filter(
            r::organization_id
                .eq(org)
                .and(r::directory_user_id.eq(user)),
        )
        .select((r::role_name, r::source))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(name, source)| RoleSource::parse(&source).map(|s| (name, s)))
        .collect())
}

pub async fn load_memberships(
    conn: &mut AsyncPgConnection,
    org: &str,
    user: &str,
) -> QueryResult<Memberships> {
    let rows: Vec<(String, Option<String>)> = m::table
        .filter(
            m::organization_id
                .eq(org)
                .and(m::directory_user_id.eq(user)),
        )
        .select((m::directory_group_id, m::group_name))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Which of `groups` are soft-deleted in the catalogue.
pub async fn deleted_groups(
    conn: &mut AsyncPgConnection,
    org: &str,
    groups: &[&str],
) -> QueryResult<BTreeSet<String>> {
    if groups.is_empty() {
        return Ok(BTreeSet::new());
    }
    let rows: Vec<String> = g::table
        .filter(g::organization_id.eq(org))
        .filter(g::directory_group_id.eq_any(groups))
        .filter(g::deleted_at.is_not_null())
        .select(g::directory_group_id)
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

pub async fn write_role_diff(
    conn: &mut AsyncPgConnection,
    org: &str,
    user: &str,
    added: &RoleSet,
    removed: &RoleSet,
) -> QueryResult<()> {
    for (role, source) in removed {
        diesel::delete(
            r::table.filter(
                r::organization_id
                    .eq(org)
                    .and(r::directory_user_id.eq(user))
                    .and(r::role_name.eq(role))
                    .and(r::source.eq(source.as_str())),
            ),
        )
        .execute(conn)
        .await?;
    }
    for (role, source) in added {
        diesel::insert_into(r::table)
            .values((
                r::organization_id.eq(org),
                r::directory_user_id.eq(user),
                r::role_name.eq(role),
                r::source.eq(source.as_str()),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    Ok(())
}
