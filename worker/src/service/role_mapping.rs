//! App-side group → role mapping (`ROLE_MAPPING_FILE`, TOML). Roles from the mapping are added to
//! the roles Scalekit computes; a user's mapped roles are recomputed from their groups.
//!
//! ```toml
//! # Used by every organization that has no section of its own.
//! [default.by_group_name]
//! "Engineering" = "developer"          # names match case-insensitively
//! [default.by_group_id]
//! "dirgroup_45645645645645" = ["admin", "developer"]
//!
//! # An organization's own section replaces the default for that organization.
//! [organizations.org_53879494091473415.by_group_name]
//! "Finance" = "billing_admin"
//! ```

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("cannot read role mapping file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("role mapping file {path} is invalid")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("role name `{0}` is invalid (expected ^[a-zA-Z0-9_]{{1,64}}$)")]
    RoleName(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Roles {
    One(String),
    Many(Vec<String>),
}

impl Roles {
    fn into_vec(self) -> Vec<String> {
        match self {
            Roles::One(r) => vec![r],
            Roles::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    by_group_id: BTreeMap<String, Roles>,
    #[serde(default)]
    by_group_name: BTreeMap<String, Roles>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    #[serde(default)]
    default: Option<RawRules>,
    #[serde(default)]
    organizations: BTreeMap<String, RawRules>,
}

/// Rules for one organization (or the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    by_group_id: BTreeMap<String, BTreeSet<String>>,
    /// Keys lower-cased.
    by_group_name: BTreeMap<String, BTreeSet<String>>,
}

/// The parsed mapping. Empty when no file is configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleMapping {
    default: Rules,
    organizations: BTreeMap<String, Rules>,
}

fn valid_role(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn rules(raw: RawRules) -> Result<Rules, MappingError> {
    let convert = |m: BTreeMap<String, Roles>, lower: bool| {
        m.into_iter()
            .map(|(k, v)| {
                let roles = v.into_vec();
                if let Some(bad) = roles.iter().find(|r| !valid_role(r)) {
                    return Err(MappingError::RoleName(bad.clone()));
                }
                let key = if lower { k.to_lowercase() } else { k };
                Ok((key, roles.into_iter().collect()))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
    };
    Ok(Rules {
        by_group_id: convert(raw.by_group_id, false)?,
        by_group_name: convert(raw.by_group_name, true)?,
    })
}

impl RoleMapping {
    pub fn parse(text: &str, path: &str) -> Result<Self, MappingError> {
        let raw: RawMapping = toml::from_str(text).map_err(|source| MappingError::Parse {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            default: rules(raw.default.unwrap_or_default())?,
            organizations: raw
                .organizations
                .into_iter()
                .map(|(org, r)| rules(r).map(|r| (org, r)))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn load(path: &Path) -> Result<Self, MappingError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| MappingError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// The mapped roles of a member of `groups` (id, optional name) in `organization_id`.
    pub fn roles_for<'a>(
        &self,
        organization_id: &str,
        groups: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> BTreeSet<String> {
        let rules = self
            .organizations
            .get(organization_id)
            .unwrap_or(&self.default);
        let mut roles = BTreeSet::new();
        for (id, name) in groups {
            if let Some(r) = rules.by_group_id.get(id) {
                roles.extend(r.iter().cloned());
            }
            if let Some(r) = name.and_then(|n| rules.by_group_name.get(&n.to_lowercase())) {
                roles.extend(r.iter().cloned());
            }
        }
        roles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [default.by_group_name]
        "Engineering" = "developer"
        [default.by_group_id]
        "dirgroup_1" = ["admin", "developer"]
        [organizations.org_b.by_group_name]
        "Finance" = "billing_admin"
    "#;

    #[test]
    fn by_id_and_by_name_with_default_and_override() {
        let m = RoleMapping::parse(FILE, "test").unwrap();
        let roles = m.roles_for("org_a", [("dirgroup_9", Some("engineering"))]);
        assert_eq!(roles, BTreeSet::from(["developer".to_owned()]));
        let roles = m.roles_for(
            "org_a",
            [("dirgroup_1", None), ("dirgroup_2", Some("Sales"))],
        );
        assert_eq!(
            roles,
            BTreeSet::from(["admin".to_owned(), "developer".to_owned()])
        );
        // org_b has its own section: the default does not apply there.
        let roles = m.roles_for(
            "org_b",
            [
                ("dirgroup_1", Some("Engineering")),
                ("dirgroup_3", Some("Finance")),
            ],
        );
        assert_eq!(roles, BTreeSet::from(["billing_admin".to_owned()]));
        assert!(
            RoleMapping::default()
                .roles_for("org_a", [("dirgroup_1", Some("Engineering"))])
                .is_empty()
        );
    }

    #[test]
    fn invalid_files_are_rejected() {
        assert!(matches!(
            RoleMapping::parse("[default.by_group_name]\nx = \"bad role!\"", "t"),
            Err(MappingError::RoleName(_))
        ));
        assert!(matches!(
            RoleMapping::parse("[defaults]", "t"),
            Err(MappingError::Parse { .. })
        ));
    }
}
