//! Results as JSON and a short Markdown table under `bench/results/`.

use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: String,
    pub value: String,
    pub note: String,
}

pub fn row(metric: &str, value: String, note: &str) -> Row {
    Row {
        metric: metric.to_owned(),
        value,
        note: note.to_owned(),
    }
}

pub fn write(
    dir: &Path,
    stem: &str,
    machine: &str,
    json: &serde_json::Value,
    rows: &[Row],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(format!("{stem}.json")),
        serde_json::to_string_pretty(json)?,
    )?;
    let mut md = format!(
        "# Benchmark {stem}\n\nMachine: {machine}\n\n| metric | value | note |\n|---|---|---|\n"
    );
    for r in rows {
        md.push_str(&format!("| {} | {} | {} |\n", r.metric, r.value, r.note));
    }
    std::fs::write(dir.join(format!("{stem}.md")), md)?;
    Ok(())
}
