//! A generated stream of directory events over many organizations and users (all eight types
//! plus an unknown one), and its expected end state computed independently: a small model of
//! the apply rules run over the events in `occurred_at` order.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use testkit::tables::Tables;

pub struct Corpus {
    /// Bodies in `occurred_at` order.
    pub events: Vec<Vec<u8>>,
    pub expected: Tables,
    pub distinct_ids: usize,
}

struct Gen {
    rng: StdRng,
    t: DateTime<Utc>,
    n: usize,
    out: Vec<Value>,
}

impl Gen {
    fn next(&mut self, org: &str, event_type: &str, object: &str, data: Value) {
        self.t += Duration::milliseconds(self.rng.random_range(1..20));
        self.n += 1;
        self.out.push(json!({
            "spec_version": "1",
            "id": format!("evt_e2e_{:07}", self.n),
            "type": event_type,
            "occurred_at": self.t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "environment_id": "env_e2e",
            "organization_id": org,
            "object": object,
            "data": data,
        }));
    }
}

const ROLES: [&str; 4] = ["member", "admin", "billing_admin", "viewer"];

/// About `target` events over `orgs` organizations of `users` users each.
pub fn generate(seed: u64, orgs: usize, users: usize, target: usize) -> Corpus {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        t: Utc
            .with_ymd_and_hms(2025, 6, 1, 0, 0, 0)
            .single()
            .unwrap_or_default(),
        n: 0,
        out: Vec::new(),
    };
    let org_ids: Vec<String> = (0..orgs).map(|o| format!("org_e2e{o:04}")).collect();
    let mut live_groups: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for org in &org_ids {
        let dir = format!("dir_{org}");
        g.next(org, "organization.directory_enabled", "Directory", json!({"id": dir, "organization_id": org, "provider": "OKTA", "directory_type": "SCIM", "enabled": true}));
        let groups: Vec<(String, String)> = (0..4)
            .map(|k| (format!("dirgroup_{org}_{k}"), format!("Team {k}")))
            .collect();
        for (id, name) in &groups {
            g.next(org, "organization.directory.group_created", "DirectoryGroup", json!({"id": id, "organization_id": org, "directory_id": dir, "display_name": name, "external_id": null}));
        }
        live_groups.insert(org.clone(), groups);
    }
    let user_data = |g: &mut Gen,
                     org: &str,
                     u: usize,
                     groups: &[(String, String)],
                     active: bool| {
        let n_groups = g.rng.random_range(0..=groups.len().min(3));
        let pick: Vec<&(String, String)> = groups.choose_multiple(&mut g.rng, n_groups).collect();
        let n_roles = g.rng.random_range(0..3);
        let roles: Vec<&&str> = ROLES.choose_multiple(&mut g.rng, n_roles).collect();
        let v = g.rng.random_range(0..1000);
        json!({
            "id": format!("diruser_{org}_{u:05}"), "organization_id": org, "active": active,
            "email": format!("user{u}.{v}@{org}.example.com"), "given_name": format!("Given{v}"),
            "family_name": format!("Family{u}"), "preferred_username": format!("u{u}"),
            "groups": pick.iter().map(|(id, name)| json!({"id": id, "name": name})).collect::<Vec<_>>(),
            "roles": roles.iter().map(|r| json!({"role_name": r})).collect::<Vec<_>>(),
            "custom_attributes": {"cost_center": format!("cc-{v}")}, "raw_attributes": {},
        })
    };
    for org in &org_ids {
        for u in 0..users {
            let groups = live_groups[org].clone();
            let data = user_data(&mut g, org, u, &groups, true);
            g.next(
                org,
                "organization.directory.user_created",
                "DirectoryUser",
                data,
            );
        }
    }
    while g.out.len() < target {
        let org = org_ids.choose(&mut g.rng).cloned().unwrap_or_default();
        let u = g.rng.random_range(0..users);
        let groups = live_groups[&org].clone();
        let roll = g.rng.random_range(0..100);
        match roll {
            0..55 => {
                let active = g.rng.random_range(0..100) >= 5;
                let data = user_data(&mut g, &org, u, &groups, active);
                g.next(
                    &org,
                    "organization.directory.user_updated",
                    "DirectoryUser",
                    data,
                );
            }
            55..70 => {
                let data = json!({"id": format!("diruser_{org}_{u:05}"), "organization_id": org, "email": format!("gone{u}@{org}.example.com")});
                g.next(
                    &org,
                    "organization.directory.user_deleted",
                    "DirectoryUser",
                    data,
                );
            }
            70..80 => {
                let data = user_data(&mut g, &org, u, &groups, true);
                g.next(
                    &org,
                    "organization.directory.user_created",
                    "DirectoryUser",
                    data,
                );
            }
            80..90 if !groups.is_empty() => {
                let (id, _) = groups.choose(&mut g.rng).cloned().unwrap_or_default();
                let name = format!("Renamed {}", g.rng.random_range(0..100));
                if let Some(entry) = live_groups
                    .get_mut(&org)
                    .and_then(|gs| gs.iter_mut().find(|(gid, _)| *gid == id))
                {
                    entry.1 = name.clone();
                }
                g.next(&org, "organization.directory.group_updated", "DirectoryGroup", json!({"id": id, "organization_id": org, "directory_id": format!("dir_{org}"), "display_name": name, "external_id": null}));
            }
            90..93 if groups.len() > 1 => {
                let i = g.rng.random_range(0..groups.len());
                let (id, name) = groups[i].clone();
                if let Some(gs) = live_groups.get_mut(&org) {
                    gs.remove(i);
                }
                g.next(&org, "organization.directory.group_deleted", "DirectoryGroup", json!({"id": id, "organization_id": org, "directory_id": format!("dir_{org}"), "display_name": name, "dp_id": "x"}));
            }
            93..96 => g.next(
                &org,
                "organization.directory.some_future_event",
                "Other",
                json!({"anything": u}),
            ),
            _ => {}
        }
    }
    let disabled: Vec<&String> = org_ids.iter().filter(|_| g.rng.random_bool(0.5)).collect();
    for org in disabled {
        g.next(org, "organization.directory_disabled", "Directory", json!({"id": format!("dir_{org}"), "organization_id": org, "provider": "OKTA", "enabled": false}));
    }
    let expected = model(&g.out);
    let distinct_ids = g.out.len();
    Corpus {
        events: g
            .out
            .iter()
            .map(|v| serde_json::to_vec(v).unwrap_or_default())
            .collect(),
        expected,
        distinct_ids,
    }
}

