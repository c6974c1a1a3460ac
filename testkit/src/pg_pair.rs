//! A PostgreSQL primary and a streaming standby of a test's own, separate from the machine's
//! server: Debian's PostgreSQL 15 binaries run as the `postgres` user on data directories under
//! a temporary directory that belongs to it (`initdb`, then `pg_basebackup -R` for the
//! standby), each with its own port and socket directory, TLS on (the machine's snakeoil
//! certificate), replication synchronous or asynchronous. The primary can be killed (`kill -9`
//! of the postmaster and its processes, as a crashed machine), stopped (fast shutdown, a planned
//! switchover) and started again; the standby promoted. Dropping the pair stops both servers
//! and removes the directory, also when a scenario panics.

use crate::procs::free_port;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BIN: &str = "/usr/lib/postgresql/15/bin";
/// What the standby calls itself (`application_name`), as `synchronous_standby_names` names it.
const STANDBY_NAME: &str = "scim_standby";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// `synchronous_standby_names` names the standby, `synchronous_commit = on`: a commit
    /// returns once the standby has the WAL.
    Synchronous,
    /// The default of Patroni and CloudNativePG: a commit returns once the primary has it.
    Asynchronous,
}

/// One server of the pair.
pub struct Instance {
    pub port: u16,
    data: PathBuf,
}

pub struct PgPair {
    root: PathBuf,
    pub primary: Instance,
    pub standby: Instance,
    pub replication: Replication,
}

fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"])
        .arg(format!("{BIN}/{program}"));
    cmd
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn chown(path: &Path) -> anyhow::Result<()> {
    run(Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path))?;
    Ok(())
}

impl Instance {
    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        run(as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60"])
            .args(args))
    }

    /// Starts the server on its data directory and waits until it accepts connections.
    pub fn start(&self) -> anyhow::Result<()> {
        let log = self.data.join("server.log");
        self.pg_ctl(&["-l", &log.to_string_lossy(), "start"])?;
        Ok(())
    }

    /// A fast shutdown: sessions are ended, a standby receives all WAL before the primary
    /// exits.
    pub fn stop_fast(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-m", "fast", "stop"])?;
        Ok(())
    }

    /// Promotes a standby to primary and waits until it is one.
    pub fn promote(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["promote"])?;
        Ok(())
    }

    fn postmaster_pid(&self) -> Option<String> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()
            .map(|l| l.trim().to_owned())
            .filter(|p| !p.is_empty())
    }

    /// `kill -9` of the postmaster and, at once, of every process it started: the server is
    /// gone as with a crashed machine (nothing flushed, no goodbye to the standby).
    pub fn kill9(&self) {
        let Some(pid) = self.postmaster_pid() else {
            return;
        };
        let children = Command::new("pgrep")
            .args(["-P", &pid])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let _ = Command::new("kill").args(["-9", &pid]).output();
        for child in children.split_whitespace() {
            let _ = Command::new("kill").args(["-9", child]).output();
        }
        // The server is gone; its pid file would make the next start wait for it.
        let _ = std::fs::remove_file(self.data.join("postmaster.pid"));
    }

    /// `postgres://postgres@127.0.0.1:{port}` (trust authentication on loopback).
    pub fn base_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }
}

