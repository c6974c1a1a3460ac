//! The worker's two wings (`src/lib.rs`): `service` (what `worker run` runs) and `ops`
//! (operator commands). Operator code may import the service, never the reverse; neither
//! imports the command line or the dispatch above them; and every source file belongs to a
//! wing but the few at the top. Read from the source text, so a new `use` that runs back up
//! fails here, before review.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// The files above both wings.
const TOP: &[&str] = &["lib.rs", "main.rs", "cli.rs", "cli_tests.rs", "commands.rs"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module paths a file names (`crate::x::y`, `super::…` resolved against the file's own
/// module), outside comments.
fn named_paths(file: &Path, text: &str) -> Vec<(usize, String)> {
    let rel = file.strip_prefix(src()).unwrap();
    // The file's module: `service/apply/mod.rs` is `service::apply`, `service/records.rs` is
    // `service::records`.
    let mut module: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if module
        .last()
        .is_some_and(|m| m == "mod" || m == "lib" || m == "main")
    {
        module.pop();
    }
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        for (i, _) in code.match_indices("crate::") {
            let after = &code[i + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                // `crate::{a, b::c}`: each name of the group (on this line).
                let group = group.split('}').next().unwrap_or_default();
                for name in group.split(',') {
                    found.push((n + 1, name.trim().to_owned()));
                }
                continue;
            }
            let rest: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            found.push((n + 1, rest));
        }
        for (i, _) in code.match_indices("super::") {
            if i > 0 && code[..i].ends_with("super::") {
                continue;
            }
            let mut base = module.clone();
            let mut rest = &code[i..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            let tail: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            base.push(tail);
            found.push((n + 1, base.join("::")));
        }
    }
    found
}

fn wing_of(path: &str) -> &str {
    path.split("::").next().unwrap_or_default()
}

#[test]
fn the_service_never_imports_operator_code_and_neither_imports_the_command_line() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    assert!(files.len() > 50, "read {} files", files.len());
    let mut wrong = Vec::new();
    let mut seen_ops_to_service = 0;
    for file in &files {
        let rel = file
            .strip_prefix(src())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let own = rel.split('/').next().unwrap_or_default().to_owned();
        if TOP.contains(&rel.as_str()) {
            continue;
        }
        assert!(
            own == "service" || own == "ops",
            "{rel} is in neither wing: put it under src/service/ or src/ops/"
        );
        let text = std::fs::read_to_string(file).unwrap();
        for (line, path) in named_paths(file, &text) {
            let target = wing_of(&path);
            let forbidden = match own.as_str() {
                "service" => matches!(target, "ops" | "cli" | "commands"),
                _ => matches!(target, "cli" | "commands"),
            };
            if forbidden {
                wrong.push(format!("{rel}:{line} names {path}"));
            }
            if own == "ops" && target == "service" {
                seen_ops_to_service += 1;
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run back up:\n{}",
        wrong.join("\n")
    );
    // The check reads what it should: operator code does use the service.
    assert!(seen_ops_to_service > 20, "{seen_ops_to_service}");
}

#[test]
fn the_check_sees_an_import_that_runs_back_up() {
    let file = src().join("service/apply/mod.rs");
    let paths = named_paths(
        &file,
        "use crate::ops::dlq;\n// crate::ops in a comment\nuse super::super::ops::tail;\nuse crate::{service::db, commands};\n",
    );
    let wings: Vec<&str> = paths.iter().map(|(_, p)| wing_of(p)).collect();
    assert_eq!(wings, ["ops", "ops", "service", "commands"], "{paths:?}");
    let file = src().join("service/records.rs");
    let paths = named_paths(&file, "use super::db::schema;\n");
    assert_eq!(paths[0].1, "service::db::schema");
}