/// `events` with `fraction` of them delivered twice, shuffled.
pub fn delivery_order(events: &[Vec<u8>], fraction: f64, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = events.to_vec();
    let dups = (events.len() as f64 * fraction) as usize;
    for _ in 0..dups {
        if let Some(e) = events.choose(&mut rng) {
            out.push(e.clone());
        }
    }
    out.shuffle(&mut rng);
    out
}

/// (display name, deleted at)
type ModelGroup = (Option<String>, Option<DateTime<Utc>>);

#[derive(Default, Clone)]
struct MUser {
    active: bool,
    email: Option<String>,
    given: Option<String>,
    family: Option<String>,
    display: Option<String>,
    deactivated_at: Option<DateTime<Utc>>,
    attributes: Value,
    groups: BTreeSet<String>,
    roles: BTreeSet<String>,
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// The reference model: the apply rules, in order.
fn model(events: &[Value]) -> Tables {
    let mut dirs: BTreeMap<(String, String), (bool, Option<String>)> = BTreeMap::new();
    let mut users: BTreeMap<(String, String), MUser> = BTreeMap::new();
    let mut groups: BTreeMap<(String, String), ModelGroup> = BTreeMap::new();
    for e in events {
        let org = s(&e["organization_id"]).unwrap_or_default();
        let at: DateTime<Utc> = e["occurred_at"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_default();
        let d = &e["data"];
        let id = s(&d["id"]).unwrap_or_default();
        match e["type"].as_str().unwrap_or_default() {
            "organization.directory_enabled" | "organization.directory_disabled" => {
                let enabled = e["type"] == "organization.directory_enabled";
                dirs.insert((org, id), (enabled, s(&d["provider"])));
            }
            "organization.directory.user_created" | "organization.directory.user_updated" => {
                let u = users.entry((org.clone(), id)).or_default();
                u.active = d["active"].as_bool().unwrap_or(true);
                u.email = s(&d["email"]);
                u.given = s(&d["given_name"]);
                u.family = s(&d["family_name"]);
                u.display = match (&u.given, &u.family) {
                    (Some(g), Some(f)) => Some(format!("{g} {f}")),
                    (Some(n), None) | (None, Some(n)) => Some(n.clone()),
                    _ => None,
                };
                u.attributes = d.clone();
                if u.active {
                    u.deactivated_at = None;
                    u.groups = d["groups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|g| s(&g["id"]))
                        .filter(|g| {
                            groups
                                .get(&(org.clone(), g.clone()))
                                .is_none_or(|x| x.1.is_none())
                        })
                        .collect();
                    u.roles = d["roles"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| s(&r["role_name"]))
                        .collect();
                } else {
                    u.deactivated_at = Some(at);
                    u.groups.clear();
                    u.roles.clear();
                }
            }
            "organization.directory.user_deleted" => {
                let u = users.entry((org, id)).or_default();
                u.deactivated_at = Some(at);
                u.active = false;
                if u.email.is_none() {
                    u.email = s(&d["email"]);
                }
                if u.attributes.is_null() {
                    u.attributes = json!({});
                }
                u.groups.clear();
                u.roles.clear();
            }
            "organization.directory.group_created" | "organization.directory.group_updated" => {
                let g = groups.entry((org, id)).or_default();
                g.0 = s(&d["display_name"]).or(g.0.clone());
                g.1 = None;
            }
            "organization.directory.group_deleted" => {
                let g = groups.entry((org.clone(), id.clone())).or_default();
                g.0 = s(&d["display_name"]).or(g.0.clone());
                g.1 = g.1.or(Some(at));
                for ((uo, _), u) in users.iter_mut() {
                    if *uo == org {
                        u.groups.remove(&id);
                    }
                }
            }
            _ => {}
        }
    }
    let mut snap = Tables {
        directories: dirs
            .into_iter()
            .map(|((o, d), (en, p))| (o, d, en, p))
            .collect(),
        users: users
            .iter()
            .map(|((o, id), u)| {
                (
                    o.clone(),
                    id.clone(),
                    u.email.clone(),
                    u.given.clone(),
                    u.family.clone(),
                    u.display.clone(),
                    u.active,
                    u.deactivated_at,
                    false,
                    u.attributes.clone(),
                )
            })
            .collect(),
        groups: groups
            .into_iter()
            .map(|((o, g), (name, del))| (o, g, name, del))
            .collect(),
        memberships: users
            .iter()
            .flat_map(|((o, id), u)| {
                u.groups
                    .iter()
                    .map(move |g| (o.clone(), id.clone(), g.clone()))
            })
            .collect(),
        roles: users
            .iter()
            .flat_map(|((o, id), u)| {
                u.roles
                    .iter()
                    .map(move |r| (o.clone(), id.clone(), r.clone(), "scalekit".to_owned()))
            })
            .collect(),
    };
    sort(&mut snap);
    snap
}

/// Sorts every table byte-wise (the database orders by collation).
pub fn sort(s: &mut Tables) {
    s.directories
        .sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    s.users.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    s.groups.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    s.memberships.sort();
    s.roles.sort();
}
