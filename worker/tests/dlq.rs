//! Dead-letter operations against the real broker (and database, for the replay story).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use shared::DeadReason;
use std::time::Duration;
use support::dlq::*;
use testkit::env::Env;
use testkit::fixture;
use testkit::wait_until;
use testkit::worker::*;
use worker::ops::dlq::message::Filter;
use worker::ops::dlq::{ReplayOptions, list, purge, replay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_dry_run_max_guard_and_purge_on_a_mixed_dlq_of_1000() {
    let broker = Broker::new().await;
    let url = testkit::amqp_url();
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
    // The broker settles the count a moment after the operation's channel closes (returned
    // messages back, purged ones gone): wait for it; a wrong count still fails, after 5 s.
    let settled = async |n: u32| {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let depth = broker.tap.depth(&t.dead_queue()).await.unwrap();
            if depth == n || tokio::time::Instant::now() >= deadline {
                return depth;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let r = purge(&url, t, &malformed, None, false).await.unwrap();
    assert_eq!(settled(before).await, before);
    let r2 = purge(&url, t, &malformed, None, true).await.unwrap();
    assert_eq!(r.done, r2.done);
    let left = before - u32::try_from(r2.done).unwrap();
    assert_eq!(settled(left).await, left);
    assert_eq!(count(malformed).await, 0);
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_then_fix_then_replay_applies_exactly_once() {
    let env = Env::new().await;
    let (db, broker) = (&env.db, &env.broker);
    let url = testkit::amqp_url();
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
            broker.dead_depth().await == 2
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
        db.count("SELECT count(*) AS n FROM processed_events WHERE event_id = 'evt_poison' AND source = 'replay'").await == 1
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
        db.count("SELECT count(*) AS n FROM processed_events").await,
        1
    );
    assert_eq!(db.count("SELECT count(*) AS n FROM audit_log").await, 1);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM directory_users WHERE email = 'jane@blocked.example'")
            .await,
        1
    );
    assert_eq!(broker.dead_depth().await, 0);
    w.stop().await;
    env.finish().await;
}

#[tokio::test]
async fn the_dead_letter_queue_has_an_explicit_delivery_limit() {
    // RabbitMQ checks a redeclaration's arguments: the same arguments pass, another limit is
    // refused, so the declared queue carries it.
    use lapin::options::QueueDeclareOptions;
    use lapin::types::AMQPValue;
    use shared::contract::{DEAD_DELIVERY_LIMIT, DELIVERY_LIMIT};
    let broker = Broker::new().await;
    let t = &broker.topology;
    let opts = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let ch = broker.tap.connection.create_channel().await.unwrap();
    let mut args = shared::amqp::dead_queue_args(&t.dead_exchange());
    assert_eq!(
        args.inner().get("x-delivery-limit"),
        Some(&AMQPValue::LongLongInt(DEAD_DELIVERY_LIMIT))
    );
    // As the topology declared it: with its replica count.
    args.insert(
        "x-quorum-initial-group-size".into(),
        AMQPValue::LongInt(i32::try_from(t.quorum_group_size()).unwrap()),
    );
    ch.queue_declare(t.dead_queue().as_str().into(), opts, args.clone())
        .await
        .unwrap();
    let mut other_limit = args;
    other_limit.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DELIVERY_LIMIT),
    );
    let other = broker.tap.connection.create_channel().await.unwrap();
    let refused = other
        .queue_declare(t.dead_queue().as_str().into(), opts, other_limit)
        .await;
    assert!(refused.is_err(), "a different delivery limit is refused");
    broker.cleanup().await;
}
