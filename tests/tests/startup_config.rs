//! Start-up configuration as the binaries see it: a value that cannot be used stops the process
//! at once (exit code 2, one line naming the variable, no value echoed), and no password of a
//! multi-node `AMQP_URL`, a `DATABASE_URL` or the Scalekit secret reaches any output at any log
//! level.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use testkit::procs::{binary, free_port};

/// In every password and secret below, and nowhere else: any output holding it leaked one.
const MARK: &str = "Zq7k";

/// A password with every character that ends a URL's user information early.
fn hostile(n: u32) -> String {
    format!("{MARK}{n}/?#@:,%pw")
}

/// Percent-encoded, as a URL must carry it.
fn encoded(password: &str) -> String {
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
fn webhook_secret() -> String {
    format!("whsec_{}", "WnE3a1NlY3JldEtleQ==") // base64("Zq7kSecretKey")
}

/// Starts `name` with exactly `env`, lets it run up to `run_for`, kills it if it still runs,
/// and returns its output and how long it ran.
fn run(name: &str, args: &[&str], env: &[(&str, String)], run_for: Duration) -> (Output, Duration) {
    let mut cmd = Command::new(binary(name).unwrap());
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

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn closed_port() -> u16 {
    free_port()
}

#[test]
fn no_password_reaches_any_output_at_any_log_level() {
    let passwords: Vec<String> = (1..=5).map(hostile).collect();
    let nodes: Vec<String> = passwords[..3]
        .iter()
        .map(|pw| {
            format!(
                "amqp://scim:{}@127.0.0.1:{}/%2f",
                encoded(pw),
                closed_port()
            )
        })
        .collect();
    let amqp_url = nodes.join(",");
    let database_url = format!(
        "postgres://scim:{}@127.0.0.1:{}/scim?connect_timeout=1",
        encoded(&passwords[3]),
        closed_port()
    );
    // A list whose passwords hold raw separators does not parse: the error must hide them too.
    let raw_amqp_url = passwords[..3]
        .iter()
        .map(|pw| format!("amqp://scim:{pw}@127.0.0.1:{}/%2f", closed_port()))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    for level in ["trace", "debug", "info", "warn", "error"] {
        for format in ["json", "pretty"] {
            for amqp in [&amqp_url, &raw_amqp_url] {
                let common = |listen: &'static str| {
                    vec![
                        ("RUST_LOG", level.to_owned()),
                        ("LOG_FORMAT", format.to_owned()),
                        ("AMQP_URL", amqp.clone()),
                        (listen, "127.0.0.1:0".to_owned()),
                    ]
                };
                let mut ingest = common("INGEST_LISTEN");
                ingest.push(("SCALEKIT_WEBHOOK_SECRET", webhook_secret()));
                let mut worker = common("WORKER_LISTEN");
                worker.extend([
                    ("DATABASE_URL", database_url.clone()),
                    (
                        "SCALEKIT_ENVIRONMENT_URL",
                        format!("http://127.0.0.1:{}", closed_port()),
                    ),
                    ("SCALEKIT_CLIENT_ID", "skc_1".to_owned()),
                    ("SCALEKIT_CLIENT_SECRET", passwords[4].clone()),
                    ("SYNC_INTERVAL", "1s".to_owned()),
                ]);
                let label = format!(
                    "{level}/{format}/{}",
                    if amqp == &amqp_url { "encoded" } else { "raw" }
                );
                children.push((
                    format!("ingest {label}"),
                    std::thread::spawn(move || {
                        run("ingest", &[], &ingest, Duration::from_secs(4)).0
                    }),
                ));
                children.push((
                    format!("worker {label}"),
                    std::thread::spawn(move || {
                        run("worker", &[], &worker, Duration::from_secs(4)).0
                    }),
                ));
            }
        }
    }
    let mut trace_lines = 0;
    for (label, child) in children {
        let out = text(&child.join().unwrap());
        for pw in &passwords {
            assert!(
                !out.contains(pw.as_str()),
                "{label} printed a raw password:\n{out}"
            );
            assert!(
                !out.contains(&encoded(pw)),
                "{label} printed an encoded password:\n{out}"
            );
        }
        assert!(
            !out.contains(MARK),
            "{label} printed part of a secret:\n{out}"
        );
        if label.contains("trace/") && label.ends_with("encoded") {
            // Running, failing to reach every node and the database, and saying so.
            assert!(
                out.contains("127.0.0.1"),
                "{label} said nothing of its nodes:\n{out}"
            );
            trace_lines += out.lines().count();
        }
        if label.ends_with("raw") {
            assert!(
                out.contains("AMQP_URL"),
                "{label} did not name the variable:\n{out}"
            );
        }
    }
    assert!(
        trace_lines > 20,
        "the trace runs printed {trace_lines} lines"
    );
}

/// A file in a fresh temporary directory.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "scim-config-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// One bad value: the binary, the variable, the value and what the line must say.
struct Case {
    binary: &'static str,
    kind: &'static str,
    var: &'static str,
    value: String,
    says: &'static str,
}

fn case(
    binary: &'static str,
    kind: &'static str,
    var: &'static str,
    value: &str,
    says: &'static str,
) -> Case {
    Case {
        binary,
        kind,
        var,
        value: value.to_owned(),
        says,
    }
}

#[test]
fn a_bad_value_stops_the_process_at_once_naming_the_variable() {
    let bad_toml = temp_file("roles.toml", "[default]\nadmins = = \"x\"\n");
    let not_pem = temp_file("ca.pem", "not a certificate\n");
    let bad_toml = bad_toml.to_string_lossy().into_owned();
    let not_pem = not_pem.to_string_lossy().into_owned();
    let hostile_amqp = format!("amqp:scim:{}@127.0.0.1:5672:x/%2f", hostile(1));
    let second_bad = format!(
        "amqp://scim:{MARK}a@127.0.0.1:5672/%2f,amqp://scim:{MARK}b@127.0.0.1:notaport/%2f"
    );
    let cases = [
        // URLs
        case(
            "ingest",
            "url",
            "AMQP_URL",
            &hostile_amqp,
            "not an amqp:// or amqps:// URL",
        ),
        case(
            "worker",
            "url",
            "AMQP_URL",
            &hostile_amqp,
            "not an amqp:// or amqps:// URL",
        ),
        case("ingest", "url", "AMQP_URL", &second_bad, "node 2 of 2"),
        case("worker", "url", "AMQP_URL", &second_bad, "node 2 of 2"),
        case(
            "worker",
            "url",
            "DATABASE_URL",
            &format!("postgres://scim:{MARK}@127.0.0.1:notaport/scim"),
            "not a PostgreSQL URL",
        ),
        case(
            "worker",
            "url",
            "DATABASE_URL",
            &format!("postgres://scim:{MARK}@127.0.0.1/scim?sslmode=sometimes"),
            "sslmode",
        ),
        case(
            "worker",
            "url",
            "SCALEKIT_ENVIRONMENT_URL",
            "acme.scalekit.com",
            "relative URL",
        ),
        // durations and numbers
        case(
            "worker",
            "duration",
            "DEPROVISION_BRAKE_WINDOW",
            "an hour",
            "DEPROVISION_BRAKE_WINDOW",
        ),
        case(
            "worker",
            "duration",
            "DATABASE_LOCK_TIMEOUT",
            "5 parsecs",
            "unknown time unit",
        ),
        case(
            "worker",
            "duration",
            "WORKER_RETRY_TIERS",
            "5s,0s",
            "a tier needs a delay",
        ),
        case(
            "ingest",
            "duration",
            "INGEST_CONFIRM_TIMEOUT_MS",
            "5s",
            "invalid digit",
        ),
        case(
            "ingest",
            "duration",
            "INGEST_BODY_TIMEOUT_SECONDS",
            "0",
            "not in 1..",
        ),
        // secrets
        case(
            "ingest",
            "secret",
            "SCALEKIT_WEBHOOK_SECRET",
            &format!("whsec_{MARK}!!"),
            "base64",
        ),
        case(
            "ingest",
            "secret",
            "SCALEKIT_WEBHOOK_SECRET",
            &format!("{MARK}secret"),
            "whsec_",
        ),
        case(
            "worker",
            "secret",
            "SCALEKIT_CLIENT_SECRET",
            " ",
            "must not be empty",
        ),
        // files
        case(
            "worker",
            "file",
            "ROLE_MAPPING_FILE",
            "/nonexistent/roles.toml",
            "cannot read role mapping file",
        ),
        case(
            "worker",
            "file",
            "ROLE_MAPPING_FILE",
            &bad_toml,
            "is invalid",
        ),
        case(
            "ingest",
            "file",
            "AMQP_CA_FILE",
            "/nonexistent/ca.pem",
            "No such file",
        ),
        case(
            "worker",
            "file",
            "AMQP_CA_FILE",
            &not_pem,
            "holds no PEM certificate",
        ),
        case(
            "worker",
            "file",
            "DATABASE_URL",
            &format!(
                "postgres://scim:{MARK}@127.0.0.1/scim?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"
            ),
            "sslrootcert",
        ),
    ];
    let mut kinds = std::collections::BTreeSet::new();
    let mut slowest = Duration::ZERO;
    for case in &cases {
        let mut env = vec![
            ("LOG_FORMAT", "json".to_owned()),
            ("RUST_LOG", "trace".to_owned()),
            ("INGEST_LISTEN", "127.0.0.1:0".to_owned()),
            ("WORKER_LISTEN", "127.0.0.1:0".to_owned()),
            // Reachable services: the process must stop on the value alone, not on a failure.
            (
                "AMQP_URL",
                "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            ),
        ];
        if case.binary == "ingest" && case.var != "SCALEKIT_WEBHOOK_SECRET" {
            env.push(("SCALEKIT_WEBHOOK_SECRET", webhook_secret()));
        }
        if case.var == "SCALEKIT_CLIENT_SECRET" {
            env.push((
                "SCALEKIT_ENVIRONMENT_URL",
                "https://acme.scalekit.dev".to_owned(),
            ));
            env.push(("SCALEKIT_CLIENT_ID", "skc_1".to_owned()));
        }
        env.retain(|(k, _)| *k != case.var);
        env.push((case.var, case.value.clone()));
        let (out, ran) = run(case.binary, &[], &env, Duration::from_secs(10));
        let shown = text(&out);
        let label = format!("{} {}={:?}", case.binary, case.var, case.value);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{label}: still running or wrong exit code:\n{shown}"
        );
        let lines: Vec<&str> = shown.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{label}: one line expected:\n{shown}");
        let line = lines[0];
        assert!(line.starts_with("error: "), "{label}: {line}");
        assert!(
            line.contains(case.var),
            "{label}: the variable is not named: {line}"
        );
        assert!(
            line.contains(case.says),
            "{label}: `{}` expected in: {line}",
            case.says
        );
        assert!(
            !line.contains(MARK),
            "{label}: the value was echoed: {line}"
        );
        kinds.insert(case.kind);
        slowest = slowest.max(ran);
    }
    assert_eq!(kinds.len(), 4, "every kind of value is covered: {kinds:?}");
    eprintln!("slowest configuration error exit: {slowest:?}");
}

#[test]
fn a_missing_webhook_secret_is_a_configuration_error() {
    let env = [
        ("INGEST_LISTEN", "127.0.0.1:0".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
    ];
    let (out, _) = run("ingest", &[], &env, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("SCALEKIT_WEBHOOK_SECRET"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_pull_api_does_not_start_without_tokens() {
    let env = [
        ("WORKER_LISTEN", "127.0.0.1:0".to_owned()),
        ("CHANGES_API_LISTEN", "127.0.0.1:0".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
    ];
    let (out, _) = run("worker", &[], &env, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("CHANGES_API_TOKENS"), "{}", text(&out));
}
