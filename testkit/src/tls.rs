//! TLS for the tests: a throwaway PKI (a CA, a server certificate for `localhost`, a client
//! certificate, and a CA that signed nothing of these), and a RabbitMQ node of the test's own
//! with only a TLS listener: its own node name, ports, data and log directories and Erlang
//! cookie, separate from the machine's broker. Debian's server runs as the `rabbitmq` user, so
//! its directory belongs to that user.

use crate::procs::free_port;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// PEM files in one directory.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed none of the certificates above.
    pub wrong_ca: PathBuf,
}

fn ca(name: &str) -> anyhow::Result<(CertificateParams, KeyPair, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key)?.pem();
    Ok((params, key, pem))
}

impl Pki {
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (ca_params, ca_key, ca_pem) = ca("scim test CA")?;
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>| -> anyhow::Result<(String, String)> {
            let key = KeyPair::generate()?;
            let cert = CertificateParams::new(names)?.signed_by(&key, &issuer)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (server_cert, server_key) = leaf(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        let (client_cert, client_key) = leaf(vec!["scim-worker".to_owned()])?;
        let (_, _, wrong_pem) = ca("someone else's CA")?;
        let write = |name: &str, pem: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, pem)?;
            Ok(path)
        };
        Ok(Self {
            ca: write("ca.pem", &ca_pem)?,
            server_cert: write("server.pem", &server_cert)?,
            server_key: write("server.key", &server_key)?,
            client_cert: write("client.pem", &client_cert)?,
            client_key: write("client.key", &client_key)?,
            wrong_ca: write("wrong-ca.pem", &wrong_pem)?,
        })
    }
}

/// A RabbitMQ node with a TLS listener on `port`; stopped when dropped.
pub struct TlsBroker {
    pub port: u16,
    pub node: String,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl TlsBroker {
    /// Starts the node in `dir` (created; it must not be the PKI's directory's parent of
    /// anything the test still needs) with `pki`'s server certificate; returns once the TLS
    /// port accepts connections.
    pub async fn start(dir: &Path, pki: &Pki) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = free_port();
        let node = format!("scimtls{}@localhost", port);
        let conf = format!(
            "listeners.tcp = none\n\
             listeners.ssl.default = 127.0.0.1:{port}\n\
             ssl_options.cacertfile = {}\n\
             ssl_options.certfile = {}\n\
             ssl_options.keyfile = {}\n\
             ssl_options.verify = verify_peer\n\
             ssl_options.fail_if_no_peer_cert = false\n",
            pki.ca.display(),
            pki.server_cert.display(),
            pki.server_key.display(),
        );
        std::fs::write(dir.join("rabbitmq.conf"), conf)?;
        std::fs::write(dir.join("rabbitmq-env.conf"), "")?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        let cookie = format!("SCIMTLS{:016x}", rand::random::<u64>());
        std::fs::write(dir.join(".erlang.cookie"), cookie)?;
        own(dir)?;
        let cookie_mode = Command::new("chmod")
            .arg("400")
            .arg(dir.join(".erlang.cookie"))
            .status()?;
        anyhow::ensure!(cookie_mode.success(), "chmod the cookie");
        let mut broker = Self {
            port,
            node,
            dir: dir.to_owned(),
            child: None,
        };
        let child = broker
            .as_rabbitmq("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        broker.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the TLS node did not listen on {port} within 90 s (logs in {})",
                dir.join("log").display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(broker)
    }

    /// `amqps://` to this node (guest is allowed: the connection comes from loopback).
    pub fn url(&self) -> String {
        format!("amqps://guest:guest@localhost:{}/%2f", self.port)
    }

    /// A command run as the `rabbitmq` user with this node's environment.
    fn as_rabbitmq(&self, program: &str) -> Command {
        let d = self.dir.display();
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "rabbitmq", "--", "env"])
            .arg(format!("HOME={d}"))
            .arg(format!("RABBITMQ_NODENAME={}", self.node))
            .arg(format!("RABBITMQ_DIST_PORT={}", free_port()))
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

    /// `rabbitmqctl` against this node (e.g. `list_connections ssl`).
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .as_rabbitmq("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .args(["-q", "-n", &self.node])
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Gives the directory to the `rabbitmq` user.
fn own(dir: &Path) -> anyhow::Result<()> {
    let status = Command::new("chown")
        .args(["-R", "rabbitmq:rabbitmq"])
        .arg(dir)
        .status()?;
    anyhow::ensure!(status.success(), "chown {}", dir.display());
    Ok(())
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self
            .as_rabbitmq("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .args(["-q", "-n", &self.node, "stop"])
            .output();
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).output();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
