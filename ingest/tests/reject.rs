//! Requests that must not be published get the right status and reason code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use testkit::ingest::*;
use testkit::{OLD_SECRET, fixture};
use testkit::{signed_headers, signed_headers_at};

async fn assert_error(resp: reqwest::Response, status: u16, code: &str) {
    assert_eq!(resp.status(), status);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["error"], code, "{json}");
    assert!(json["message"].is_string());
}

#[tokio::test]
async fn bad_requests_are_rejected_and_nothing_is_published() {
    let app = spawn_app().await;
    let body = fixture("03_user_created.json");
    let good = signed_headers(&app.secret, "msg_1", &body);

    for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let headers: Vec<_> = good.iter().filter(|(k, _)| k != missing).cloned().collect();
        assert_error(app.post(&body, &headers).await, 400, "missing_header").await;
    }

    let mut bad_sig = good.clone();
    bad_sig[2].1 = "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=".to_owned();
    assert_error(app.post(&body, &bad_sig).await, 400, "invalid_signature").await;

    let mut tampered = body.clone();
    tampered[20] ^= 1;
    assert_error(app.post(&tampered, &good).await, 400, "invalid_signature").await;

    let now = chrono::Utc::now().timestamp();
    let stale = signed_headers_at(&app.secret, "msg_1", &body, now - 600);
    assert_error(app.post(&body, &stale).await, 400, "timestamp_too_old").await;
    let future = signed_headers_at(&app.secret, "msg_1", &body, now + 600);
    assert_error(app.post(&body, &future).await, 400, "timestamp_too_new").await;

    let mut junk_ts = good.clone();
    junk_ts[1].1 = "12abc".to_owned();
    assert_error(app.post(&body, &junk_ts).await, 400, "invalid_timestamp").await;

    let unknown_secret: shared::WebhookSecret = "whsec_bm90LWNvbmZpZ3VyZWQ=".parse().unwrap();
    let foreign = signed_headers(&unknown_secret, "msg_1", &body);
    assert_error(app.post(&body, &foreign).await, 400, "invalid_signature").await;

    assert!(
        app.tap
            .get(&app.tap_queue, Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
    let metrics = app.metrics.render();
    assert!(
        metrics.contains(r#"outcome="missing_header"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"outcome="invalid_signature"} 3"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn rotated_secret_is_accepted() {
    let app = spawn_app().await;
    let body = fixture("04_user_updated.json");
    let old: shared::WebhookSecret = OLD_SECRET.parse().unwrap();
    let resp = app
        .post(&body, &signed_headers(&old, "msg_old", &body))
        .await;
    assert_eq!(resp.status(), 202);
    // A header carrying both signatures, as during a rotation.
    let mut both = signed_headers(&old, "msg_both", &body);
    let new_sig = signed_headers(&app.secret, "msg_both", &body)[2].1.clone();
    both[2].1 = format!("v1a,ignored {} {}", both[2].1, new_sig);
    assert_eq!(app.post(&body, &both).await.status(), 202);
    assert_eq!(
        app.tap
            .wait_depth(&app.tap_queue, 2, Duration::from_secs(5))
            .await
            .unwrap(),
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let app = spawn_with(&testkit::amqp_url(), &["--max-body-bytes", "1024"], true).await;
    let mut event: serde_json::Value =
        serde_json::from_slice(&fixture("03_user_created.json")).unwrap();
    event["data"]["title"] = "x".repeat(2000).into();
    let body = serde_json::to_vec(&event).unwrap();
    let resp = app
        .post(&body, &signed_headers(&app.secret, "msg_big", &body))
        .await;
    assert_error(resp, 413, "payload_too_large").await;
    // Chunked (no Content-Length) is cut off too.
    let stream = futures_util::stream::iter(
        body.chunks(100)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let mut req = app
        .client
        .post(app.url(ingest::WEBHOOK_PATH))
        .body(reqwest::Body::wrap_stream(stream));
    for (k, v) in signed_headers(&app.secret, "msg_big2", &body) {
        req = req.header(k, v);
    }
    assert_error(req.send().await.unwrap(), 413, "payload_too_large").await;
    // Exactly at the limit is fine.
    let small = fixture("06_user_deleted.json");
    assert!(small.len() <= 1024);
    assert_eq!(app.post_signed("msg_small", &small).await.status(), 202);
    app.stop().await;
}
