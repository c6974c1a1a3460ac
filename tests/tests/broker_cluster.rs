//! Broker high availability on a real three-node RabbitMQ cluster started by the test (its own
//! nodes, ports, directories and cookie; torn down even when a scenario fails). Ingest and
//! worker get every node in `AMQP_URL`. Each scenario sends the shuffled corpus with duplicates
//! like Scalekit (retried until 2xx) while the fault happens, then checks what the fault suite
//! checks: every event applied exactly once, the end state equal to the in-order model, the
//! change feed complete and in order (read by an independent stream reader), and both example
//! applications converged within 15 s. It prints how long ingest was unready, how many answers
//! were not 2xx, how long the worker took to resume, and the stream reader's counters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use testkit::cluster::Cluster;
use testkit::stack::Stack;
use tests::corpus::generate;
use tests::monitor::Monitor;
use tests::scenario::{finish, send, wait_progress};

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `kill -9` the node leading the apply queue, restart it later.
    KillApplyLeader,
    /// Each node stopped and started again in turn.
    RollingRestart,
    /// The node ingest and worker are connected to (the first in `AMQP_URL`) stopped gracefully.
    StopConnectedNode,
    /// A minority node frozen (SIGSTOP): it neither answers nor refuses; then thawed.
    PauseMinority,
}

async fn scenario(cluster: &mut Cluster, fault: Fault, seed: u64) {
    let corpus = generate(seed, 8, 25, 1200);
    let mut stack = Stack::new("ha").await.unwrap();
    stack.amqp = cluster.url();
    stack.ingest_amqp = cluster.url();
    stack.start_worker().await.unwrap();
    stack.start_ingest().await.unwrap();
    // Both example applications follow: the Rust one on the stream (over every node of the
    // cluster), the Python one on the pull API; each must be live again within 15 s.
    let mut apps = tests::app::start_all(&stack).await.unwrap();
    for app in &mut apps {
        app.converge_within = Duration::from_secs(15);
    }
    let monitor = Monitor::start(&stack);
    let sender = send(&stack, &corpus, seed);
    wait_progress(&stack, 200).await.unwrap();
    let fault_at = Instant::now();
    match fault {
        Fault::KillApplyLeader => {
            let leader = cluster
                .leader_of(&stack.topology.apply_queue())
                .expect("the apply queue has a leader");
            cluster.nodes[leader].kill9();
            tokio::time::sleep(Duration::from_secs(8)).await;
            cluster.nodes[leader].boot().await.unwrap();
        }
        Fault::RollingRestart => {
            for i in 0..cluster.nodes.len() {
                cluster.nodes[i].stop().unwrap();
                tokio::time::sleep(Duration::from_secs(2)).await;
                cluster.nodes[i].boot().await.unwrap();
                cluster
                    .wait_running(cluster.nodes.len(), Duration::from_secs(60))
                    .await
                    .unwrap();
            }
        }
        Fault::StopConnectedNode => {
            cluster.nodes[0].stop().unwrap();
            tokio::time::sleep(Duration::from_secs(8)).await;
            cluster.nodes[0].boot().await.unwrap();
        }
        Fault::PauseMinority => {
            let minority = cluster.nodes.len() - 1;
            cluster.nodes[minority].pause();
            tokio::time::sleep(Duration::from_secs(12)).await;
            cluster.nodes[minority].resume();
        }
    }
    let retried = Arc::clone(&sender.stats);
    eprintln!("{fault:?}:");
    finish(stack, &corpus, sender, apps).await.unwrap();
    let (unready, resumed) = monitor.finish(fault_at).await;
    eprintln!(
        "{fault:?}: ingest unready {unready:.1} s, {} answers not 2xx (retried), longest pause in applying {resumed:.1} s",
        retried.retried.load(Ordering::Relaxed)
    );
    cluster
        .wait_running(cluster.nodes.len(), Duration::from_secs(90))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_node_cluster_survives_node_faults() {
    tests::logs();
    let mut cluster = Cluster::start(3).await.unwrap();
    for (i, fault) in [
        Fault::KillApplyLeader,
        Fault::RollingRestart,
        Fault::StopConnectedNode,
        Fault::PauseMinority,
    ]
    .into_iter()
    .enumerate()
    {
        scenario(&mut cluster, fault, 40 + i as u64).await;
    }
}