impl PgPair {
    /// Creates, configures and starts the primary, takes the standby from it with
    /// `pg_basebackup -R`, starts it and waits until it streams (and, synchronous, until the
    /// primary counts it as its synchronous standby).
    pub async fn start(replication: Replication) -> anyhow::Result<Self> {
        let root = std::env::temp_dir().join(format!("scim-pg-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&root)?;
        let pair = Self {
            primary: Instance {
                port: free_port(),
                data: root.join("primary"),
            },
            standby: Instance {
                port: free_port(),
                data: root.join("standby"),
            },
            root,
            replication,
        };
        chown(&pair.root)?;
        run(as_postgres("initdb")
            .arg("-D")
            .arg(&pair.primary.data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]))?;
        for (from, to) in [
            ("/etc/ssl/certs/ssl-cert-snakeoil.pem", "server.crt"),
            ("/etc/ssl/private/ssl-cert-snakeoil.key", "server.key"),
        ] {
            std::fs::copy(from, pair.primary.data.join(to))?;
        }
        run(Command::new("chmod")
            .arg("600")
            .arg(pair.primary.data.join("server.key")))?;
        let synchronous = match replication {
            Replication::Synchronous => STANDBY_NAME,
            Replication::Asynchronous => "",
        };
        let conf = format!(
            "\n# scim-provisioning test pair\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{root}'\n\
             ssl = on\n\
             ssl_cert_file = 'server.crt'\n\
             ssl_key_file = 'server.key'\n\
             wal_level = replica\n\
             max_wal_senders = 5\n\
             wal_keep_size = '512MB'\n\
             hot_standby = on\n\
             shared_buffers = '64MB'\n\
             max_connections = 200\n\
             synchronous_commit = on\n",
            port = pair.primary.port,
            root = pair.root.display(),
        );
        append(&pair.primary.data.join("postgresql.conf"), &conf)?;
        chown(&pair.root)?;
        pair.primary.start()?;
        run(as_postgres("pg_basebackup")
            .arg("-D")
            .arg(&pair.standby.data)
            .args(["-R", "-X", "stream", "--no-sync", "-d"])
            .arg(format!(
                "host=127.0.0.1 port={} user=postgres application_name={STANDBY_NAME}",
                pair.primary.port
            )))?;
        append(
            &pair.standby.data.join("postgresql.conf"),
            &format!("port = {}\n", pair.standby.port),
        )?;
        append(
            &pair.standby.data.join("postgresql.auto.conf"),
            &format!(
                "primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={STANDBY_NAME}'\n",
                pair.primary.port
            ),
        )?;
        chown(&pair.root)?;
        pair.standby.start()?;
        // Only the primary waits for its standby: the standby's copy of the configuration has
        // no synchronous standby, so once promoted (alone, as a pair's survivor is) it commits
        // on its own instead of waiting for a standby that does not exist. A third instance
        // keeps the survivor synchronous (the CloudNativePG deploy runs three).
        append(
            &pair.primary.data.join("postgresql.conf"),
            &format!("synchronous_standby_names = '{synchronous}'\n"),
        )?;
        pair.primary.pg_ctl(&["reload"])?;
        pair.wait_streaming(Duration::from_secs(60)).await?;
        Ok(pair)
    }

    /// Waits until the primary sees its standby streaming (as its synchronous one, when
    /// replication is synchronous).
    pub async fn wait_streaming(&self, timeout: Duration) -> anyhow::Result<()> {
        let want = match self.replication {
            Replication::Synchronous => "sync",
            Replication::Asynchronous => "async",
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let state = run(as_postgres("psql")
                .args(["-h", "127.0.0.1", "-p", &self.primary.port.to_string()])
                .args(["-U", "postgres", "-d", "postgres", "-Atc"])
                .arg("SELECT state || '/' || sync_state FROM pg_stat_replication"))
            .unwrap_or_default();
            if state.trim() == format!("streaming/{want}") {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the standby did not stream within {timeout:?} (pg_stat_replication: {state:?})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Both servers, the read-write one chosen at each connection:
    /// `postgres://postgres@127.0.0.1:P1,127.0.0.1:P2` (append `/{db}?target_session_attrs=read-write`).
    pub fn hosts(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}",
            self.primary.port, self.standby.port
        )
    }

    /// `database` on whichever server is read-write.
    pub fn url(&self, database: &str) -> String {
        format!(
            "{}/{database}?target_session_attrs=read-write",
            self.hosts()
        )
    }
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

impl Drop for PgPair {
    fn drop(&mut self) {
        for i in [&self.primary, &self.standby] {
            let _ = i.pg_ctl(&["-m", "immediate", "stop"]);
            i.kill9();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
