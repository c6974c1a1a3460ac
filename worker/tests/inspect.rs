//! `worker explain`, `worker status` and `worker report slo` against a real run: alice is
//! created (delivered twice), renamed, sent an older update (stale), deactivated, and sent an
//! update whose data does not fit its type (dead-lettered); the binaries then tell her story,
//! the deployment's state, and how fast her changes took effect.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::{DateTime, Duration as Span, Utc};
use serde_json::{Value, json};
use std::time::Duration;
use support::dlq::worker_cmd;
use testkit::env::Env;
use testkit::wait_until;
use testkit::worker::*;

const ORG: &str = "org_explain";
const ALICE: &str = "diruser_alice";

fn event(id: &str, kind: &str, at: DateTime<Utc>, data: Value) -> Vec<u8> {
    let mut data = data;
    data["id"] = ALICE.into();
    data["organization_id"] = ORG.into();
    serde_json::to_vec(&json!({
        "id": id, "type": format!("organization.directory.{kind}"),
        "object": "DirectoryUser", "spec_version": "1", "environment_id": "env_1",
        "organization_id": ORG, "occurred_at": at.to_rfc3339(), "data": data
    }))
    .unwrap()
}

fn profile(given: &str) -> Value {
    json!({"active": true, "email": "alice@explain.example", "given_name": given,
           "family_name": "Liddell", "groups": [{"id": "grp_eng", "name": "Engineering"}]})
}

