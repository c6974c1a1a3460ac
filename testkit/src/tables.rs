//! The provisioned state of a test database as plain rows, in a deterministic order and without
//! processing times, so end states compare with `==`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use worker::service::db::schema::{
    directories as d, directory_group_memberships as m, directory_groups as g,
    directory_users as u, user_roles as r,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Tables {
    /// (org, id, enabled, provider)
    pub directories: Vec<(String, String, bool, Option<String>)>,
    /// (org, user, email, given, family, display, active, deactivated_at, erased, attributes)
    pub users: Vec<UserRowDump>,
    /// (org, group, display_name, deleted_at)
    pub groups: Vec<GroupRowDump>,
    /// (org, user, group)
    pub memberships: Vec<(String, String, String)>,
    /// (org, user, role, source)
    pub roles: Vec<(String, String, String, String)>,
}

pub type GroupRowDump = (String, String, Option<String>, Option<DateTime<Utc>>);

pub type UserRowDump = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    Option<DateTime<Utc>>,
    bool,
    serde_json::Value,
);

/// Reads every provisioned table.
pub async fn read(conn: &mut AsyncPgConnection) -> QueryResult<Tables> {
    let directories = d::table
        .select((d::organization_id, d::id, d::enabled, d::provider))
        .order((d::organization_id, d::id))
        .load(conn)
        .await?;
    let users = u::table
        .select((
            u::organization_id,
            u::directory_user_id,
            u::email,
            u::given_name,
            u::family_name,
            u::display_name,
            u::active,
            u::deactivated_at,
            u::erased_at.is_not_null(),
            u::attributes,
        ))
        .order((u::organization_id, u::directory_user_id))
        .load(conn)
        .await?;
    let groups = g::table
        .select((
            g::organization_id,
            g::directory_group_id,
            g::display_name,
            g::deleted_at,
        ))
        .order((g::organization_id, g::directory_group_id))
        .load(conn)
        .await?;
    let memberships = m::table
        .select((
            m::organization_id,
            m::directory_user_id,
            m::directory_group_id,
        ))
        .order((
            m::organization_id,
            m::directory_user_id,
            m::directory_group_id,
        ))
        .load(conn)
        .await?;
    let roles = r::table
        .select((
            r::organization_id,
            r::directory_user_id,
            r::role_name,
            r::source,
        ))
        .order((
            r::organization_id,
            r::directory_user_id,
            r::role_name,
            r::source,
        ))
        .load(conn)
        .await?;
    Ok(Tables {
        directories,
        users,
        groups,
        memberships,
        roles,
    })
}
