//! The binaries started the way an operator starts them, for the start-up suites
//! (`startup_config.rs`, `secrets_in_logs.rs`): exactly the given environment, output captured,
//! killed if still running after a while; and the hostile values those suites feed them.
//! Test support, like `testkit`: a process that cannot be started fails the test there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use testkit::procs::{binary, free_port};

/// In every password and secret below, and nowhere else: any output holding it leaked one.
pub const MARK: &str = "Zq7k";

/// A password with every character that ends a URL's user information early.
pub fn hostile(n: u32) -> String {
    format!("{MARK}{n}/?#@:,%pw")
}

/// Percent-encoded, as a URL must carry it.
pub fn encoded(password: &str) -> String {
    password
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A webhook secret that parses (whsec_ + base64 of a key holding the mark).
pub fn webhook_secret() -> String {
    format!("whsec_{}", "WnE3a1NlY3JldEtleQ==") // base64("Zq7kSecretKey")
}

/// Starts `name` with exactly `env`, lets it run up to `run_for`, kills it if it still runs,
/// and returns its output and how long it ran.
pub fn run(
    name: &str,
    args: &[&str],
    env: &[(&str, String)],
    run_for: Duration,
) -> (Output, Duration) {
    let mut cmd = Command::new(binary(name).expect("the binaries are built"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    while started.elapsed() < run_for {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ran = started.elapsed();
    let _ = child.kill();
    (child.wait_with_output().unwrap(), ran)
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    free_port()
}
