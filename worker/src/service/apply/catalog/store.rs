//! Loads and writes groups and directories for the catalogue planner.

use super::plan::{DirectoryChange, GroupChange, StoredDirectory, StoredGroup};
use crate::service::apply::version::Version;
use crate::service::db::schema::{
    directories as d, directory_group_memberships as m, directory_groups as g,
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

type GroupColumns = (Option<String>, Option<DateTime<Utc>>, DateTime<Utc>, String);

pub async fn load_group(
    conn: &mut AsyncPgConnection,
    org: &str,
    group: &str,
) -> QueryResult<Option<StoredGroup>> {
    let row: Option<GroupColumns> = g::table
        .filter(
            g::organization_id
                .eq(org)
                .and(g::directory_group_id.eq(group)),
        )
        .select((
            g::display_name,
            g::deleted_at,
            g::source_updated_at,
            g::source_event_id,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(display_name, deleted_at, at, id)| StoredGroup {
        version: Version::new(at, id),
        display_name,
        deleted_at,
    }))
}

pub async fn write_group(
    conn: &mut AsyncPgConnection,
    org: &str,
    group: &str,
    c: &GroupChange,
) -> QueryResult<()> {
    diesel::insert_into(g::table)
        .values((
            g::organization_id.eq(org),
            g::directory_group_id.eq(group),
            g::directory_id.eq(&c.directory_id),
            g::display_name.eq(&c.display_name),
            g::external_id.eq(&c.external_id),
            g::deleted_at.eq(c.deleted_at),
            g::attributes.eq(&c.attributes),
            g::source_updated_at.eq(c.version.at),
            g::source_event_id.eq(&c.version.event_id),
        ))
        .on_conflict((g::organization_id, g::directory_group_id))
        .do_update()
        .set((
            g::directory_id.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
            >(
                "COALESCE(excluded.directory_id, directory_groups.directory_id)",
            )),
            g::display_name.eq(excluded(g::display_name)),
            g::external_id.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
            >(
                "COALESCE(excluded.external_id, directory_groups.external_id)",
            )),
            g::deleted_at.eq(excluded(g::deleted_at)),
            g::attributes.eq(excluded(g::attributes)),
            g::source_updated_at.eq(excluded(g::source_updated_at)),
            g::source_event_id.eq(excluded(g::source_event_id)),
            g::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Members of a group (user ids), sorted.
pub async fn group_members(
    conn: &mut AsyncPgConnection,
    org: &str,
    group: &str,
) -> QueryResult<Vec<String>> {
    m::table
        .filter(
            m::organization_id
                .eq(org)
                .and(m::directory_group_id.eq(group)),
        )
        .select(m::directory_user_id)
        .order(m::directory_user_id)
        .load(conn)
        .await
}

pub async fn load_directory(
    conn: &mut AsyncPgConnection,
    org: &str,
    dir: &str,
) -> QueryResult<Option<StoredDirectory>> {
    let row: Option<(bool, DateTime<Utc>, String)> = d::table
        .filter(d::organization_id.eq(org).and(d::id.eq(dir)))
        .select((d::enabled, d::source_updated_at, d::source_event_id))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(enabled, at, id)| StoredDirectory {
        version: Version::new(at, id),
        enabled,
    }))
}

pub async fn write_directory(
    conn: &mut AsyncPgConnection,
    org: &str,
    dir: &str,
    c: &DirectoryChange,
) -> QueryResult<()> {
    diesel::insert_into(d::table)
        .values((
            d::organization_id.eq(org),
            d::id.eq(dir),
            d::provider.eq(&c.provider),
            d::directory_type.eq(&c.directory_type),
            d::enabled.eq(c.enabled),
            d::source_updated_at.eq(c.version.at),
            d::source_event_id.eq(&c.version.event_id),
        ))
        .on_conflict((d::organization_id, d::id))
        .do_update()
        .set((
            d::provider.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
            >(
                "COALESCE(excluded.provider, directories.provider)"
            )),
            d::directory_type.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Text>,
            >(
                "COALESCE(excluded.directory_type, directories.directory_type)",
            )),
            d::enabled.eq(excluded(d::enabled)),
            d::source_updated_at.eq(excluded(d::source_updated_at)),
            d::source_event_id.eq(excluded(d::source_event_id)),
            d::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}
