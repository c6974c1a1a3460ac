//! A RabbitMQ cluster of the test's own: `size` nodes (`crate::node`) sharing one cookie, the
//! others joined to the first with `join_cluster`, `pause_minority` as the deploy sets it. The
//! nodes are stopped and their directories removed when the cluster is dropped, whatever the
//! test did.

use crate::node::{Node, cookie};
use std::path::PathBuf;
use std::time::Duration;

pub struct Cluster {
    pub nodes: Vec<Node>,
    root: PathBuf,
}

impl Cluster {
    pub async fn start(size: usize) -> anyhow::Result<Self> {
        let root = std::env::temp_dir().join(format!("scim-cluster-{:08x}", rand::random::<u32>()));
        let cookie = cookie();
        let conf = "cluster_partition_handling = pause_minority\n";
        let starts = (0..size).map(|i| {
            let dir = root.join(format!("n{i}"));
            let cookie = cookie.clone();
            async move { Node::start(&dir, &cookie, conf, false).await }
        });
        let nodes = futures_util::future::try_join_all(starts).await?;
        let cluster = Self { nodes, root };
        let first = cluster.nodes[0].name.clone();
        for node in &cluster.nodes[1..] {
            for step in [
                vec!["stop_app"],
                vec!["reset"],
                vec!["join_cluster", first.as_str()],
                vec!["start_app"],
            ] {
                ctl_retrying(node, &step).await?;
            }
        }
        cluster.wait_running(size, Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// Every node, comma-separated: what `AMQP_URL` holds for a cluster.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.url(false))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until `count` nodes are running, as any node that answers sees it.
    pub async fn wait_running(&self, count: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let running = self.nodes.iter().find_map(|n| {
                let status = n.ctl(&["cluster_status", "--formatter", "json"]).ok()?;
                let status: serde_json::Value = serde_json::from_str(&status).ok()?;
                status["running_nodes"].as_array().map(Vec::len)
            });
            if running == Some(count) {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{running:?} of {count} nodes running after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The node that leads quorum queue `queue`, as a node that answers sees it.
    pub fn leader_of(&self, queue: &str) -> Option<usize> {
        let listed = self.nodes.iter().find_map(|n| {
            n.ctl(&["list_queues", "--no-table-headers", "name", "leader"])
                .ok()
        })?;
        let leader = listed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(queue))?
            .split_whitespace()
            .nth(1)?
            .to_owned();
        self.nodes.iter().position(|n| n.name == leader)
    }
}

/// A node whose listener is up may still refuse the CLI for a moment (its distribution is
/// still starting, the machine is busy): each step is tried for up to 60 s.
async fn ctl_retrying(node: &Node, args: &[&str]) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match node.ctl(args) {
            Ok(out) => return Ok(out),
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("cluster set-up: {args:?} on {}: {e}; again", node.name);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Nodes stop in their own drop; then the directory they shared a parent in goes.
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
