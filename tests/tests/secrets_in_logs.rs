//! No password of a multi-node `AMQP_URL`, a `DATABASE_URL`, a push endpoint's URL, the Scalekit
//! client secret or a push signing secret reaches any output of either binary, at any log
//! level, in either log format.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tests::startup::{MARK, closed_port, encoded, hostile, run, text, webhook_secret};

#[test]
fn no_password_reaches_any_output_at_any_log_level() {
    let passwords: Vec<String> = (1..=6).map(hostile).collect();
    // A push endpoint with credentials in its URL, and its signing secret (base64 text below).
    let push_url = format!(
        "http://app:{}@127.0.0.1:{}/scim/changes",
        encoded(&passwords[5]),
        closed_port()
    );
    const PUSH_KEY: &str = "UHVzaFNpZ25pbmdLZXkxMjM0"; // base64("PushSigningKey1234")
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
                    ("CHANGES_WEBHOOK_URL", push_url.clone()),
                    ("CHANGES_WEBHOOK_SECRET", format!("whsec_{PUSH_KEY}")),
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
        assert!(
            !out.contains(PUSH_KEY),
            "{label} printed the push signing secret:\n{out}"
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
