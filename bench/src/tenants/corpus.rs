//! The tenants rows' events, published as ingest publishes them.

use crate::baseline::{Message, pipelined};
use lapin::options::ConfirmSelectOptions;
use rand::prelude::*;
use serde_json::json;
use shared::amqp::{declare_topology, properties};
use shared::lane::{EnvelopeRoute, Lane, lane};
use shared::{MessageMeta, Source, Topology};

const GROUPS: usize = 4;

/// A user event body of `org` for user `u`.
pub(super) fn user_body(
    id: &str,
    org: &str,
    u: usize,
    kind: &str,
    active: bool,
    groups: &[usize],
    v: usize,
) -> Vec<u8> {
    let groups: Vec<_> = groups
        .iter()
        .map(|g| json!({"id": format!("dirgroup_{org}_{g}"), "name": format!("Team {g}")}))
        .collect();
    serde_json::to_vec(&json!({
        "spec_version": "1", "id": id, "type": format!("organization.directory.{kind}"),
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "environment_id": "env_bench", "organization_id": org, "object": "DirectoryUser",
        "data": {"id": format!("diruser_{org}_{u:05}"), "organization_id": org, "active": active,
                 "email": format!("user{u}.{v}@{org}.example.com"), "given_name": format!("Given{v}"),
                 "family_name": format!("Family{u}"), "groups": groups,
                 "roles": [{"role_name": "member"}]}
    }))
    .unwrap_or_default()
}

fn group_body(org: &str, g: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "spec_version": "1", "id": format!("evt_{org}_g{g}"), "type": "organization.directory.group_created",
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "environment_id": "env_bench", "organization_id": org, "object": "DirectoryGroup",
        "data": {"id": format!("dirgroup_{org}_{g}"), "organization_id": org,
                 "display_name": format!("Team {g}")}
    }))
    .unwrap_or_default()
}

/// The setup (groups, then every user created) and the update phase of `orgs` organizations
/// of `users` users, on random users: `deprovisions` percent of the events deprovision (two
/// thirds deactivations, `active: false`, one third deletions), the rest are updates (groups
/// and profile change; an update of a deactivated user reactivates it).
pub fn update_heavy(
    orgs: usize,
    users: usize,
    updates: usize,
    deprovisions: u32,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut rng = StdRng::seed_from_u64(30);
    let names: Vec<String> = (0..orgs).map(|o| format!("org_t{o:03}")).collect();
    let mut setup = Vec::new();
    for org in &names {
        for g in 0..GROUPS {
            setup.push(group_body(org, g));
        }
    }
    let pick = |rng: &mut StdRng| -> Vec<usize> {
        let n = rng.random_range(0..=3);
        (0..GROUPS)
            .collect::<Vec<_>>()
            .choose_multiple(rng, n)
            .copied()
            .collect()
    };
    for org in &names {
        for u in 0..users {
            let groups = pick(&mut rng);
            let id = format!("evt_{org}_c{u:05}");
            setup.push(user_body(&id, org, u, "user_created", true, &groups, 0));
        }
    }
    let mut phase = Vec::with_capacity(updates);
    for i in 0..updates {
        let org = &names[rng.random_range(0..orgs)];
        let u = rng.random_range(0..users);
        let id = format!("evt_{org}_u{i:06}");
        let groups = pick(&mut rng);
        let roll = rng.random_range(0..300u32);
        let body = match roll {
            r if r >= deprovisions * 3 => user_body(&id, org, u, "user_updated", true, &groups, i),
            r if r >= deprovisions => user_body(&id, org, u, "user_updated", false, &groups, i),
            _ => serde_json::to_vec(&json!({
                "spec_version": "1", "id": id, "type": "organization.directory.user_deleted",
                "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                "environment_id": "env_bench", "organization_id": org, "object": "DirectoryUser",
                "data": {"id": format!("diruser_{org}_{u:05}"), "organization_id": org}
            }))
            .unwrap_or_default(),
        };
        phase.push(body);
    }
    (setup, phase)
}

/// The message ingest would publish for `body`: its exchange (the urgent one for
/// deprovisionings), routing key and headers.
pub(super) fn message(topology: &Topology, body: &[u8]) -> Message {
    let Ok(env) = serde_json::from_slice::<EnvelopeRoute>(body) else {
        return (
            topology.exchange(),
            "malformed".into(),
            body.to_vec(),
            Default::default(),
        );
    };
    let meta = MessageMeta::of_envelope(&env, Source::Webhook)
        .with_webhook_id(format!("msg_{}", env.id.as_str()));
    let exchange = match lane(&env.event_type, env.data) {
        Lane::Urgent => topology.urgent_exchange(),
        Lane::Bulk => topology.bulk_exchange(),
        Lane::Apply => topology.exchange(),
    };
    (
        exchange,
        env.event_type.clone(),
        body.to_vec(),
        properties(&meta),
    )
}

/// Publishes `bodies` as ingest would (confirmed, 256 in flight).
pub async fn publish(url: &str, topology: &Topology, bodies: &[Vec<u8>]) -> anyhow::Result<()> {
    let conn = shared::amqp::connect(url, "bench-tenants").await?;
    declare_topology(&conn, topology).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    pipelined(&ch, bodies.len(), 256, |i| message(topology, &bodies[i])).await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
