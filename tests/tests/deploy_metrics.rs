//! The dashboard and the alert rules query only metrics the binaries export (or RabbitMQ's
//! own), and the dashboard shows the metrics `docs/operate.md` names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::collections::BTreeSet;
use tests::root;

const RABBITMQ_METRICS: [&str; 2] = [
    "rabbitmq_detailed_queue_messages_ready",
    "rabbitmq_detailed_queue_consumers",
];

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !text.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let starts = text[i..].starts_with("scim_") || text[i..].starts_with("rabbitmq_");
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && boundary {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |e| i + e);
            out.insert(text[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn dashboards_and_alerts_only_query_exported_metrics() {
    let exported = tests::exported_metrics();
    assert!(exported.contains("scim_ingest_requests_total"));
    assert!(exported.contains("scim_worker_events_total"));
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/scim-provisioning.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = String::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yaml")).unwrap();
    for (file, text) in [("grafana", exprs.as_str()), ("alerts", alerts.as_str())] {
        let used = metric_names(text);
        assert!(!used.is_empty());
        for m in used {
            assert!(
                exported.contains(&m) || RABBITMQ_METRICS.contains(&m.as_str()),
                "{file} queries {m}, which no binary exports"
            );
        }
    }
    // And the §9 names are all on the dashboard.
    for m in [
        "scim_ingest_requests_total",
        "scim_ingest_publish_seconds_bucket",
        "scim_worker_events_total",
        "scim_worker_apply_seconds_bucket",
        "scim_worker_event_lag_seconds_bucket",
        "scim_sync_users_total",
    ] {
        assert!(exprs.contains(m), "dashboard lacks {m}");
    }
}
