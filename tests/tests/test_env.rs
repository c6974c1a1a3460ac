//! The test command ignores the caller's own configuration: every variable a binary reads
//! (`env = "…"` on a configuration field) is one that `scripts/test` unsets before the suites
//! run, so a shell with `AMQP_PREFIX=newcomer` exported runs the same tests as CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The patterns of `scripts/test`'s `case` that unsets variables (`AMQP_*`, `HARD_DELETE`, …).
fn unset_patterns() -> Vec<String> {
    let script = std::fs::read_to_string(root().join("scripts/test")).expect("scripts/test");
    let start = script.find("case \"$var\" in").expect("the unset loop");
    let body = &script[start..];
    let end = body.find(')').expect("the end of the pattern list");
    body["case \"$var\" in".len()..end]
        .split(['|', '\\', '\n', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `env = "NAME"` in the binaries' sources.
fn read_variables() -> Vec<String> {
    let mut files = Vec::new();
    for krate in ["ingest", "worker", "shared", "change-feed", "example-app"] {
        rust_files(&root().join(krate).join("src"), &mut files);
    }
    let mut vars = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("a source file");
        for part in text.split("env = \"").skip(1) {
            if let Some(name) = part.split('"').next()
                && !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                vars.push(name.to_owned());
            }
        }
    }
    vars.sort();
    vars.dedup();
    vars
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[test]
fn scripts_test_unsets_every_variable_the_binaries_read() {
    let patterns = unset_patterns();
    assert!(patterns.iter().any(|p| p == "AMQP_*"), "{patterns:?}");
    let vars = read_variables();
    assert!(
        vars.len() > 40,
        "found only {} variables: {vars:?}",
        vars.len()
    );
    let missed: Vec<&String> = vars
        .iter()
        .filter(|v| !patterns.iter().any(|p| matches(p, v)))
        .collect();
    assert!(
        missed.is_empty(),
        "scripts/test does not unset {missed:?}: a caller's value would reach the tests"
    );
}

#[test]
fn a_pattern_matches_by_prefix_or_whole_name() {
    assert!(matches("AMQP_*", "AMQP_PREFIX"));
    assert!(!matches("AMQP_*", "XAMQP_PREFIX"));
    assert!(matches("HARD_DELETE", "HARD_DELETE"));
    assert!(!matches("HARD_DELETE", "HARD_DELETE_X"));
}
