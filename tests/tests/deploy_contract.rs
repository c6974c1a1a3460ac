//! The deploy files cannot drift from the code: ports, probes, env var names, queue names,
//! routes and every metric a dashboard or alert queries are checked against the binaries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use shared::Topology;
use shared::contract::routes;
use std::collections::BTreeSet;
use yaml_rust2::{Yaml, YamlLoader};

use tests::root;

fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(r) => r.parse::<f64>().map(Value::from).unwrap_or(Value::Null),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::from(s.clone()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    (
                        k.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| format!("{k:?}")),
                        to_json(v),
                    )
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

fn render(overlay: &str) -> Vec<Value> {
    let dir = root().join("deploy/k8s/overlays").join(overlay);
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("kubectl is installed (scripts/check-deploy installs it when missing)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    YamlLoader::load_from_str(&text)
        .unwrap()
        .iter()
        .map(to_json)
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} not rendered"))
}

fn port_of(listen: &str) -> u16 {
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

/// Checks one Deployment's container against the binary it runs.
fn check_container(docs: &[Value], deployment: &str, binary: &str, listen_var: &str) {
    let config = &find(docs, "ConfigMap", "scim-provisioning")["data"];
    let listen = config[listen_var].as_str().unwrap();
    let c = &find(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"][0], format!("/usr/local/bin/{binary}"));
    let ports = c["ports"].as_array().unwrap();
    assert_eq!(
        ports[0]["containerPort"],
        u64::from(port_of(listen)),
        "{deployment}: port = {listen_var}"
    );
    // Every further port is one the binary listens on (the worker's pull API).
    let listens: BTreeSet<u64> = ["INGEST_LISTEN", "WORKER_LISTEN", "CHANGES_API_LISTEN"]
        .iter()
        .filter_map(|v| config[*v].as_str())
        .map(|l| u64::from(port_of(l)))
        .collect();
    for p in ports {
        assert!(
            listens.contains(&p["containerPort"].as_u64().unwrap()),
            "{deployment}: port {p} is no listener"
        );
    }
    let port_name = ports[0]["name"].as_str().unwrap();
    for (probe, path) in [
        ("startupProbe", routes::HEALTHZ),
        ("livenessProbe", routes::HEALTHZ),
        ("readinessProbe", routes::READYZ),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{deployment} {probe}");
        assert_eq!(
            c[probe]["httpGet"]["port"], port_name,
            "{deployment} {probe}"
        );
    }
    let known = tests::env_names(binary);
    for e in c["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        assert!(
            known.contains(name),
            "{deployment}: env {name} is not read by {binary}"
        );
    }
    let required: &[&str] = if binary == "ingest" {
        &["SCALEKIT_WEBHOOK_SECRET", "AMQP_URL"]
    } else {
        &["AMQP_URL", "DATABASE_URL"]
    };
    let set: BTreeSet<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for r in required {
        assert!(set.contains(r), "{deployment}: {r} missing");
    }
    // Grace period longer than the binary's own drain.
    let grace = find(docs, "Deployment", deployment)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap();
    let drain_var = if binary == "ingest" {
        "INGEST_SHUTDOWN_TIMEOUT"
    } else {
        "WORKER_SHUTDOWN_TIMEOUT"
    };
    let drain: u64 = config[drain_var]
        .as_str()
        .map_or(if binary == "ingest" { 25 } else { 8 }, |v| {
            shared::cli::positive_duration(v).unwrap().as_secs()
        });
    // The older variables of the same settings are not used by the deploy.
    for old in [
        "INGEST_SHUTDOWN_TIMEOUT_SECONDS",
        "WORKER_SHUTDOWN_TIMEOUT_SECONDS",
        "WEBHOOK_TOLERANCE_SECONDS",
    ] {
        assert!(config[old].is_null(), "{old}: use the humantime variable");
    }
    assert!(
        grace > drain + 2,
        "{deployment}: grace {grace}s vs drain {drain}s"
    );
}

#[test]
fn manifests_match_the_binaries() {
    let all_env: BTreeSet<String> = tests::env_names("ingest")
        .union(&tests::env_names("worker"))
        .cloned()
        .collect();
    for overlay in ["dev", "prod"] {
        let docs = render(overlay);
        let config = &find(&docs, "ConfigMap", "scim-provisioning")["data"];
        for key in config.as_object().unwrap().keys() {
            assert!(
                all_env.contains(key),
                "{overlay}: ConfigMap key {key} is read by no binary"
            );
        }
        check_container(&docs, "scim-ingest", "ingest", "INGEST_LISTEN");
        check_container(&docs, "scim-worker", "worker", "WORKER_LISTEN");
        let migrate =
            &find(&docs, "Job", "scim-migrate")["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            migrate["command"],
            serde_json::json!(["/usr/local/bin/worker", "migrate", "--topology"])
        );

        let topology = Topology::new(config["AMQP_PREFIX"].as_str().unwrap());
        // The broker users' rights name this prefix's objects (the least-privilege suite runs
        // the pair with exactly these regexes).
        let p = topology
            .exchange()
            .replace(".events", "")
            .replace('.', "\\.");
        let rights = |user: &str| {
            let perm = &find(&docs, "Permission", user)["spec"]["permissions"];
            ["configure", "write", "read"].map(|k| perm[k].as_str().unwrap().to_owned())
        };
        assert_eq!(
            rights("scim-ingest"),
            [
                "^$".to_owned(),
                format!("^{p}\\.events(\\.dlx|\\.urgent|\\.bulk)?$"),
                "^$".to_owned()
            ],
            "{overlay}: ingest may only publish to the events, urgent, bulk and dead-letter exchanges"
        );
        let all = format!("^{p}\\..*");
        assert_eq!(rights("scim-worker"), [all.clone(), all.clone(), all]);
        assert_eq!(rights("scim-keda"), ["^$", "^$", "^$"].map(str::to_owned));
        assert_eq!(
            rights("scim-changes-reader"),
            [
                "^$".to_owned(),
                "^$".to_owned(),
                format!("^{}$", topology.changes_stream().replace('.', "\\."))
            ],
            "{overlay}: readers consume the stream and nothing else"
        );
        let trigger = &find(&docs, "ScaledObject", "scim-worker")["spec"]["triggers"][0];
        assert_eq!(
            trigger["metadata"]["queueName"],
            topology.apply_queue(),
            "{overlay}: KEDA queue"
        );
        // A deprovisioning waiting in the urgent queue wakes a worker even at zero replicas.
        let urgent = &find(&docs, "ScaledObject", "scim-worker")["spec"]["triggers"][1];
        assert_eq!(urgent["metadata"]["queueName"], topology.urgent_queue());
        assert_eq!(urgent["metadata"]["activationValue"], "0");
        assert_eq!(urgent["authenticationRef"], trigger["authenticationRef"]);
        // An onboarding burst lands in the bulk queue: it scales the workers like the apply queue.
        let bulk = &find(&docs, "ScaledObject", "scim-worker")["spec"]["triggers"][2];
        assert_eq!(bulk["metadata"]["queueName"], topology.bulk_queue());
        assert_eq!(bulk["metadata"]["value"], trigger["metadata"]["value"]);
        assert!(
            find(&docs, "ScaledObject", "scim-worker")["spec"]["minReplicaCount"]
                .as_u64()
                .unwrap()
                >= u64::from(overlay == "prod")
        );
        let apply_policy = find(&docs, "Policy", "scim-apply")["spec"]["pattern"]
            .as_str()
            .unwrap()
            .to_owned();
        // The apply, urgent and bulk queues share their arguments: one policy covers them.
        assert_eq!(
            apply_policy,
            format!(
                "^{}\\.(apply|urgent|bulk)$",
                topology.exchange().replace('.', r"\.")
            )
        );
        assert_eq!(
            [
                topology.apply_queue(),
                topology.urgent_queue(),
                topology.bulk_queue()
            ],
            ["apply", "urgent", "bulk"].map(|q| format!("{}.{q}", topology.exchange()))
        );
        assert_eq!(
            find(&docs, "Policy", "scim-apply")["spec"]["definition"]["dead-letter-exchange"],
            topology.dead_exchange()
        );

        let ingress =
            &find(&docs, "Ingress", "scim-ingest")["spec"]["rules"][0]["http"]["paths"][0];
        assert_eq!(ingress["path"], ingest::WEBHOOK_PATH);
        let monitor =
            &find(&docs, "PodMonitor", "scim-provisioning")["spec"]["podMetricsEndpoints"];
        for ep in monitor.as_array().unwrap() {
            assert_eq!(ep["path"], routes::METRICS);
        }
        let plugins = &find(&docs, "RabbitmqCluster", "scim-rabbitmq")["spec"]["rabbitmq"]["additionalPlugins"];
        assert!(
            plugins
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "rabbitmq_management")
        );
        assert!(
            plugins
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "rabbitmq_prometheus")
        );
    }
}

