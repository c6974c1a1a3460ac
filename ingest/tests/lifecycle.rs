//! Graceful stop under load, and the curl example of `docs/ingest.md` against the real server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use testkit::ingest::*;
use testkit::{OLD_SECRET, SECRET, fixture};

#[tokio::test]
async fn graceful_stop_under_load_loses_nothing_answered_2xx() {
    let app = spawn_app().await;
    let template: serde_json::Value =
        serde_json::from_slice(&fixture("04_user_updated.json")).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let mut event = template.clone();
        event["id"] = format!("evt_stop_{i}").into();
        let body = serde_json::to_vec(&event).unwrap();
        let req = app.signed_request(&format!("msg_s_{i}"), body);
        tasks.spawn(async move { req.send().await.map(|r| r.status().as_u16()).ok() });
    }
    // Stop (what SIGTERM does) once some requests have been answered and others are in flight.
    app.tap
        .wait_depth(&app.tap_queue, 50, Duration::from_secs(10))
        .await
        .unwrap();
    let handle = app.handle.clone();
    tokio::spawn(async move { handle.stop(true).await });
    let mut accepted = 0u32;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Some(202) => accepted += 1,
            Some(503) | None => {} // refused or not answered: the sender retries
            Some(other) => panic!("unexpected status {other}"),
        }
    }
    assert!(accepted > 0);
    let depth = app
        .tap
        .wait_depth(&app.tap_queue, accepted, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(depth, accepted, "every 202 has its message, and only those");
    app.stop().await;
}

#[tokio::test]
async fn readme_curl_example_works() {
    let app = spawn_app().await;
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/send-webhook");
    let file = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/events/03_user_created.json");
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .arg(&file)
        .arg(app.url(ingest::WEBHOOK_PATH))
        .env("SCALEKIT_WEBHOOK_SECRET", format!("{OLD_SECRET},{SECRET}"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("HTTP 202"), "{stdout}");
    assert!(stdout.contains(r#""status":"queued""#), "{stdout}");
    let msg = app
        .tap
        .get(&app.tap_queue, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.delivery.data, std::fs::read(file).unwrap());
    app.stop().await;
}
