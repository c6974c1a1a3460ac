//! `amqps://` for real: a RabbitMQ node of the test's own with only a TLS listener and a
//! certificate from a throwaway CA. Ingest and worker connect with `AMQP_CA_FILE`, the events
//! flow and the change feed is published, and the broker lists every connection as TLS; a
//! wrong CA (or none) fails with a clear message; a client certificate is accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use testkit::stack::Stack;
use testkit::tls::{Pki, tls_node};

/// `worker migrate --topology` against the stack's broker with these variables: (success, stderr).
async fn migrate(stack: &Stack, env: &[(&str, &str)]) -> (bool, String) {
    let out = tokio::process::Command::new(testkit::procs::binary("worker").unwrap())
        .args(["migrate", "--topology"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AMQP_URL", &stack.amqp)
        .env("AMQP_PREFIX", &stack.prefix)
        .env("DATABASE_URL", &stack.worker_db_url)
        .env("LOG_FORMAT", "pretty")
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_worker_over_amqps_with_a_private_ca() {
    let root = std::env::temp_dir().join(format!("scim-tls-{:08x}", rand::random::<u32>()));
    let pki = Pki::create(&root.join("pki")).unwrap();
    let broker = tls_node(&root.join("node"), &pki).await.unwrap();
    let mut stack = Stack::new("tls").await.unwrap();
    stack.amqp = broker.url(true);
    stack.ingest_amqp = broker.url(true);
    let ca = pki.ca.display().to_string();

    // The public roots alone, or a CA that did not sign the broker's certificate: refused.
    for env in [
        vec![],
        vec![("AMQP_CA_FILE", pki.wrong_ca.to_str().unwrap())],
    ] {
        let (ok, stderr) = migrate(&stack, &env).await;
        assert!(!ok, "connected with {env:?}");
        assert!(
            stderr.contains("invalid peer certificate") && stderr.contains("UnknownIssuer"),
            "{stderr}"
        );
    }
    // A CA file that is not there: a start-up error naming the variable.
    let (ok, stderr) = migrate(&stack, &[("AMQP_CA_FILE", "/nonexistent/ca.pem")]).await;
    assert!(
        !ok && stderr.contains("AMQP_CA_FILE `/nonexistent/ca.pem`"),
        "{stderr}"
    );
    // With a client certificate signed by the broker's CA (which verifies peers).
    let (ok, stderr) = migrate(
        &stack,
        &[
            ("AMQP_CA_FILE", ca.as_str()),
            ("AMQP_CLIENT_CERT_FILE", pki.client_cert.to_str().unwrap()),
            ("AMQP_CLIENT_KEY_FILE", pki.client_key.to_str().unwrap()),
        ],
    )
    .await;
    assert!(ok, "{stderr}");

    stack.env.push(("AMQP_CA_FILE".to_owned(), ca.clone()));
    stack.start_worker().await.unwrap();
    stack.start_ingest().await.unwrap();
    stack.deliver_fixtures().await.unwrap();
    assert!(
        testkit::wait_until(Duration::from_secs(20), || async {
            stack
                .count("SELECT count(*) AS n FROM changes WHERE published_at IS NULL")
                .await
                .unwrap_or(1)
                == 0
        })
        .await,
        "the relay published the change feed over amqps"
    );
    // The broker's own view: every connection (ingest's, the worker's two) is TLS.
    let listed = broker
        .ctl(&["list_connections", "--no-table-headers", "name", "ssl"])
        .unwrap();
    let rows: Vec<&str> = listed.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(rows.len() >= 3, "{listed}");
    assert!(
        rows.iter().all(|r| r.trim_end().ends_with("true")),
        "{listed}"
    );
    stack.teardown().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&root);
}