async fn run(cmd: &mut tokio::process::Command) -> (bool, String) {
    let out = cmd.output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_status_and_slo_tell_what_happened() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let w = spawn_worker(&broker.prefix, &db.url, &[]).await;
    let t0 = Utc::now() - Span::minutes(60);

    // Created, and the same webhook again.
    let created = event("evt_a1_created", "user_created", t0, profile("Alice"));
    broker.publish(&created).await;
    broker.publish(&created).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            db.count("SELECT coalesce(sum(duplicates), 0)::int8 AS n FROM processed_events")
                .await
                == 1
        })
        .await,
        "the second delivery is counted as a duplicate"
    );
    // Renamed at +20 min; then an update from +10 min arrives: stale.
    let renamed = event(
        "evt_a3_renamed",
        "user_updated",
        t0 + Span::minutes(20),
        profile("Alicia"),
    );
    broker.publish(&renamed).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            db.count("SELECT count(*) AS n FROM directory_users WHERE given_name = 'Alicia'")
                .await
                == 1
        })
        .await
    );
    let older = event(
        "evt_a2_older",
        "user_updated",
        t0 + Span::minutes(10),
        profile("Ally"),
    );
    broker.publish(&older).await;
    // Deactivated at +30 min; an update at +40 min whose `active` is not a boolean.
    let deleted = event(
        "evt_a4_deleted",
        "user_deleted",
        t0 + Span::minutes(30),
        json!({}),
    );
    broker.publish(&deleted).await;
    let mut broken = profile("Alicia");
    broken["active"] = "yes".into();
    broker
        .publish(&event(
            "evt_a5_broken",
            "user_updated",
            t0 + Span::minutes(40),
            broken,
        ))
        .await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            db.count("SELECT count(*) AS n FROM processed_events").await == 4
                && db
                    .count("SELECT count(*) AS n FROM dead_lettered_events")
                    .await
                    == 1
                && db
                    .count("SELECT count(*) AS n FROM changes WHERE published_at IS NULL")
                    .await
                    == 0
        })
        .await,
        "four events handled, one dead-lettered, every change published"
    );

    let worker = |args: &[&str]| {
        let mut cmd = worker_cmd(broker, args);
        cmd.env("DATABASE_URL", &db.url);
        cmd
    };

    // explain, by email: state first, then the history in the order things occurred.
    let (ok, text) = run(&mut worker(&[
        "explain",
        "--org",
        ORG,
        "--user",
        "Alice@Explain.example",
    ]))
    .await;
    assert!(ok, "{text}");
    assert!(text.contains("user diruser_alice in org_explain"), "{text}");
    assert!(text.contains("INACTIVE since"), "{text}");
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from:\n{text}"))
    };
    assert!(
        at("evt_a1_created") < at("evt_a2_older")
            && at("evt_a2_older") < at("evt_a3_renamed")
            && at("evt_a3_renamed") < at("evt_a4_deleted")
            && at("evt_a4_deleted") < at("evt_a5_broken"),
        "oldest first:\n{text}"
    );
    at("delivered 1 more time: duplicate, changed nothing");
    at("stale: a later event about this user was applied first");
    at("created; none → active; joined: grp_eng");
    at("profile: given_name");
    at("deactivated; active → inactive");
    at("DEAD-LETTERED: invalid: `data` of a organization.directory.user_updated event is invalid");

    // The same by id, as JSON.
    let (ok, json_text) = run(&mut worker(&[
        "explain", "--org", ORG, "--user", ALICE, "--json",
    ]))
    .await;
    assert!(ok, "{json_text}");
    let x: Value = serde_json::from_str(&json_text).unwrap();
    let outcomes: Vec<(&str, &str, i64)> = x["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["duplicates"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("evt_a1_created", "applied", 1),
            ("evt_a2_older", "stale", 0),
            ("evt_a3_renamed", "applied", 0),
            ("evt_a4_deleted", "applied", 0),
            ("evt_a5_broken", "dead_lettered", 0),
        ]
    );
    assert_eq!(x["user"]["active"], false);
    let (ok, text) = run(&mut worker(&[
        "explain",
        "--org",
        ORG,
        "--user",
        "bob@nowhere",
    ]))
    .await;
    assert!(!ok, "an unknown user is an error: {text}");
    assert!(
        text.contains("no event about this user is on record"),
        "{text}"
    );

    // status: both reachable; the apply queue consumed; the dead letter counted by reason and
    // sitting in the dead queue; the relay leading and caught up.
    // The management API learns of a new queue within its stats interval (5 s): ask until
    // the apply queue has rates.
    let rated_apply = |text: &str| {
        serde_json::from_str::<Value>(text).is_ok_and(|s| {
            s["queues"].as_array().is_some_and(|q| {
                q.iter()
                    .any(|q| q["role"] == "apply" && q["publish_rate"].is_number())
            })
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (mut ok, mut text) = run(&mut worker(&["status", "--json"])).await;
    while !(ok && rated_apply(&text)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        (ok, text) = run(&mut worker(&["status", "--json"])).await;
    }
    let rated = ok && rated_apply(&text);
    assert!(rated, "{text}");
    let s: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (s["database"]["ok"].as_bool(), s["broker"]["ok"].as_bool()),
        (Some(true), Some(true))
    );
    let queue = |role: &str| {
        s["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["role"] == role)
            .unwrap_or_else(|| panic!("no {role} queue in {s}"))
            .clone()
    };
    assert!(queue("apply")["consumers"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(queue("dead")["messages"], 1, "{s}");
    assert!(queue("retry 1s").is_object(), "{s}");
    assert!(
        s["rates"]
            .as_str()
            .unwrap()
            .starts_with("management API at http://127.0.0.1:15672/"),
        "the rates come from the management API: {s}"
    );
    assert!(queue("apply")["publish_rate"].is_number(), "{s}");
    assert_eq!(s["dead_letters"][0]["reason"], "invalid", "{s}");
    assert_eq!(s["dead_letters"][0]["events"], 1, "{s}");
    assert_eq!(s["relay"]["leader"], true, "{s}");
    assert_eq!(s["relay"]["unpublished"], 0, "{s}");
    let (ok, screen) = run(&mut worker(&["status"])).await;
    assert!(ok, "{screen}");
    for needle in [
        "database: ok    broker: ok",
        "invalid                        1 events",
        "change relay: leading, 0 unpublished",
        "released everywhere",
    ] {
        assert!(
            screen.contains(needle),
            "{needle:?} missing from:\n{screen}"
        );
    }

    // A broker that does not answer: status says so, still shows the database's part, and
    // exits non-zero.
    let out = worker(&["status", "--json"])
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["broker"]["ok"], false);
    assert_eq!(s["database"]["ok"], true);
    assert_eq!(s["dead_letters"][0]["events"], 1);

    // report slo: one provisioning and one deprovisioning, both committed and published.
    let (ok, text) = run(&mut worker(&["report", "slo", "--since", "1d", "--json"])).await;
    assert!(ok, "{text}");
    let rows: Value = serde_json::from_str(&text).unwrap();
    let row = |class: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["organization_id"] == ORG && r["class"] == class)
            .unwrap_or_else(|| panic!("no {class} row in {rows}"))
            .clone()
    };
    for (class, occurred_minutes_ago) in [("provisioning", 60.0), ("deprovisioning", 30.0)] {
        let r = row(class);
        assert_eq!(
            (r["changes"].as_i64(), r["unpublished"].as_i64()),
            (Some(1), Some(0)),
            "{r}"
        );
        let committed = r["committed_p99"].as_f64().unwrap();
        let published = r["published_p99"].as_f64().unwrap();
        // occurred_at lies that far back: committed a few seconds ago at most.
        let expected = occurred_minutes_ago * 60.0;
        assert!(
            committed > expected - 5.0 && committed < expected + 120.0,
            "{class}: {committed} s"
        );
        assert!(published >= committed, "{class}: published after committed");
    }
    let (ok, table) = run(&mut worker(&["report", "slo"])).await;
    assert!(
        ok && table.contains("org_explain") && table.contains("deprovisioning"),
        "{table}"
    );

    w.stop().await;
    env.finish().await;
}
