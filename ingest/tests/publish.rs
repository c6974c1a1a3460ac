//! A verified webhook becomes exactly the message the contract describes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::types::AMQPValue;
use shared::amqp::header_str;
use std::time::Duration;
use testkit::ingest::*;
use testkit::{FIXTURES, fixture};

#[tokio::test]
async fn each_fixture_is_published_byte_for_byte_with_contract_headers() {
    let app = spawn_app().await;
    for (i, name) in FIXTURES.iter().enumerate() {
        let body = fixture(name);
        let webhook_id = format!("msg_fixture_{i}");
        let resp = app.post_signed(&webhook_id, &body).await;
        assert_eq!(resp.status(), 202, "{name}");
        let json: serde_json::Value = resp.json().await.unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["status"], "queued");
        assert_eq!(json["event_id"], parsed["id"]);

        let msg = app
            .tap
            .get(&app.tap_queue, Duration::from_secs(5))
            .await
            .unwrap()
            .expect("message reached the exchange");
        let d = &msg.delivery;
        assert_eq!(d.data, body, "{name}: body bytes");
        assert_eq!(d.routing_key.as_str(), parsed["type"].as_str().unwrap());
        // Deprovisionings take the urgent path (`shared::lane`), the rest the events exchange.
        let urgent = matches!(
            parsed["type"].as_str(),
            Some("organization.directory.user_deleted" | "organization.directory_disabled")
        );
        let exchange = if urgent {
            app.topology.urgent_exchange()
        } else {
            app.topology.exchange()
        };
        assert_eq!(d.exchange.as_str(), exchange, "{name}");
        let p = &d.properties;
        assert_eq!(
            p.message_id().as_ref().unwrap().as_str(),
            parsed["id"].as_str().unwrap()
        );
        assert_eq!(
            p.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(*p.delivery_mode(), Some(2));
        assert!(p.timestamp().is_some());
        assert_eq!(header_str(p, "webhook-id"), Some(webhook_id.as_str()));
        assert_eq!(header_str(p, "event-type"), parsed["type"].as_str());
        assert_eq!(
            header_str(p, "organization-id"),
            parsed["organization_id"].as_str()
        );
        assert_eq!(header_str(p, "occurred-at"), parsed["occurred_at"].as_str());
        assert_eq!(header_str(p, "source"), Some("webhook"));
        let names: Vec<_> = p
            .headers()
            .as_ref()
            .unwrap()
            .inner()
            .keys()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "event-type",
                "occurred-at",
                "organization-id",
                "source",
                "webhook-id"
            ]
        );
    }
    // Also on the worker's inputs: 6 on the apply queue, the 2 deprovisionings on the urgent.
    assert_eq!(app.tap.depth(&app.topology.apply_queue()).await.unwrap(), 6);
    assert_eq!(
        app.tap.depth(&app.topology.urgent_queue()).await.unwrap(),
        2
    );
    assert_eq!(app.metrics.urgent.get(), 2);
    app.stop().await;
}

#[tokio::test]
async fn unknown_event_type_is_accepted_and_published() {
    let app = spawn_app().await;
    let body = br#"{"spec_version":"1","id":"evt_unknown_1","type":"scalekit.org.create","occurred_at":"2024-10-28T05:46:02.332510521Z","environment_id":"env_1","organization_id":"org_1","object":"Organization","data":{"name":"AMK"}}"#;
    let resp = app.post_signed("msg_unknown", body).await;
    assert_eq!(resp.status(), 202);
    let msg = app
        .tap
        .get(&app.tap_queue, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.delivery.routing_key.as_str(), "scalekit.org.create");
    assert_eq!(msg.delivery.data, body);
    app.stop().await;
}

#[tokio::test]
async fn signed_non_json_is_accepted_and_dead_lettered_as_malformed() {
    let app = spawn_app().await;
    let body = b"this is not json";
    let resp = app.post_signed("msg_malformed", body).await;
    assert_eq!(resp.status(), 202);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["status"], "dead_lettered");
    let dead = app
        .tap
        .get(&app.topology.dead_queue(), Duration::from_secs(5))
        .await
        .unwrap()
        .expect("in the dead-letter queue");
    assert_eq!(dead.delivery.data, body);
    let p = &dead.delivery.properties;
    assert_eq!(header_str(p, "x-dead-reason"), Some("malformed"));
    assert_eq!(header_str(p, "webhook-id"), Some("msg_malformed"));
    assert!(header_str(p, "x-dead-error").is_some_and(|e| !e.is_empty()));
    // Not on the events exchange.
    assert!(
        app.tap
            .get(&app.tap_queue, Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
    // A JSON body that is not an envelope is malformed too.
    let resp = app
        .post_signed("msg_not_envelope", br#"{"hello":"world"}"#)
        .await;
    assert_eq!(resp.status(), 202);
    let dead = app
        .tap
        .get(&app.topology.dead_queue(), Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.delivery.data, br#"{"hello":"world"}"#);
    app.stop().await;
}

#[tokio::test]
async fn five_hundred_concurrent_requests_give_five_hundred_messages() {
    let app = spawn_app().await;
    let template: serde_json::Value =
        serde_json::from_slice(&fixture("03_user_created.json")).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..500 {
        let mut event = template.clone();
        event["id"] = format!("evt_concurrent_{i}").into();
        let body = serde_json::to_vec(&event).unwrap();
        let req = app.signed_request(&format!("msg_c_{i}"), body);
        tasks.spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
    }
    let mut accepted = 0;
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), 202);
        accepted += 1;
    }
    assert_eq!(accepted, 500);
    let depth = app
        .tap
        .wait_depth(&app.tap_queue, 500, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(depth, 500);
    // And not one more.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.tap.depth(&app.tap_queue).await.unwrap(), 500);
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"scim_ingest_requests_total{outcome="queued"} 500"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("scim_ingest_publish_seconds_bucket"),
        "{metrics}"
    );
    let _ = AMQPValue::Void;
    app.stop().await;
}
