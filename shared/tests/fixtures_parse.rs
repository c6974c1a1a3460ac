//! Every sample body parses to its variant, with nanosecond `occurred_at` and the raw `data` kept.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use shared::{Event, EventType, WebhookEvent};
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/events")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn each_fixture_parses_to_its_variant() {
    let cases = [
        ("01_directory_enabled.json", EventType::DirectoryEnabled),
        ("02_group_created.json", EventType::GroupCreated),
        ("03_user_created.json", EventType::UserCreated),
        ("04_user_updated.json", EventType::UserUpdated),
        ("05_group_updated.json", EventType::GroupUpdated),
        ("06_user_deleted.json", EventType::UserDeleted),
        ("07_group_deleted.json", EventType::GroupDeleted),
        ("08_directory_disabled.json", EventType::DirectoryDisabled),
    ];
    for (file, expected) in cases {
        let parsed = WebhookEvent::parse(&fixture(file)).unwrap();
        assert_eq!(parsed.event.event_type(), Some(expected), "{file}");
        assert_eq!(parsed.envelope.event_type, expected.as_str());
        assert_eq!(
            parsed.organization_id().map(|o| o.as_str()),
            Some("org_53879494091473415")
        );
        assert!(parsed.envelope.data.is_object());
    }
}

#[test]
fn user_fields_are_typed() {
    let parsed = WebhookEvent::parse(&fixture("04_user_updated.json")).unwrap();
    let Event::UserUpdated(user) = parsed.event else {
        panic!("wrong variant");
    };
    assert_eq!(user.id.as_str(), "diruser_12312312312312");
    assert_eq!(user.email.as_deref(), Some("jane.smith@example.com"));
    assert_eq!(user.active, Some(true));
    let groups = user.groups.unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1].name.as_deref(), Some("Finance"));
    let roles: Vec<_> = user
        .roles
        .unwrap()
        .into_iter()
        .map(|r| r.role_name)
        .collect();
    assert_eq!(roles, ["member", "billing_admin"]);
    assert_eq!(user.custom_attributes.unwrap()["cost_center"], "cc-42");
    assert_eq!(user.title.as_deref(), Some("Engineer"));
}

#[test]
fn occurred_at_keeps_nanoseconds() {
    let parsed = WebhookEvent::parse(&fixture("01_directory_enabled.json")).unwrap();
    assert_eq!(
        parsed
            .envelope
            .occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "2025-01-06T18:44:10.153954123Z"
    );
    let Event::DirectoryEnabled(dir) = parsed.event else {
        panic!("wrong variant");
    };
    assert_eq!(dir.id.as_str(), "dir_55135622825771522");
    assert_eq!(dir.provider.as_deref(), Some("OKTA"));
}

#[test]
fn group_deleted_carries_dp_id() {
    let parsed = WebhookEvent::parse(&fixture("07_group_deleted.json")).unwrap();
    let Event::GroupDeleted(group) = parsed.event else {
        panic!("wrong variant");
    };
    assert_eq!(
        group.dp_id.as_deref(),
        Some("7c66a173-79c6-4270-ac78-8f35a8121e0a")
    );
    assert_eq!(
        group.directory_id.unwrap().as_str(),
        "dir_55135622825771522"
    );
}

#[test]
fn unknown_type_is_not_an_error() {
    let body = br#"{"spec_version":"1","id":"evt_1","type":"scalekit.org.create","occurred_at":"2024-10-28T05:46:02.332510521Z","environment_id":"env_1","organization_id":"org_1","object":"Organization","data":{"name":"AMK","extra":[1,2]}}"#;
    let parsed = WebhookEvent::parse(body).unwrap();
    match parsed.event {
        Event::Unknown { event_type, raw } => {
            assert_eq!(event_type, "scalekit.org.create");
            assert_eq!(raw["extra"][1], 2);
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
}

#[test]
fn unknown_fields_are_ignored_but_kept_raw() {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("03_user_created.json")).unwrap();
    v["data"]["brand_new_field"] = serde_json::json!({"x": 1});
    v["new_envelope_field"] = serde_json::json!(true);
    let parsed = WebhookEvent::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(matches!(parsed.event, Event::UserCreated(_)));
    assert_eq!(parsed.envelope.data["brand_new_field"]["x"], 1);
}

#[test]
fn invalid_bodies_are_errors() {
    assert!(WebhookEvent::parse(b"not json").is_err());
    assert!(WebhookEvent::parse(br#"{"id":"evt_1"}"#).is_err());
    // A known type whose data lacks its id cannot be applied.
    let body = br#"{"spec_version":"1","id":"evt_1","type":"organization.directory.user_created","occurred_at":"2024-10-28T05:46:02Z","environment_id":"env_1","organization_id":"org_1","object":"DirectoryUser","data":{"organization_id":"org_1"}}"#;
    assert!(matches!(
        WebhookEvent::parse(body),
        Err(shared::ParseError::Data { .. })
    ));
    let bad_time = br#"{"spec_version":"1","id":"evt_1","type":"x","occurred_at":"yesterday","environment_id":"env_1","object":"X","data":{}}"#;
    assert!(WebhookEvent::parse(bad_time).is_err());
}
