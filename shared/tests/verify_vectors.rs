//! The signature test vectors (`docs/scalekit.md`, "Webhook signatures") and the negative cases around them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use bytes::Bytes;
use shared::{Verifier, VerifyError, WebhookSecret, WebhookSecrets, sign};

const SVIX_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SVIX_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
const SVIX_TS: i64 = 1649367553;
const SVIX_BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
const SVIX_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

fn verifier(secrets: &str) -> Verifier {
    Verifier::new(WebhookSecrets::parse(secrets).unwrap())
}

fn check(
    v: &Verifier,
    id: &str,
    ts: &str,
    sig: &str,
    body: &str,
    now: i64,
) -> Result<shared::VerifiedWebhook, VerifyError> {
    let headers = [
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", sig),
    ];
    v.verify(&headers, Bytes::copy_from_slice(body.as_bytes()), now)
}

#[test]
fn svix_vector_verifies_at_its_timestamp() {
    let v = verifier(SVIX_SECRET);
    let ok = check(&v, SVIX_ID, "1649367553", SVIX_SIG, SVIX_BODY, SVIX_TS).unwrap();
    assert_eq!(ok.webhook_id(), SVIX_ID);
    assert_eq!(ok.timestamp(), SVIX_TS);
    assert_eq!(ok.body().as_ref(), SVIX_BODY.as_bytes());
    let secret: WebhookSecret = SVIX_SECRET.parse().unwrap();
    assert_eq!(
        sign(&secret, SVIX_ID, SVIX_TS, SVIX_BODY.as_bytes()),
        SVIX_SIG
    );
}

#[test]
fn tolerance_is_300_seconds_both_ways() {
    let v = verifier(SVIX_SECRET);
    let at = |now| check(&v, SVIX_ID, "1649367553", SVIX_SIG, SVIX_BODY, now);
    assert!(at(SVIX_TS + 300).is_ok(), "exactly 300 s old passes");
    assert_eq!(at(SVIX_TS + 301).unwrap_err(), VerifyError::TimestampTooOld);
    assert!(
        at(SVIX_TS - 300).is_ok(),
        "exactly 300 s in the future passes"
    );
    assert_eq!(at(SVIX_TS - 301).unwrap_err(), VerifyError::TimestampTooNew);
    assert_eq!(at(SVIX_TS + 600).unwrap_err(), VerifyError::TimestampTooOld);
    assert_eq!(
        at(SVIX_TS + 10 * 86_400).unwrap_err(),
        VerifyError::TimestampTooOld
    );
}

#[test]
fn configurable_tolerance() {
    let v = verifier(SVIX_SECRET).with_tolerance(10);
    assert!(check(&v, SVIX_ID, "1649367553", SVIX_SIG, SVIX_BODY, SVIX_TS + 10).is_ok());
    assert_eq!(
        check(&v, SVIX_ID, "1649367553", SVIX_SIG, SVIX_BODY, SVIX_TS + 11).unwrap_err(),
        VerifyError::TimestampTooOld
    );
}

#[test]
fn svix_negative_vectors() {
    let v = verifier(SVIX_SECRET);
    for bad in [
        "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=",
        "v1,",
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6",
        "v1a,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        "tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        "v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    ] {
        assert_eq!(
            check(&v, SVIX_ID, "1649367553", bad, SVIX_BODY, SVIX_TS).unwrap_err(),
            VerifyError::InvalidSignature,
            "{bad}"
        );
    }
}

#[test]
fn sdk_vectors() {
    let go = verifier("whsec_dGVzdHNlY3JldA==");
    check(
        &go,
        "webhook_123",
        "1700000000",
        "v1,z3zKIfnvsQbSlXaUcWQDm9m5kJ7a0UnuQ0rz+xq8Tjo=",
        r#"{"event": "user.created", "data": {"id": "123"}}"#,
        1_700_000_000,
    )
    .unwrap();

    let java = verifier("whsec_9vx5xtFNxQMZFcjLLGporL6TGkcSRNHb");
    let body = r#"{"data":{"external_id":null,"id":"org_43666332410970707","metadata":null,"name":"AMK","region":"us","settings":{"domain_capture_required":false,"features":[{"enabled":true,"name":"sso"},{"enabled":false,"name":"dir_sync"},{"enabled":false,"name":"gbra"}]},"updated_at":"2024-10-28T05:46:02.322200192Z"},"environment_id":"env_26602260712653095","id":"evt_43666332427747923","object":"Organization","occurred_at":"2024-10-28T05:46:02.332510521Z","organization_id":"org_43666332410970707","spec_version":"1","type":"scalekit.org.create"}"#;
    assert_eq!(body.len(), 534);
    check(
        &java,
        "msg_2o3NaedIm6pL62OQ544VzM1cIYo",
        "1730094362",
        "v1,ikfZh2dXle1Myfn7wO4EZBbTB5kqHapjwwK/nh55o6A=",
        body,
        1_730_094_362,
    )
    .unwrap();

    // The Node vector's secret is not strict base64: a start-up error here, by design.
    assert!(WebhookSecrets::parse("whsec_test-secret").is_err());
    assert!(WebhookSecrets::parse("invalid_secret").is_err());
}

