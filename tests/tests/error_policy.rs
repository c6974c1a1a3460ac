//! The error policy (`shared/src/chain.rs`): a variant's message says what was being done and
//! its cause is its `#[source]` / `#[from]`, never repeated in the message, so a printed chain
//! (`shared::Chain`, anyhow's "Caused by") names each cause once. Read from the source text of
//! every product crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

const CRATES: &[&str] = &["shared", "ingest", "worker", "change-feed", "example-app"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `file:line` of each `#[error("…{0}")]` / `#[error("…{source}")]` whose variant takes that
/// field as its source.
fn repeated_causes(text: &str) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        let Some(message) = line
            .strip_prefix("#[error(\"")
            .and_then(|m| m.strip_suffix("\")]"))
        else {
            continue;
        };
        // The variant: its lines up to the next variant's message.
        let variant = lines[i + 1..]
            .iter()
            .take(6)
            .take_while(|l| !l.trim_start().starts_with("#[error("))
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        let positional = message.contains("{0}")
            && (variant.contains("(#[from]") || variant.contains("(#[source]"));
        let named = message.contains("{source}")
            && (variant.contains("#[source]") || variant.contains("source:"));
        if positional || named {
            found.push(i + 1);
        }
    }
    found
}

#[test]
fn no_message_repeats_its_cause() {
    let root = tests::root();
    let mut wrong = Vec::new();
    let mut read = 0;
    for krate in CRATES {
        let mut files = Vec::new();
        rust_files(&root.join(krate).join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            // The chain's own test keeps an old-style message on purpose.
            if file.ends_with("shared/src/chain.rs") || file.ends_with("shared/src/cli.rs") {
                continue;
            }
            read += 1;
            for line in repeated_causes(&text) {
                wrong.push(format!("{}:{line}", file.display()));
            }
        }
    }
    assert!(read > 100, "read {read} files");
    assert!(
        wrong.is_empty(),
        "messages that repeat their source (drop the `: {{0}}`):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_finds_a_repeated_cause() {
    let text = "enum E {\n    #[error(\"database: {0}\")]\n    Db(#[from] diesel::result::Error),\n    #[error(\"database\")]\n    Pool(#[from] PoolError),\n    #[error(\"bad id {0}\")]\n    Id(String),\n    #[error(\"cannot listen on {addr}: {source}\")]\n    Bind { addr: String, #[source] source: std::io::Error },\n}\n";
    assert_eq!(repeated_causes(text), [2, 8]);
}
