//! Property tests: sign→verify round-trips, any flipped byte fails, and our verifier agrees with
//! an independent Standard Webhooks implementation (the `standardwebhooks` crate).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use bytes::Bytes;
use proptest::prelude::*;
use shared::{Verifier, VerifyError, WebhookSecret, WebhookSecrets, sign};

const NOW: i64 = 1_750_000_000;

fn verifier_for(key: &[u8]) -> (WebhookSecret, Verifier) {
    let secret = WebhookSecret::from_key(key.to_vec());
    let v = Verifier::new(WebhookSecrets::new(vec![secret.clone()]).unwrap());
    (secret, v)
}

fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", sig),
    ]
}

proptest! {
    #[test]
    fn sign_then_verify_round_trips(
        key in proptest::collection::vec(any::<u8>(), 1..64),
        id in "msg_[A-Za-z0-9]{1,30}",
        skew in -300i64..=300,
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let (secret, v) = verifier_for(&key);
        let ts = NOW + skew;
        let sig = sign(&secret, &id, ts, &body);
        let ts_text = ts.to_string();
        let ok = v.verify(&headers(&id, &ts_text, &sig), Bytes::from(body.clone()), NOW);
        prop_assert!(ok.is_ok());
    }

    #[test]
    fn any_flipped_body_byte_fails(
        key in proptest::collection::vec(any::<u8>(), 1..64),
        body in proptest::collection::vec(any::<u8>(), 1..1024),
        index in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let (secret, v) = verifier_for(&key);
        let sig = sign(&secret, "msg_1", NOW, &body);
        let mut tampered = body.clone();
        let i = index.index(tampered.len());
        tampered[i] ^= 1 << bit;
        let ts = NOW.to_string();
        let err = v.verify(&headers("msg_1", &ts, &sig), Bytes::from(tampered), NOW).unwrap_err();
        prop_assert_eq!(err, VerifyError::InvalidSignature);
    }

    #[test]
    fn any_flipped_signature_byte_fails(
        key in proptest::collection::vec(any::<u8>(), 1..64),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        index in 3usize..47,
    ) {
        let (secret, v) = verifier_for(&key);
        let sig = sign(&secret, "msg_1", NOW, &body);
        let mut bytes = sig.into_bytes();
        bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        let ts = NOW.to_string();
        prop_assert!(v.verify(&headers("msg_1", &ts, &tampered), Bytes::from(body), NOW).is_err());
    }

    #[test]
    fn agrees_with_the_standardwebhooks_crate(
        key in proptest::collection::vec(any::<u8>(), 1..64),
        id in "msg_[A-Za-z0-9]{1,30}",
        text in "\\PC{0,400}",
        corrupt in any::<bool>(),
    ) {
        // The reference crate takes UTF-8 payloads only (as Scalekit's JSON bodies are).
        let body = text.into_bytes();
        let now = chrono::Utc::now().timestamp();
        let reference = standardwebhooks::Webhook::from_bytes(key.clone()).unwrap();
        let mut sig = reference.sign(&id, now, &body).unwrap();
        // Same signature text from both implementations.
        let (secret, v) = verifier_for(&key);
        prop_assert_eq!(&sig, &sign(&secret, &id, now, &body));
        if corrupt {
            sig = sign(&WebhookSecret::from_key(b"other".to_vec()), &id, now, &body);
        }
        let ts = now.to_string();
        let mut map = http::HeaderMap::new();
        map.insert("webhook-id", id.parse().unwrap());
        map.insert("webhook-timestamp", ts.parse().unwrap());
        map.insert("webhook-signature", sig.parse().unwrap());
        let theirs = reference.verify(&body, &map).is_ok();
        let ours = v.verify(&headers(&id, &ts, &sig), Bytes::from(body), now).is_ok();
        prop_assert_eq!(ours, theirs);
        prop_assert_eq!(ours, !corrupt);
    }
}
