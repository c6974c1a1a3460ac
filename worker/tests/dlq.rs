//! Dead-letter operations against the real broker (and database, for the replay story).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use lapin::options::ConfirmSelectOptions;
use shared::amqp::{mark_dead, properties, publish_confirmed};
use shared::{DeadReason, MessageMeta, Source};
use std::time::Duration;
use support::app::*;
use support::db::TestDb;
use support::fixture;
use worker::dlq::message::Filter;
use worker::dlq::{ReplayOptions, list, purge, replay};

const TYPES: [&str; 4] = [
    "organization.directory.user_created",
    "organization.directory.user_updated",
    "organization.directory.group_created",
    "organization.directory.user_deleted",
];
const REASONS: [DeadReason; 3] = [
    DeadReason::Invalid,
    DeadReason::Malformed,
    DeadReason::RetriesExhausted,
];

struct Dead {
    id: String,
    event_type: &'static str,
    org: String,
    reason: DeadReason,
    replays: u32,
}

fn mixed(i: usize) -> Dead {
    Dead {
        id: format!("evt_dead_{i:04}"),
        event_type: TYPES[i % 4],
        org: format!("org_{}", i % 5),
        reason: REASONS[i % 3],
        replays: 0,
    }
}

async fn dead_letter(broker: &Broker, items: &[Dead]) {
    let ch = broker.tap.connection.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for d in items {
        let meta = MessageMeta {
            message_id: d.id.clone(),
            webhook_id: Some(format!("msg_{}", d.id)),
            event_type: d.event_type.to_owned(),
            organization_id: Some(d.org.clone()),
            occurred_at: None,
            source: Source::Webhook,
            retry_count: 0,
            replay_count: d.replays,
        };
        let body = serde_json::to_vec(&serde_json::json!({"id": d.id})).unwrap();
        let props = mark_dead(properties(&meta), d.reason, "test");
        publish_confirmed(
            &ch,
            &broker.topology.dead_exchange(),
            d.event_type,
            &body,
            props,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }
}

async fn ids_in_dlq(broker: &Broker) -> Vec<String> {
    let (all, _) = list(
        &shared::testkit::amqp_url(),
        &broker.topology,
        &Filter::default(),
        usize::MAX,
    )
    .await
    .unwrap();
    all.into_iter().map(|m| m.event_id).collect()
}

fn opts(filter: Filter) -> ReplayOptions {
    ReplayOptions {
        filter,
        max: None,
        rate: None,
        dry_run: false,
        force: false,
        max_replays: 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_dry_run_max_guard_and_purge_on_a_mixed_dlq_of_1000() {
    let broker = Broker::new().await;
    let url = shared::testkit::amqp_url();
    let t = &broker.topology;
    let mut items: Vec<Dead> = (0..1000).map(mixed).collect();
    for d in items.iter_mut().skip(7).step_by(50) {
        d.org = "org_loop".into();
        d.replays = 3;
    }
    dead_letter(&broker, &items).await;
    let original = ids_in_dlq(&broker).await;
    assert_eq!(original.len(), 1000);
    assert_eq!(
        original,
        items.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        "listing keeps the order"
    );

    let count = |f: Filter| {
        let url = url.clone();
        async move { list(&url, t, &f, usize::MAX).await.unwrap().0.len() }
    };
    let expect = |p: &dyn Fn(&Dead) -> bool| items.iter().filter(|d| p(d)).count();
    assert_eq!(
        count(Filter {
            event_type: Some(TYPES[1].into()),
            ..Filter::default()
        })
        .await,
        expect(&|d| d.event_type == TYPES[1])
    );
    assert_eq!(
        count(Filter {
            organization_id: Some("org_3".into()),
            ..Filter::default()
        })
        .await,
        expect(&|d| d.org == "org_3")
    );
    assert_eq!(
        count(Filter {
            reason: Some("malformed".into()),
            ..Filter::default()
        })
        .await,
        expect(&|d| d.reason == DeadReason::Malformed)
    );
    let both = Filter {
        event_type: Some(TYPES[0].into()),
        reason: Some("invalid".into()),
        ..Filter::default()
    };
    assert_eq!(
        count(both).await,
        expect(&|d| d.event_type == TYPES[0] && d.reason == DeadReason::Invalid)
    );
    let ids = Filter {
        ids: vec!["evt_dead_0001".into(), "evt_dead_0999".into()],
        ..Filter::default()
    };
    assert_eq!(count(ids).await, 2);
    assert_eq!(
        count(Filter {
            since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            ..Filter::default()
        })
        .await,
        0
    );

    // --dry-run changes nothing, not even the order.
    let f = Filter {
        event_type: Some(TYPES[2].into()),
        ..Filter::default()
    };
    let r = replay(
        &url,
        t,
        &ReplayOptions {
            dry_run: true,
            ..opts(f.clone())
        },
    )
    .await
    .unwrap();
    assert_eq!(
        r.done,
        expect(&|d| d.event_type == TYPES[2] && d.replays < 3)
    );
    assert_eq!(ids_in_dlq(&broker).await, original);
    assert_eq!(broker.tap.depth(&t.apply_queue()).await.unwrap(), 0);

    // --max stops at N; what was not replayed stays, in order.
    let r = replay(
        &url,
        t,
        &ReplayOptions {
            max: Some(10),
            ..opts(f)
        },
    )
    .await
    .unwrap();
    assert_eq!(r.done, 10);
    assert_eq!(
        broker
            .tap
            .wait_depth(&t.apply_queue(), 10, Duration::from_secs(5))
            .await
            .unwrap(),
        10
    );
    let replayed: Vec<String> = items
        .iter()
        .filter(|d| d.event_type == TYPES[2] && d.replays < 3)
        .take(10)
        .map(|d| d.id.clone())
        .collect();
    let remaining: Vec<String> = original
        .iter()
        .filter(|id| !replayed.contains(id))
        .cloned()
        .collect();
    assert_eq!(ids_in_dlq(&broker).await, remaining);
    let copy = broker
        .tap
        .get(&t.apply_queue(), Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    let p = &copy.delivery.properties;
    assert_eq!(shared::amqp::header_str(p, "source"), Some("replay"));
    assert_eq!(shared::amqp::header_u32(p, "x-replay-count"), 1);
    assert_eq!(shared::amqp::header_str(p, "x-dead-reason"), None);
    assert_eq!(copy.delivery.routing_key.as_str(), TYPES[2]);

    // The loop guard: already replayed 3 times → skipped unless --force.
    let loop_filter = Filter {
        organization_id: Some("org_loop".into()),
        ..Filter::default()
    };
    let r = replay(&url, t, &opts(loop_filter.clone())).await.unwrap();
    assert_eq!((r.done, r.skipped), (0, 20));
    let r = replay(
        &url,
        t,
        &ReplayOptions {
            force: true,
            ..opts(loop_filter)
        },
    )
    .await
    .unwrap();
    assert_eq!((r.done, r.skipped), (20, 0));

    // Purge: without confirmation nothing goes; with it exactly the matching ones.
    let malformed = Filter {
        reason: Some("malformed".into()),
        ..Filter::default()
    };
    let before = broker.tap.depth(&t.dead_queue()).await.unwrap();
    let r = purge(&url, t, &malformed, None, false).await.unwrap();
    assert_eq!(broker.tap.depth(&t.dead_queue()).await.unwrap(), before);
    let r2 = purge(&url, t, &malformed, None, true).await.unwrap();
    assert_eq!(r.done, r2.done);
    assert_eq!(
        broker.tap.depth(&t.dead_queue()).await.unwrap(),
        before - u32::try_from(r2.done).unwrap()
    );
    assert_eq!(count(malformed).await, 0);
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_then_fix_then_replay_applies_exactly_once() {
    let db = TestDb::create().await;
    let broker = Broker::new().await;
    let url = shared::testkit::amqp_url();
    {
        use diesel_async::RunQueryDsl;
        let mut conn = db.connect().await;
        diesel::sql_query("ALTER TABLE directory_users ADD CONSTRAINT no_blocked CHECK (email NOT LIKE '%@blocked.example')")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let w = spawn_worker(&broker.prefix, &db.url, &[]).await;
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("03_user_created.json")).unwrap();
    v["id"] = "evt_poison".into();
    v["data"]["email"] = "jane@blocked.example".into();
    let body = serde_json::to_vec(&v).unwrap();
    broker.publish(&body).await;
    broker.publish(&body).await; // Scalekit delivered it twice
    assert!(
        wait_until(Duration::from_secs(20), || async {
            broker
                .tap
                .depth(&broker.topology.dead_queue())
                .await
                .unwrap()
                == 2
        })
        .await
    );
    let (listed, _) = list(&url, &broker.topology, &Filter::default(), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|m| m.reason == "invalid" && m.event_id == "evt_poison"),
        "{listed:?}"
    );
    assert!(
        listed[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("no_blocked"),
        "{listed:?}"
    );

    // Fix the cause, replay one copy: applied.
    {
        use diesel_async::RunQueryDsl;
        let mut conn = db.connect().await;
        diesel::sql_query("ALTER TABLE directory_users DROP CONSTRAINT no_blocked")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let only = Filter {
        ids: vec!["evt_poison".into()],
        ..Filter::default()
    };
    let r = replay(
        &url,
        &broker.topology,
        &ReplayOptions {
            max: Some(1),
            ..opts(only.clone())
        },
    )
    .await
    .unwrap();
    assert_eq!(r.done, 1);
    assert!(wait_until(Duration::from_secs(20), || async {
        count(&db, "SELECT count(*) AS n FROM processed_events WHERE event_id = 'evt_poison' AND source = 'replay'").await == 1
    })
    .await);
    // Replaying the second copy is a no-op thanks to dedupe.
    let r = replay(&url, &broker.topology, &opts(only)).await.unwrap();
    assert_eq!(r.done, 1);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            w.metrics.render().contains(r#"outcome="duplicate"} 1"#)
        })
        .await
    );
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM processed_events").await,
        1
    );
    assert_eq!(count(&db, "SELECT count(*) AS n FROM audit_log").await, 1);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM directory_users WHERE email = 'jane@blocked.example'"
        )
        .await,
        1
    );
    assert_eq!(
        broker
            .tap
            .depth(&broker.topology.dead_queue())
            .await
            .unwrap(),
        0
    );
    w.stop().await;
    broker.cleanup().await;
    db.drop_db().await;
}

fn worker_cmd(broker: &Broker, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker"));
    cmd.args(args)
        .env("AMQP_URL", shared::testkit::amqp_url())
        .env("AMQP_PREFIX", &broker.prefix)
        .env("WORKER_RETRY_TIERS", "1s,2s,4s,8s")
        .env("LOG_FORMAT", "pretty")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_killed_midway_loses_and_duplicates_nothing_beyond_one_and_rerun_finishes() {
    let broker = Broker::new().await;
    let t = &broker.topology;
    let items: Vec<Dead> = (0..200).map(mixed).collect();
    dead_letter(&broker, &items).await;
    let mut child = worker_cmd(&broker, &["dlq", "replay", "--rate", "100/s"])
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            broker.tap.depth(&t.apply_queue()).await.unwrap() >= 40
        })
        .await
    );
    child.kill().await.unwrap(); // SIGKILL
    let _ = child.wait().await;
    // The killed connection's held messages return to the DLQ.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            let dead = broker.tap.depth(&t.dead_queue()).await.unwrap();
            let applied = broker.tap.depth(&t.apply_queue()).await.unwrap();
            dead + applied >= 200
        })
        .await
    );
    let dead = broker.tap.depth(&t.dead_queue()).await.unwrap();
    let replayed = broker.tap.depth(&t.apply_queue()).await.unwrap();
    assert!(
        dead < 200 && replayed < 200,
        "killed mid-way ({replayed} replayed)"
    );
    assert!(
        dead + replayed <= 201,
        "at most the one in flight is duplicated ({dead} + {replayed})"
    );

    let out = worker_cmd(&broker, &["dlq", "replay"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(broker.tap.depth(&t.dead_queue()).await.unwrap(), 0);
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    while let Some(m) = broker
        .tap
        .get(&t.apply_queue(), Duration::from_millis(500))
        .await
        .unwrap()
    {
        total += 1;
        seen.insert(
            m.delivery
                .properties
                .message_id()
                .clone()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 200, "every message replayed");
    assert!(total <= 201, "{total}");
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_list_show_and_guarded_purge() {
    let broker = Broker::new().await;
    let items: Vec<Dead> = (0..6).map(mixed).collect();
    dead_letter(&broker, &items).await;
    let out = worker_cmd(&broker, &["dlq", "list", "--reason", "invalid"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("EVENT ID")
            && text.contains("evt_dead_0000")
            && text.contains("evt_dead_0003"),
        "{text}"
    );
    assert!(!text.contains("evt_dead_0001"), "{text}");
    assert!(
        text.contains("2 matching of 6") && text.contains("by reason: invalid 2"),
        "{text}"
    );
    let out = worker_cmd(&broker, &["dlq", "list", "--json"])
        .output()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["matching"], 6);
    assert_eq!(json["by_reason"]["malformed"], 2);
    let out = worker_cmd(&broker, &["dlq", "show", "evt_dead_0004"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("reason:          malformed") && text.contains("\"id\": \"evt_dead_0004\""),
        "{text}"
    );
    let out = worker_cmd(&broker, &["dlq", "purge", "--org", "org_1"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "purge refuses without --yes");
    assert!(String::from_utf8_lossy(&out.stdout).contains("would delete evt_dead_0001"));
    assert_eq!(
        broker
            .tap
            .depth(&broker.topology.dead_queue())
            .await
            .unwrap(),
        6
    );
    let out = worker_cmd(&broker, &["dlq", "purge", "--org", "org_1", "--yes"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        broker
            .tap
            .depth(&broker.topology.dead_queue())
            .await
            .unwrap(),
        5
    );
    broker.cleanup().await;
}
