//! The monitoring, live: a real Prometheus server scrapes ingest, the worker and RabbitMQ's
//! own prometheus plugin (as the deploy's PodMonitors do) and evaluates the alert rules while
//! the end-to-end corpus runs. Then every PromQL expression of the Grafana dashboard, and every
//! operand of every alert, is evaluated through the HTTP API and must return data — no panel
//! silently empty — the alert rules evaluate without error, the one alert the run provokes
//! (the deprovisioning brake) fires, and the numbers agree: applied ≈ accepted, published =
//! written. Its own test binary: it needs the prometheus binary (scripts/tools.sh).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use testkit::stack::{Delivery, Stack, send_all};
use tests::corpus::{delivery_order, generate};
use tests::prometheus::{Job, Prometheus};
use tests::promql::operands;

use tests::root;

fn dashboard_exprs() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/scim-provisioning.json")).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push((
                p["title"].as_str().unwrap_or("?").to_owned(),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

fn alert_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yaml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
    let mut out = Vec::new();
    for group in docs[0]["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            out.push((
                rule["alert"].as_str().unwrap().to_owned(),
                rule["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_everything_and_every_panel_and_alert_has_data() {
    let corpus = generate(7, 8, 30, 1500);
    let mut stack = Stack::new("prom").await.unwrap();
    // The application the worker pushes changes to.
    let app = testkit::receiver::Receiver::start_on(
        stack.push_port,
        testkit::SECRET,
        Duration::from_millis(1),
    )
    .await;
    // The brake on, tight: the corpus deactivates whole organizations, so one gets held and
    // its alert has something to fire on.
    stack
        .start_worker_with(&[
            ("DEPROVISION_BRAKE_PERCENT", "10"),
            ("DEPROVISION_BRAKE_MIN", "3"),
        ])
        .await
        .unwrap();
    stack.start_ingest().await.unwrap();
    let worker_port = stack.workers[0].port;
    let prometheus = Prometheus::start(
        &[
            Job {
                name: "scim-ingest",
                targets: vec![format!("127.0.0.1:{}", stack.ingest_port)],
                path: "/metrics",
                params: vec![],
            },
            Job {
                name: "scim-worker",
                targets: vec![format!("127.0.0.1:{worker_port}")],
                path: "/metrics",
                params: vec![],
            },
            Job {
                name: "rabbitmq",
                targets: vec!["127.0.0.1:15692".into()],
                path: "/metrics/detailed",
                params: vec![(
                    "family",
                    vec!["queue_coarse_metrics", "queue_consumer_count"],
                )],
            },
        ],
        &[root().join("deploy/prometheus/alerts.yaml")],
    )
    .await
    .unwrap();

    let bodies = delivery_order(&corpus.events, 0.10, 3);
    let stats = Arc::new(Delivery::default());
    send_all(
        &stack.client,
        &stack.webhook_url(),
        bodies.clone(),
        16,
        Arc::clone(&stats),
    )
    .await
    .unwrap();
    let accepted = stats.accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(accepted, bodies.len());
    stack
        .wait_processed(corpus.distinct_ids, Duration::from_secs(180))
        .await
        .unwrap();
    let held = stack
        .count("SELECT count(*) AS n FROM held_events")
        .await
        .unwrap();
    assert!(held > 0, "the corpus engaged the brake somewhere");

    // Every target up, and the counters caught up with the run (a few scrapes later).
    let settled = testkit::wait_until(Duration::from_secs(60), || async {
        let targets = prometheus.targets().await.unwrap_or_default();
        let up = targets.len() == 3 && targets.iter().all(|t| t["health"] == "up");
        let handled = prometheus
            .scalar(r#"sum(scim_worker_events_total{outcome!="retried"})"#)
            .await
            .unwrap_or(0.0);
        let published = prometheus
            .scalar("sum(scim_changes_published_total) - sum(scim_changes_written_total)")
            .await
            .unwrap_or(-1.0);
        up && handled >= accepted as f64 && published == 0.0
    })
    .await;
    assert!(
        settled,
        "targets {:?}\n{}",
        prometheus.targets().await,
        prometheus.log()
    );
    // Rates over [5m] need two samples of a change: the run is seconds old, give it a few.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut empty = Vec::new();
    for (panel, expr) in dashboard_exprs() {
        if prometheus.query(&expr).await.unwrap().is_empty() {
            empty.push(format!("panel {panel:?}: {expr}"));
        }
    }
    let alerts = alert_exprs();
    assert_eq!(alerts.len(), 10);
    for (alert, expr) in &alerts {
        for operand in operands(expr) {
            if prometheus.query(&operand).await.unwrap().is_empty() {
                empty.push(format!("alert {alert}: {operand}"));
            }
        }
    }
    assert!(empty.is_empty(), "no data for:\n{}", empty.join("\n"));

    // Ratios: every accepted webhook was handled once (applied, duplicate, stale, ignored or
    // held), and the relay published every change written.
    let handled = prometheus
        .scalar(r#"sum(scim_worker_events_total{outcome!="retried"})"#)
        .await
        .unwrap();
    let queued = prometheus
        .scalar(r#"sum(scim_ingest_requests_total{outcome="queued"})"#)
        .await
        .unwrap();
    assert_eq!(queued, accepted as f64);
    assert_eq!(handled, queued, "applied ≈ accepted");
    let applied = prometheus
        .scalar(r#"sum(scim_worker_events_total{outcome="applied"})"#)
        .await
        .unwrap();
    let applied_rows = stack
        .count("SELECT count(*) AS n FROM processed_events WHERE outcome = 'applied'")
        .await
        .unwrap();
    assert_eq!(
        applied, applied_rows as f64,
        "the metric agrees with the database"
    );
    // Push delivery delivered every change written (each once: nothing failed here).
    let written = stack
        .count("SELECT count(*) AS n FROM changes")
        .await
        .unwrap();
    assert!(
        testkit::wait_until(Duration::from_secs(30), || async {
            prometheus
                .scalar("sum(scim_changes_webhook_delivered_total)")
                .await
                .is_ok_and(|d| d == written as f64)
        })
        .await,
        "delivered {:?} of {written}",
        prometheus
            .scalar("sum(scim_changes_webhook_delivered_total)")
            .await
    );
    assert_eq!(app.distinct(), usize::try_from(written).unwrap());
    let consumers = prometheus
        .scalar(&format!(
            r#"sum(rabbitmq_detailed_queue_consumers{{queue="{}"}})"#,
            stack.topology.apply_queue()
        ))
        .await
        .unwrap();
    assert!(consumers >= 1.0, "RabbitMQ's own view of the worker");

    // The rules evaluate cleanly; the brake's alert fires for a held organization, the
    // others stay quiet on this healthy run.
    let fired = testkit::wait_until(Duration::from_secs(30), || async {
        prometheus
            .rules()
            .await
            .unwrap()
            .iter()
            .any(|r| r["name"] == "ScimDeprovisionBrakeEngaged" && r["state"] == "firing")
    })
    .await;
    let rules = prometheus.rules().await.unwrap();
    assert!(fired, "{rules:?}");
    assert_eq!(rules.len(), 10);
    for r in &rules {
        assert_eq!(r["health"], "ok", "{r}");
        if r["name"] != "ScimDeprovisionBrakeEngaged" && r["name"] != "ScimEventLagHigh" {
            // The corpus' events occurred in 2025: their lag is genuinely high (pending only,
            // its `for` is 15 minutes); everything else is quiet.
            assert_eq!(r["state"], "inactive", "{r}");
        }
    }

    prometheus.stop().await;
    stack.teardown().await;
}
