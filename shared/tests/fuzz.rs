//! Fuzz harness of the verifier and the envelope parser (coverage-less: stable Rust cannot build
//! cargo-fuzz). Seeds are the committed corpus in `shared/fuzz/corpus/`; each case mutates one
//! (or splices two) and checks that nothing panics and the invariants hold:
//! - the header checks and the HMAC never panic on any header text, and accept a body only
//!   when it is exactly the signed one;
//! - parsing never panics, parse errors never quote the body, and whatever parses in full
//!   also parses as a head with the same id and type.
//!
//! `FUZZ_RUNS` sets the number of cases (default 16384, what CI runs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use shared::{EnvelopeHead, Verifier, WebhookEvent, WebhookSecret, WebhookSecrets, sign};

const NOW: i64 = 1_750_000_000;

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(seeds.len() >= 10, "the corpus is in {}", dir.display());
    seeds
}

fn runs() -> u32 {
    std::env::var("FUZZ_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(16384)
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Splice(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..16),
                Just(b"\\u0000".to_vec()),
                Just(b"\\ud800".to_vec()),
                Just(b"1e999".to_vec()),
                Just(b"[[[[[[[[".to_vec()),
                Just("\u{202e}\u{1b}[2J".as_bytes().to_vec()),
            ]
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(s, i)| Mutation::Splice(s, i)),
    ]
}

fn apply(seed: &[u8], other: &[u8], m: &Mutation) -> Vec<u8> {
    let mut b = seed.to_vec();
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Flip(i, x) if !b.is_empty() => {
            let i = i % b.len();
            b[i] ^= x;
        }
        Mutation::Flip(..) => {}
        Mutation::Insert(i, v) => {
            let i = at(*i, b.len());
            b.splice(i..i, v.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = at(*i, b.len());
            let end = (i + n).min(b.len());
            b.drain(i..end);
        }
        Mutation::Truncate(i) => b.truncate(at(*i, b.len())),
        Mutation::Splice(s, i) => {
            let cut = at(*s, b.len());
            let from = at(*i, other.len());
            b.truncate(cut);
            b.extend_from_slice(&other[from..]);
        }
    }
    b
}

fn check_parse(body: &[u8]) {
    match WebhookEvent::parse(body) {
        Ok(event) => {
            let head: EnvelopeHead =
                serde_json::from_slice(body).expect("a full parse implies a head parse");
            assert_eq!(head.id, event.envelope.id);
            assert_eq!(head.event_type, event.envelope.event_type);
        }
        Err(e) => {
            let text = e.to_string();
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{202e}'),
                "{text:?}"
            );
            assert!(!text.contains("\\u0000"), "{text:?}");
        }
    }
}

fn check_verify(v: &Verifier, secret: &WebhookSecret, signed: &[u8], body: &[u8], header: &str) {
    let sig = sign(secret, "msg_fuzz", NOW, signed);
    let ts = NOW.to_string();
    let good = [
        ("webhook-id", "msg_fuzz"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    let result = v.verify(&good, Bytes::copy_from_slice(body), NOW);
    assert_eq!(
        result.is_ok(),
        body == signed,
        "accepted a body that was not signed"
    );
    // Arbitrary header text in each position: never a panic, never accepted.
    for i in 0..3 {
        let mut hostile = good;
        hostile[i].1 = header;
        let _ = v.check_headers(&hostile, NOW);
        let r = v.verify(&hostile, Bytes::copy_from_slice(signed), NOW);
        if header != good[i].1 {
            assert!(r.is_err() || (i == 2 && header.contains(sig.as_str())));
        }
    }
}

#[test]
fn mutated_corpus_never_panics_and_keeps_the_invariants() {
    let seeds = corpus();
    let secret = WebhookSecret::from_key(b"fuzzing key 0123456789".to_vec());
    let v = Verifier::new(WebhookSecrets::new(vec![secret.clone()]).unwrap());
    for seed in &seeds {
        check_parse(seed);
        check_verify(&v, &secret, seed, seed, "v1,AAAA");
    }
    let n = seeds.len();
    let mut runner = TestRunner::new(Config {
        cases: runs(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(
                0..n,
                0..n,
                proptest::collection::vec(mutation(), 1..4),
                "\\PC{0,80}",
            ),
            |(s, o, mutations, header)| {
                let mut body = seeds[s].clone();
                for m in &mutations {
                    body = apply(&body, &seeds[o], m);
                }
                check_parse(&body);
                check_verify(&v, &secret, &seeds[s], &body, &header);
                Ok(())
            },
        )
        .unwrap();
}
