//! Start-up configuration as the binaries see it: a value that cannot be used stops the process
//! at once (exit code 2, one line naming the variable, no value echoed). (That no password is
//! logged is `secrets_in_logs.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;
use testkit::procs::free_port;
use tests::startup::{MARK, hostile, run, text, webhook_secret};

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
    let bad_endpoints = temp_file(
        "endpoints.toml",
        &format!("[[endpoint]]\nname = \"a\"\nurl = \"https://x\"\nsecret = whsec_{MARK}\n"),
    );
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
        case(
            "ingest",
            "duration",
            "INGEST_CONFIRM_TIMEOUT",
            "5 parsecs",
            "unknown time unit",
        ),
        case(
            "worker",
            "duration",
            "WORKER_SHUTDOWN_TIMEOUT",
            "0s",
            "must be above zero",
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
        case(
            "worker",
            "secret",
            "CHANGES_WEBHOOK_SECRET",
            &format!("whsec_{MARK}!!"),
            "base64",
        ),
        case(
            "worker",
            "url",
            "CHANGES_WEBHOOK_URL",
            &format!("ftp://app:{MARK}@app.internal/in"),
            "http",
        ),
        case(
            "worker",
            "file",
            "CHANGES_WEBHOOKS_FILE",
            bad_endpoints.to_str().unwrap(),
            "TOML",
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
