//! The deprovisioning brake through the real worker and the `worker brake` binary: 30
//! deletions in an organization of 50 let the threshold through and hold the rest; other
//! organizations and other events flow on; release applies the held ones exactly once, discard
//! drops them (audited), and either disengages the brake.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use std::time::Duration;
use support::dlq::worker_cmd;
use support::{user_deleted, user_event};
use testkit::env::Env;
use testkit::wait_until;
use testkit::worker::*;

fn created(org: &str, i: usize) -> Vec<u8> {
    let data = json!({"active": true, "email": format!("u{i}@{org}.example"), "given_name": "User", "family_name": format!("N{i}")});
    user_event(org, i, "user_created", "c", "2026-01-01T10:00:00Z", data)
}

fn renamed(org: &str, i: usize) -> Vec<u8> {
    let data = json!({"active": true, "email": format!("u{i}@{org}.example"), "given_name": "Renamed", "family_name": format!("N{i}")});
    user_event(org, i, "user_updated", "r", "2026-01-01T12:00:00Z", data)
}

/// `user_deleted` events the worker counted as duplicates.
async fn duplicates(http: &reqwest::Client, base: &str) -> u64 {
    let body = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .filter(|l| l.starts_with("scim_worker_events_total{"))
        .filter(|l| l.contains("user_deleted\"") && l.contains("outcome=\"duplicate\""))
        .filter_map(|l| l.rsplit(" ").next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_deletions_of_fifty_hold_twenty_until_released_or_discarded() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    // The defaults, stated (the harness turns the brake off unless told).
    let w = spawn_worker(
        &broker.prefix,
        &db.url,
        &[
            "--deprovision-brake-percent",
            "20",
            "--deprovision-brake-min",
            "10",
            "--deprovision-brake-window",
            "1h",
        ],
    )
    .await;
    let active = |org: &'static str| async move {
        db.count(&format!(
            "SELECT count(*) AS n FROM directory_users WHERE organization_id = '{org}' AND active"
        ))
        .await
    };
    let held = |org: &'static str| async move {
        db.count(&format!(
            "SELECT count(*) AS n FROM held_events WHERE organization_id = '{org}'"
        ))
        .await
    };
    let brake = |args: &[&str]| {
        let mut cmd = worker_cmd(broker, &["brake"]);
        cmd.args(args).env("DATABASE_URL", &db.url);
        cmd
    };

    for (org, n) in [("org_a", 50), ("org_c", 50), ("org_b", 5)] {
        for i in 0..n {
            broker.publish(&created(org, i)).await;
        }
    }
    assert!(
        wait_until(Duration::from_secs(30), || async {
            active("org_a").await + active("org_c").await + active("org_b").await == 105
        })
        .await
    );

    // 30 deletions in org_a and org_c (50 users each: 20 % is 10), 5 in org_b (5 users: the
    // minimum of 10 lets all through), one org_a deletion delivered twice.
    for (org, n) in [("org_a", 30), ("org_c", 30), ("org_b", 5)] {
        for i in 0..n {
            broker.publish(&user_deleted(org, i)).await;
        }
    }
    broker.publish(&user_deleted("org_a", 29)).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            db.count("SELECT count(*) AS n FROM processed_events WHERE event_type = 'organization.directory.user_deleted'")
                .await
                == 65
        })
        .await
    );
    assert_eq!(
        (active("org_a").await, held("org_a").await),
        (40, 20),
        "10 applied, 20 held"
    );
    assert_eq!((active("org_c").await, held("org_c").await), (40, 20));
    assert_eq!(
        (active("org_b").await, held("org_b").await),
        (0, 0),
        "another organization flows"
    );

    // A non-deactivating event of a held organization is applied.
    broker.publish(&renamed("org_a", 45)).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            db.count("SELECT count(*) AS n FROM directory_users WHERE given_name = 'Renamed'")
                .await
                == 1
        })
        .await
    );
    assert_eq!(held("org_a").await, 20, "the duplicate was not held twice");

    // The metric names the held organization.
    let http = reqwest::Client::new();
    assert!(
        wait_until(Duration::from_secs(15), || async {
            let body = testkit::metrics(&http, &w.base).await.unwrap();
            body.contains("scim_deprovision_brake_engaged{organization_id=\"org_a\"} 1")
                && body.contains("scim_deprovision_brake_held_events{organization_id=\"org_c\"} 20")
        })
        .await
    );

    // list / show.
    let out = brake(&["list"]).output().await.unwrap();
    assert!(out.status.success());
    let list = String::from_utf8(out.stdout).unwrap();
    let line = list.lines().find(|l| l.starts_with("org_a\t")).unwrap();
    assert!(line.contains("held 20"), "{list}");
    // Which 10 passed depends on how the lanes interleaved; the sample shows 5 of the held.
    assert_eq!(
        line.matches("@org_a.example").count(),
        5,
        "a sample of users: {list}"
    );
    assert!(
        list.lines().any(|l| l.starts_with("org_c\theld 20")),
        "{list}"
    );
    let out = brake(&["show", "--org", "org_a"]).output().await.unwrap();
    let show = String::from_utf8(out.stdout).unwrap();
    assert!(show.starts_with("20 held events for org_a"), "{show}");
    assert_eq!(
        show.lines()
            .filter(|l| l.contains("diruser_org_a_"))
            .count(),
        20
    );

    // release org_a: all 30 deactivated exactly once, through the apply path.
    let out = brake(&["release", "--org", "org_a"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("released 20 events of org_a: applied 20"),
        "{text}"
    );
    assert!(text.contains("disengaged"), "{text}");
    assert_eq!((active("org_a").await, held("org_a").await), (20, 0));
    assert_eq!(
        db.count("SELECT count(*) AS n FROM changes WHERE organization_id = 'org_a' AND kind = 'user.deprovisioned'")
            .await,
        30
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_log WHERE organization_id = 'org_a' AND action = 'deactivated'")
            .await,
        30
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM processed_events WHERE organization_id = 'org_a' AND outcome <> 'applied'")
            .await,
        0
    );

    // discard org_c: refused without --yes, then none applied, each audited, still deduped.
    let out = brake(&["discard", "--org", "org_c"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(held("org_c").await, 20);
    let out = brake(&["discard", "--org", "org_c", "--yes"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("discarded 20 events of org_c"), "{text}");
    assert_eq!((active("org_c").await, held("org_c").await), (40, 0));
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_log WHERE organization_id = 'org_c' AND action = 'brake_discarded'")
            .await,
        20
    );
    broker.publish(&user_deleted("org_c", 25)).await;

    // After the release the window starts again: org_a's next deletion is applied.
    broker.publish(&user_deleted("org_a", 40)).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            active("org_a").await == 19
        })
        .await
    );
    // The redelivered discarded event is counted a duplicate, and changes nothing.
    assert!(
        wait_until(Duration::from_secs(20), || async {
            duplicates(&http, &w.base).await == 2
        })
        .await,
        "the twice-delivered org_a deletion and the redelivered discarded one"
    );
    assert_eq!(
        active("org_c").await,
        40,
        "a discarded event stays a duplicate"
    );
    assert_eq!(held("org_a").await, 0);
    let out = brake(&["list"]).output().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no organization is held"
    );

    w.stop().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_zero_turns_the_brake_off() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let w = spawn_worker(
        &broker.prefix,
        &db.url,
        &["--deprovision-brake-percent", "0"],
    )
    .await;
    for i in 0..20 {
        broker.publish(&created("org_z", i)).await;
    }
    for i in 0..20 {
        broker.publish(&user_deleted("org_z", i)).await;
    }
    assert!(
        wait_until(Duration::from_secs(30), || async {
            db.count("SELECT count(*) AS n FROM directory_users WHERE NOT active")
                .await
                == 20
        })
        .await
    );
    assert_eq!(db.count("SELECT count(*) AS n FROM held_events").await, 0);
    w.stop().await;
    env.finish().await;
}
