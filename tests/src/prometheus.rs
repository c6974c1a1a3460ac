//! A real Prometheus server for a suite: Debian's `prometheus` binary (`PROMETHEUS_BIN`, else
//! the copy `scripts/tools.sh` unpacks under `target/tools`), on a free port, with its own data
//! directory, scraping the targets given every second, and its HTTP query API.

use anyhow::Context;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// A scrape job: name, `host:port` targets, path and query parameters.
pub struct Job {
    pub name: &'static str,
    pub targets: Vec<String>,
    pub path: &'static str,
    pub params: Vec<(&'static str, Vec<&'static str>)>,
}

pub struct Prometheus {
    child: tokio::process::Child,
    dir: PathBuf,
    pub url: String,
    client: reqwest::Client,
}

fn binary() -> anyhow::Result<PathBuf> {
    if let Ok(bin) = std::env::var("PROMETHEUS_BIN") {
        return Ok(bin.into());
    }
    let unpacked = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools/prometheus/usr/bin/prometheus");
    if unpacked.exists() {
        return Ok(unpacked);
    }
    anyhow::bail!("no prometheus binary: set PROMETHEUS_BIN or run scripts/tools.sh")
}

fn yaml_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Prometheus {
    /// Starts a server scraping `jobs` every second and evaluating `rule_files`.
    pub async fn start(jobs: &[Job], rule_files: &[PathBuf]) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "scim-prometheus-{}-{}",
            std::process::id(),
            testkit::procs::free_port()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
        );
        let rules: Vec<String> = rule_files.iter().map(|r| r.display().to_string()).collect();
        config.push_str(&format!("rule_files: [{}]\n", yaml_list(&rules)));
        config.push_str("scrape_configs:\n");
        for job in jobs {
            config.push_str(&format!(
                "  - job_name: {}\n    metrics_path: {}\n    static_configs:\n      - targets: [{}]\n",
                job.name,
                job.path,
                yaml_list(&job.targets)
            ));
            if !job.params.is_empty() {
                config.push_str("    params:\n");
                for (k, vs) in &job.params {
                    let vs: Vec<String> = vs.iter().map(|v| (*v).to_owned()).collect();
                    config.push_str(&format!("      {k}: [{}]\n", yaml_list(&vs)));
                }
            }
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, &config)?;
        let port = testkit::procs::free_port();
        let child = tokio::process::Command::new(binary()?)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log"))?)
            .kill_on_drop(true)
            .spawn()
            .context("starting prometheus")?;
        let p = Self {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        };
        let ready = testkit::wait_until(Duration::from_secs(30), || async {
            p.client
                .get(format!("{}/-/ready", p.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        anyhow::ensure!(ready, "prometheus did not get ready: {}", p.log());
        Ok(p)
    }

    /// Its own log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let body: Value = self
            .client
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(body["status"] == "success", "{path}: {body}");
        Ok(body["data"].clone())
    }

    /// An instant query's result vector.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<Value>> {
        let data = self.api("/api/v1/query", &[("query", promql)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The value of a query that returns one sample.
    pub async fn scalar(&self, promql: &str) -> anyhow::Result<f64> {
        let result = self.query(promql).await?;
        let [sample] = result.as_slice() else {
            anyhow::bail!("{promql}: {} samples", result.len());
        };
        sample["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{promql}: {sample}"))
    }

    /// Scrape targets and their health.
    pub async fn targets(&self) -> anyhow::Result<Vec<Value>> {
        let data = self.api("/api/v1/targets", &[]).await?;
        Ok(data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The alerting rules as evaluated: name, state, health, last error.
    pub async fn rules(&self) -> anyhow::Result<Vec<Value>> {
        let data = self.api("/api/v1/rules", &[]).await?;
        Ok(data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect())
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
