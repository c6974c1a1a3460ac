//! What the clients do for a cluster, on the machine's single broker: an `AMQP_URL` naming
//! several nodes connects to the first that answers (a closed port and a node that never
//! answers are skipped), and quorum queues are declared with their replica count, while queues
//! declared before it existed keep theirs instead of failing the declaration.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use shared::amqp::{declare_topology, lapin};
use std::time::{Duration, Instant};
use testkit::{RabbitTap, amqp_url, fixture, unique_prefix};

#[tokio::test]
async fn several_urls_connect_to_the_first_node_that_answers() {
    // A port that refuses, and one that accepts TCP but never speaks AMQP (a paused node).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let closed = testkit::procs::free_port();
    let urls = format!(
        "amqp://guest:guest@127.0.0.1:{closed}/%2f, amqp://guest:guest@127.0.0.1:{silent_port}/%2f,{}",
        amqp_url()
    );
    let started = Instant::now();
    let conn = shared::amqp::connect(&urls, "nodes-test").await.unwrap();
    assert!(conn.status().connected());
    assert!(
        started.elapsed() < shared::amqp::NODE_CONNECT_TIMEOUT + Duration::from_secs(5),
        "the silent node held the connect for {:?}",
        started.elapsed()
    );
    let _ = conn.close(200, "done".into()).await;

    // Ingest takes the same list (it is what AMQP_URL holds outside Kubernetes).
    let list = format!("amqp://guest:guest@127.0.0.1:{closed}/%2f,{}", amqp_url());
    let app = testkit::ingest::spawn_with(&list, &[], true).await;
    assert_eq!(
        app.post_signed("msg_nodes", &fixture("03_user_created.json"))
            .await
            .status(),
        202
    );
    app.stop().await;

    let none = shared::amqp::connect(
        &format!("amqp://guest:guest@127.0.0.1:{closed}/%2f"),
        "nodes-test",
    )
    .await;
    assert!(none.is_err());
}

fn queue_arguments(name: &str) -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_queues",
            "--no-table-headers",
            "name",
            "arguments",
        ])
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn quorum_queues_get_their_replica_count_and_older_ones_keep_theirs() {
    let prefix = unique_prefix("nodes");
    let topology = shared::Topology::new(prefix.clone()).with_quorum_group_size(3);
    let tap = RabbitTap::connect(&amqp_url()).await.unwrap();
    // The dead-letter queue as an older version declared it: no replica count.
    let dead = topology.dead_queue();
    tap.channel
        .queue_declare(
            dead.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            shared::amqp::dead_queue_args(&topology.dead_exchange()),
        )
        .await
        .unwrap();
    declare_topology(&tap.connection, &topology).await.unwrap();
    // Again: idempotent.
    declare_topology(&tap.connection, &topology).await.unwrap();
    let apply = queue_arguments(&topology.apply_queue());
    assert!(
        apply.contains("x-quorum-initial-group-size"),
        "new queue: {apply}"
    );
    let old = queue_arguments(&dead);
    assert!(
        !old.is_empty() && !old.contains("x-quorum-initial-group-size"),
        "{old}"
    );
    testkit::delete_topology(&amqp_url(), &topology, &[])
        .await
        .unwrap();
}
