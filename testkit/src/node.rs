//! RabbitMQ nodes of a test's own, separate from the machine's broker: each with its own node
//! name, ports, data and log directories, and an Erlang cookie shared only by the nodes of one
//! test. Debian's server runs as the `rabbitmq` user, so the directories belong to it. A node
//! can be stopped, killed, paused (SIGSTOP) and started again on the same data; dropping it
//! stops it.

use crate::procs::free_port;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

pub struct Node {
    /// `scimN{port}@localhost`.
    pub name: String,
    /// The AMQP (or AMQPS) listener.
    pub port: u16,
    dist_port: u16,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl Node {
    /// Prepares the node's directory (`rabbitmq.conf` = `listener` plus `extra_conf`) and
    /// starts it; returns once its listener accepts connections.
    pub async fn start(
        dir: &Path,
        cookie: &str,
        extra_conf: &str,
        tls: bool,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = free_port();
        let listener = if tls {
            format!("listeners.tcp = none\nlisteners.ssl.default = 127.0.0.1:{port}\n")
        } else {
            format!("listeners.tcp.default = 127.0.0.1:{port}\n")
        };
        std::fs::write(dir.join("rabbitmq.conf"), format!("{listener}{extra_conf}"))?;
        std::fs::write(dir.join("rabbitmq-env.conf"), "")?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        std::fs::write(dir.join(".erlang.cookie"), cookie)?;
        run(Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(dir))?;
        run(Command::new("chmod")
            .arg("400")
            .arg(dir.join(".erlang.cookie")))?;
        let mut node = Self {
            name: format!("scim{port}@localhost"),
            port,
            dist_port: free_port(),
            dir: dir.to_owned(),
            child: None,
        };
        node.boot().await?;
        Ok(node)
    }

    /// Starts the server process (again) on the node's data and waits for its listener.
    pub async fn boot(&mut self) -> anyhow::Result<()> {
        let child = self
            .as_rabbitmq(SERVER)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "node {} did not listen on {} within 90 s (logs in {})",
                self.name,
                self.port,
                self.dir.join("log").display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    /// A command run as the `rabbitmq` user with this node's environment.
    fn as_rabbitmq(&self, program: &str) -> Command {
        let d = self.dir.display();
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "rabbitmq", "--", "env"])
            .arg(format!("HOME={d}"))
            .arg(format!("RABBITMQ_NODENAME={}", self.name))
            .arg(format!("RABBITMQ_DIST_PORT={}", self.dist_port))
            .arg(format!("RABBITMQ_CONF_ENV_FILE={d}/rabbitmq-env.conf"))
            .arg(format!("RABBITMQ_CONFIG_FILE={d}/rabbitmq.conf"))
            .arg(format!("RABBITMQ_ADVANCED_CONFIG_FILE={d}/advanced.config"))
            .arg(format!("RABBITMQ_ENABLED_PLUGINS_FILE={d}/enabled_plugins"))
            .arg(format!("RABBITMQ_MNESIA_BASE={d}/mnesia"))
            .arg(format!("RABBITMQ_LOG_BASE={d}/log"))
            .arg(format!("RABBITMQ_FEATURE_FLAGS_FILE={d}/feature_flags"))
            .arg(format!("RABBITMQ_PID_FILE={d}/pid"))
            .arg(program);
        cmd
    }

    /// `rabbitmqctl -n <this node> args…`; its output.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .as_rabbitmq(CTL)
            .args(["-q", "-n", &self.name])
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "rabbitmqctl -n {} {args:?}: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The Erlang VM's process id.
    pub fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("pid"))
            .ok()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args([signal, &pid]).output();
        }
    }

    /// `kill -9` of the VM.
    pub fn kill9(&mut self) {
        self.signal("-KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
    }

    /// A graceful stop of the whole node.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.ctl(&["stop"])?;
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        Ok(())
    }

    /// SIGSTOP: the node neither answers nor refuses (a cut-off node, as its peers see it).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// `amqp://` (or `amqps://`) guest URL of this node (guest is allowed from loopback).
    pub fn url(&self, tls: bool) -> String {
        let scheme = if tls { "amqps" } else { "amqp" };
        let host = if tls { "localhost" } else { "127.0.0.1" };
        format!("{scheme}://guest:guest@{host}:{}/%2f", self.port)
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status()?;
    anyhow::ensure!(status.success(), "{cmd:?}: {status}");
    Ok(())
}

impl Drop for Node {
    fn drop(&mut self) {
        self.resume();
        let _ = self
            .as_rabbitmq(CTL)
            .args(["-q", "-n", &self.name, "stop"])
            .output();
        self.signal("-KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh cookie for the nodes of one test.
pub fn cookie() -> String {
    format!("SCIMNODE{:016x}", rand::random::<u64>())
}
