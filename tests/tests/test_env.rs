//! The test command ignores the caller's own configuration: every variable a binary reads
//! (`tests::env_names`) is one that `scripts/test` unsets before the suites run, so a shell with `AMQP_PREFIX=newcomer` exported runs the same tests as CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The patterns of `scripts/test`'s `case` that unsets variables (`AMQP_*`, `HARD_DELETE`, …).
fn unset_patterns() -> Vec<String> {
    let script = std::fs::read_to_string(tests::root().join("scripts/test")).expect("scripts/test");
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

/// Every variable the binaries read (from their command-line definitions, and the few read
/// outside them), but `RUST_LOG` and `POD_NAME`: the log filter is the caller's to set, and the
/// pod name only names connections.
fn read_variables() -> Vec<String> {
    let mut vars: Vec<String> = ["ingest", "worker"]
        .into_iter()
        .flat_map(tests::env_names)
        .filter(|v| v != "RUST_LOG" && v != "POD_NAME")
        .collect();
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
