//! Broker loss: 503 + Retry-After fast, /readyz false, never 2xx; back to 202 without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};
use testkit::TcpProxy;
use testkit::fixture;
use testkit::ingest::*;

#[tokio::test]
async fn closed_port_means_503_and_not_ready() {
    // Nothing listens on this port.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = spawn_with(&format!("amqp://guest:guest@{unused}/%2f"), &[], false).await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let body = fixture("03_user_created.json");
    let started = Instant::now();
    let resp = app.post_signed("msg_down", &body).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered quickly"
    );
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "5");
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["error"], "broker_unavailable");
    app.stop().await;
}

#[tokio::test]
async fn connection_cut_then_restored_without_restarting_ingest() {
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap())
        .await
        .unwrap();
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port());
    let app = spawn_with(&url, &[], true).await;
    let body = fixture("03_user_created.json");
    assert_eq!(app.post_signed("msg_before", &body).await.status(), 202);

    proxy.cut().await;
    // Within a few seconds the link notices; from then on every answer is 503, none 2xx.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut saw_503 = false;
    while Instant::now() < deadline {
        let started = Instant::now();
        let resp = app.post_signed("msg_during", &body).await;
        let status = resp.status().as_u16();
        assert_ne!(status, 202, "no 2xx while the broker is unreachable");
        if status == 503 {
            assert!(resp.headers().contains_key("retry-after"));
            assert!(started.elapsed() < Duration::from_secs(3), "no hanging");
            saw_503 = true;
            break;
        }
    }
    assert!(saw_503);
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );

    proxy.restore().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    while Instant::now() < deadline {
        status = app.post_signed("msg_after", &body).await.status().as_u16();
        if status == 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 202, "recovered without restart");
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Exactly the two accepted messages reached the exchange.
    assert_eq!(
        app.tap
            .wait_depth(&app.tap_queue, 2, Duration::from_secs(5))
            .await
            .unwrap(),
        2
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.tap.depth(&app.tap_queue).await.unwrap(), 2);
    app.stop().await;
}
