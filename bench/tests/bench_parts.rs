//! The bench's own moving parts against the real services: B_pub with ingest's messages puts
//! every message where ingest would, the do-nothing HTTP server the ceiling is measured
//! against answers every request with 202, B_min answers 202 only for a body the broker
//! confirmed, and B_sql writes the rows the worker would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bench::ceiling::{b_pub_ingest_messages, publisher};
use bench::cpu::Watched;
use bench::{EVENT_TYPE, generator};
use bytes::Bytes;
use http_body_util::Full;
use shared::Topology;
use shared::amqp::meta_from_properties;
use std::time::Duration;
use testkit::procs::{Proc, free_port};
use testkit::{RabbitTap, amqp_url, delete_topology, unique_prefix};

#[tokio::test]
async fn ingest_shaped_b_pub_routes_every_message_as_ingest_would() {
    let url = amqp_url();
    let topology = Topology::new(unique_prefix("bpubi"));
    let conn = publisher(&url, &topology).await.unwrap();
    let result = b_pub_ingest_messages(&Watched::new(), &conn, &topology, 200, 16)
        .await
        .unwrap();
    assert_eq!(result.messages, 200);
    assert!(result.msgs_per_s > 0.0);
    assert!(result.confirm_p50_ms <= result.confirm_p99_ms);

    let tap = RabbitTap::connect(&url).await.unwrap();
    let queue = topology.apply_queue();
    assert_eq!(
        tap.wait_depth(&queue, 200, Duration::from_secs(5))
            .await
            .unwrap(),
        200
    );
    let got = tap
        .get(&queue, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(got.delivery.routing_key.as_str(), EVENT_TYPE);
    assert_eq!(got.delivery.properties.delivery_mode(), &Some(2));
    let meta = meta_from_properties(&got.delivery.properties, EVENT_TYPE);
    assert!(
        meta.message_id.starts_with("evt_bench_"),
        "{}",
        meta.message_id
    );
    assert_eq!(meta.organization_id.as_deref(), Some("org_bench"));
    assert_eq!(meta.event_type, EVENT_TYPE);
    let _ = conn.close(200, "done".into()).await;
    delete_topology(&url, &topology, &[]).await.unwrap();
}

#[tokio::test]
async fn noop_http_answers_every_post_with_202() {
    let port = free_port();
    let server = Proc::spawn("noop_http", "noop_http", &[&port.to_string()], &[], port).unwrap();
    let client = reqwest::Client::new();
    server
        .wait_ready(&client, Duration::from_secs(30))
        .await
        .unwrap();
    let resp = client
        .post(format!("http://127.0.0.1:{port}/webhooks/scalekit"))
        .body("{\"id\":\"evt_1\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["status"], "queued");
    assert_eq!(json["bytes"], 14);

    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let jobs = (0..100)
        .map(|i| generator::Job {
            id: format!("job{i}"),
            request: hyper::Request::post("/webhooks/scalekit")
                .header("host", addr.to_string())
                .body(Full::new(Bytes::from(vec![b'x'; 1024])))
                .unwrap(),
        })
        .collect();
    let out = generator::run(addr, jobs, Duration::from_micros(200), 8).await;
    assert_eq!(out.len(), 100);
    assert!(out.iter().all(|o| o.status == Some(202)));
}

/// B_min publishing to `exchange`, ready; and its port.
async fn min_ingest(client: &reqwest::Client, url: &str, exchange: &str) -> (Proc, u16) {
    let port = free_port();
    let server = Proc::spawn(
        "min_ingest",
        "min_ingest",
        &[&port.to_string(), url, exchange, EVENT_TYPE],
        &[],
        port,
    )
    .unwrap();
    server
        .wait_ready(client, Duration::from_secs(30))
        .await
        .unwrap();
    (server, port)
}

#[tokio::test]
async fn b_min_answers_202_only_once_the_body_is_queued_as_ingest_would_queue_it() {
    let url = amqp_url();
    let topology = Topology::new(unique_prefix("bmin"));
    let conn = publisher(&url, &topology).await.unwrap();
    let client = reqwest::Client::new();
    let exchange = topology.exchange();
    let (server, port) = min_ingest(&client, &url, &exchange).await;
    let sends = (0..20).map(|i| {
        client
            .post(format!("http://127.0.0.1:{port}/webhooks/scalekit"))
            .body(format!("{{\"id\":\"evt_{i}\"}}"))
            .send()
    });
    for resp in futures_util::future::join_all(sends).await {
        assert_eq!(resp.unwrap().status().as_u16(), 202);
    }
    // Answered only after the confirm: every body is already in the queue.
    let tap = RabbitTap::connect(&url).await.unwrap();
    let queue = topology.apply_queue();
    assert_eq!(tap.depth(&queue).await.unwrap(), 20);
    let got = tap
        .get(&queue, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a message");
    assert!(got.delivery.data.starts_with(b"{\"id\":\"evt_"));
    assert_eq!(got.delivery.routing_key.as_str(), EVENT_TYPE);
    assert_eq!(got.delivery.properties.delivery_mode(), &Some(2));
    let meta = meta_from_properties(&got.delivery.properties, EVENT_TYPE);
    assert_eq!(meta.event_type, EVENT_TYPE);
    assert_eq!(meta.organization_id.as_deref(), Some("org_bench"));
    drop(server);

    // Nowhere to publish: no confirm, no 202.
    let (_server, port) = min_ingest(&client, &url, &format!("{exchange}.missing")).await;
    let resp = client
        .post(format!("http://127.0.0.1:{port}/webhooks/scalekit"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let _ = conn.close(200, "done".into()).await;
    delete_topology(&url, &topology, &[]).await.unwrap();
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test]
async fn b_sql_writes_the_rows_the_worker_writes_per_event() {
    use diesel_async::RunQueryDsl;
    let db = testkit::db::TestDb::create().await;
    let mut conn = db.connect().await;
    let attrs = serde_json::json!({"padding": "x"});
    // 10 events over 5 users: 5 first events (3 changes, a membership and a role each) and 5
    // updates (1 change each), in two batches (no user twice in one, as the worker folds
    // a user's events into one row).
    bench::sql_same_writes::write_batch(&mut conn, 0..5, 5, &attrs)
        .await
        .unwrap();
    bench::sql_same_writes::write_batch(&mut conn, 5..10, 5, &attrs)
        .await
        .unwrap();
    for (table, rows) in [
        ("processed_events", 10),
        ("directory_users", 5),
        ("audit_log", 10),
        ("changes", 20),
        ("directory_group_memberships", 5),
        ("user_roles", 5),
    ] {
        let c: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(c.n, rows, "{table}");
    }
    let c: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM directory_users WHERE source_event_id LIKE 'evt_sql_00000000_' \
         AND attributes->>'padding' = 'x' AND email = 'user' || substr(source_event_id, 9)::int || '@example.com'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(c.n, 5, "each user holds its newest event");
    db.drop_db().await;
}