#[test]
fn missing_headers_are_named() {
    let v = verifier(SVIX_SECRET);
    let body = Bytes::from_static(SVIX_BODY.as_bytes());
    let only_id = [("webhook-id", SVIX_ID)];
    assert_eq!(
        v.verify(&only_id, body.clone(), SVIX_TS).unwrap_err(),
        VerifyError::MissingHeader("webhook-timestamp")
    );
    let no_sig = [("webhook-id", SVIX_ID), ("webhook-timestamp", "1649367553")];
    assert_eq!(
        v.verify(&no_sig, body.clone(), SVIX_TS).unwrap_err(),
        VerifyError::MissingHeader("webhook-signature")
    );
    let empty_id = [
        ("webhook-id", ""),
        ("webhook-timestamp", "1649367553"),
        ("webhook-signature", SVIX_SIG),
    ];
    assert_eq!(
        v.verify(&empty_id, body, SVIX_TS).unwrap_err(),
        VerifyError::MissingHeader("webhook-id")
    );
}

#[test]
fn timestamp_is_parsed_strictly() {
    let v = verifier(SVIX_SECRET);
    for ts in [
        "1649367553.0",
        "+1649367553",
        "-1649367553",
        "1649367553abc",
        "abc",
        "0x62",
        "99999999999999999999",
    ] {
        assert_eq!(
            check(&v, SVIX_ID, ts, SVIX_SIG, SVIX_BODY, SVIX_TS).unwrap_err(),
            VerifyError::InvalidTimestamp,
            "{ts}"
        );
    }
}

#[test]
fn tampering_fails() {
    let v = verifier(SVIX_SECRET);
    let tampered_body = SVIX_BODY.replace("test_user", "test_usEr");
    assert_eq!(
        check(&v, SVIX_ID, "1649367553", SVIX_SIG, &tampered_body, SVIX_TS).unwrap_err(),
        VerifyError::InvalidSignature
    );
    assert_eq!(
        check(
            &v,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpK",
            "1649367553",
            SVIX_SIG,
            SVIX_BODY,
            SVIX_TS
        )
        .unwrap_err(),
        VerifyError::InvalidSignature
    );
    assert_eq!(
        check(&v, SVIX_ID, "1649367554", SVIX_SIG, SVIX_BODY, SVIX_TS).unwrap_err(),
        VerifyError::InvalidSignature
    );
}

#[test]
fn body_with_one_byte_changed_is_rejected() {
    let v = verifier(SVIX_SECRET);
    let mut body = SVIX_BODY.as_bytes().to_vec();
    body[10] ^= 0x01;
    let headers = [
        ("webhook-id", SVIX_ID),
        ("webhook-timestamp", "1649367553"),
        ("webhook-signature", SVIX_SIG),
    ];
    assert_eq!(
        v.verify(&headers, Bytes::from(body), SVIX_TS).unwrap_err(),
        VerifyError::InvalidSignature
    );
}

#[test]
fn rotation_old_and_new_secret() {
    let old: WebhookSecret = "whsec_dGVzdHNlY3JldA==".parse().unwrap();
    let new: WebhookSecret = SVIX_SECRET.parse().unwrap();
    let both = Verifier::new(WebhookSecrets::new(vec![old.clone(), new.clone()]).unwrap());
    for secret in [&old, &new] {
        let sig = sign(secret, SVIX_ID, SVIX_TS, SVIX_BODY.as_bytes());
        check(&both, SVIX_ID, "1649367553", &sig, SVIX_BODY, SVIX_TS).unwrap();
    }
    // The sender signs with both during rotation: a receiver knowing either accepts.
    let header = format!(
        "{} {}",
        sign(&old, SVIX_ID, SVIX_TS, SVIX_BODY.as_bytes()),
        sign(&new, SVIX_ID, SVIX_TS, SVIX_BODY.as_bytes())
    );
    let only_new = Verifier::new(WebhookSecrets::new(vec![new]).unwrap());
    check(
        &only_new,
        SVIX_ID,
        "1649367553",
        &header,
        SVIX_BODY,
        SVIX_TS,
    )
    .unwrap();
    // Malformed and v1a entries before the match are skipped, not fatal.
    let noisy = format!("v1 v1a,abc v1,%%% {header}");
    check(&only_new, SVIX_ID, "1649367553", &noisy, SVIX_BODY, SVIX_TS).unwrap();
}

#[test]
fn header_names_are_case_insensitive() {
    let v = verifier(SVIX_SECRET);
    let headers = [
        ("Webhook-Id", SVIX_ID),
        ("WEBHOOK-TIMESTAMP", "1649367553"),
        ("webhook-Signature", SVIX_SIG),
    ];
    v.verify(&headers, Bytes::from_static(SVIX_BODY.as_bytes()), SVIX_TS)
        .unwrap();
}

#[test]
fn debug_output_never_shows_the_key() {
    let v = verifier(SVIX_SECRET);
    let printed = format!("{v:?}");
    assert!(!printed.contains("C2FVsBQIhrsc"), "{printed}");
}