/// RabbitMQ prometheus-plugin metrics the dashboard and alerts use.
/// Production is TLS end to end and its pieces agree: the broker serves the certificate
/// cert-manager issues and nothing in plaintext, every pod that speaks AMQP verifies it against
/// the CA file the binaries read (mounted from the issued Secret), and the example Secret's URLs
/// are amqps://, https:// and `sslmode=verify-full` with a CA file that is mounted; each of
/// those URLs also passes the binaries' own start-up checks. The dev overlay stays plaintext.
#[test]
fn prod_speaks_tls_to_the_broker_and_the_database() {
    let docs = render("prod");
    let cluster = &find(&docs, "RabbitmqCluster", "scim-rabbitmq")["spec"]["tls"];
    let certificate = &find(&docs, "Certificate", "scim-rabbitmq-tls")["spec"];
    assert_eq!(cluster["secretName"], certificate["secretName"]);
    assert_eq!(cluster["disableNonTLSListeners"], true);
    let tls_secret = certificate["secretName"].as_str().unwrap();
    let ca_file = find(&docs, "ConfigMap", "scim-provisioning")["data"][shared::amqp::tls::CA_FILE]
        .as_str()
        .unwrap()
        .to_owned();
    let example = std::fs::read_to_string(root().join("deploy/k8s/secret.example.yaml")).unwrap();
    let secret = &YamlLoader::load_from_str(&example).unwrap()[0]["stringData"];
    let value = |key: &str| secret[key].as_str().unwrap().to_owned();
    let database_url = value("DATABASE_URL");
    let pg_ca = database_url
        .split("sslrootcert=")
        .nth(1)
        .expect("DATABASE_URL names its CA file")
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        database_url.contains("sslmode=verify-full"),
        "{database_url}"
    );
    for (kind, name) in [
        ("Deployment", "scim-ingest"),
        ("Deployment", "scim-worker"),
        ("Job", "scim-migrate"),
    ] {
        let pod = &find(&docs, kind, name)["spec"]["template"]["spec"];
        let mounted = |file: &str| -> Option<String> {
            let mounts = pod["containers"][0]["volumeMounts"].as_array()?;
            let mount = mounts
                .iter()
                .find(|m| file.starts_with(m["mountPath"].as_str().unwrap_or("-")))?;
            let volume = pod["volumes"]
                .as_array()?
                .iter()
                .find(|v| v["name"] == mount["name"])?;
            volume["secret"]["secretName"].as_str().map(str::to_owned)
        };
        assert_eq!(
            mounted(&ca_file).as_deref(),
            Some(tls_secret),
            "{name}: AMQP_CA_FILE comes from the issued certificate's Secret"
        );
        if name != "scim-ingest" {
            assert!(mounted(&pg_ca).is_some(), "{name}: {pg_ca} is mounted");
        }
    }
    for key in ["AMQP_URL_INGEST", "AMQP_URL_WORKER"] {
        let url = value(key);
        assert!(
            url.starts_with("amqps://") && url.contains(":5671/"),
            "{key}: {url}"
        );
        shared::amqp::check_url_list(&url).unwrap();
    }
    assert!(value("RABBITMQ_MANAGEMENT_URL_KEDA").starts_with("https://"));
    worker::service::db::check_url(&database_url.replace(&pg_ca, "/dev/null"))
        .expect_err("the CA file is checked at start-up (here: not a certificate)");
    let trigger = &find(&docs, "TriggerAuthentication", "scim-rabbitmq")["spec"]["secretTargetRef"];
    assert!(
        trigger
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["parameter"] == "ca" && r["name"] == tls_secret),
        "KEDA verifies the management API"
    );

    let dev = render("dev");
    assert!(find(&dev, "RabbitmqCluster", "scim-rabbitmq")["spec"]["tls"].is_null());
    assert!(dev.iter().all(|d| d["kind"] != "Certificate"));
}
