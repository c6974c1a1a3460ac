//! tests: suites that exercise the real binaries together — the deploy contract (manifests vs
//! code), end-to-end and fault scenarios. Nothing here ships. (Test support is the `testkit`
//! crate; the benchmark is the `bench` crate.)
//!
//! Must never talk to anything but services on this machine.

pub mod app;
pub mod corpus;
pub mod feed_check;
pub mod monitor;
pub mod prometheus;
pub mod promql;
pub mod scenario;
pub mod startup;

/// The workspace's root (where `deploy/`, `docs/` and `examples/` are).
pub fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// With `E2E_LOG` set, the in-process parts of a suite (the example application, the change
/// feed) log too, like the binaries do.
pub fn logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::env::var("E2E_LOG").is_ok() {
        ONCE.call_once(|| shared::telemetry::init(shared::telemetry::LogFormat::Pretty));
    }
}

/// Names every binary reads from the environment, by binary (`ingest`, `worker`), from their
/// command-line definitions (clap `env`), plus the variables read outside clap.
pub fn env_names(binary: &str) -> std::collections::BTreeSet<String> {
    use clap::CommandFactory;
    fn collect(cmd: &clap::Command, out: &mut std::collections::BTreeSet<String>) {
        for a in cmd.get_arguments() {
            if let Some(env) = a.get_env() {
                out.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            collect(sub, out);
        }
    }
    let mut out = std::collections::BTreeSet::new();
    match binary {
        "ingest" => collect(&ingest::Config::command(), &mut out),
        "worker" => collect(&worker::cli::Cli::command(), &mut out),
        _ => {}
    }
    // Read directly: the log filter and the pod name used in connection names.
    out.insert("RUST_LOG".to_owned());
    out.insert("POD_NAME".to_owned());
    out
}

/// Metric names a binary exports, as Prometheus sees them (`_total` on counters, `_bucket`,
/// `_sum`, `_count` on histograms), read from the `# TYPE` lines of its exposition.
pub fn exported_metrics() -> std::collections::BTreeSet<String> {
    // Labelled families only appear once they have a sample: give each one.
    let ingest = ingest::metrics::Metrics::new();
    ingest.count(ingest::metrics::Outcome::Queued);
    let worker = worker::service::metrics::Metrics::new();
    worker.count("organization.directory.user_created", "applied");
    worker.count_sync("ok");
    let org = worker::service::metrics::OrgLabels {
        organization_id: "org_1".to_owned(),
    };
    worker.brake_engaged.get_or_create(&org).set(1);
    worker.brake_held.get_or_create(&org).set(1);
    let endpoint = worker::service::metrics::EndpointLabels {
        endpoint: "default".to_owned(),
    };
    worker.push_delivered.get_or_create(&endpoint).inc();
    worker.push_failed.get_or_create(&endpoint).inc();
    worker.push_lag_seconds.get_or_create(&endpoint).set(1.0);
    worker.push_paused.get_or_create(&endpoint).set(1);
    let text = format!("{}\n{}", ingest.render(), worker.render());
    let mut out = std::collections::BTreeSet::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() != Some("#") || parts.next() != Some("TYPE") {
            continue;
        }
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                out.insert(format!("{name}_total"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{s}"));
                }
            }
            _ => {
                out.insert(name.to_owned());
            }
        }
    }
    out
}
