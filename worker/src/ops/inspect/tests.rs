//! The pure parts of the operator commands: what an audit row says changed, and the text.

use super::explain::{Effect, Entry, Explanation, UserState, effect};
use super::render;
use super::slo::SloRow;
use super::status::{
    BrakeStatus, DeadReasonCount, QueueStatus, Reach, RelayStatus, Status, SyncStatus,
};
use chrono::{TimeZone, Utc};
use serde_json::json;

fn at(h: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, h, 0, 0)
        .single()
        .unwrap_or_default()
}

#[test]
fn effect_reads_roles_groups_activity_and_profile_from_the_summaries() {
    let before = json!({"active": true, "email": "a@x", "given_name": "Al", "groups": ["g1", "g2"],
                        "roles": ["admin (scalekit)", "member (scalekit)"]});
    let after = json!({"active": false, "email": "a@x", "given_name": "Alice", "groups": ["g2", "g3"],
                       "roles": ["member (scalekit)", "viewer (mapping)"]});
    let e = effect("deactivated", Some(&before), Some(&after));
    assert_eq!(e.active, Some((Some(true), false)));
    assert_eq!(e.granted, ["viewer (mapping)"]);
    assert_eq!(e.revoked, ["admin (scalekit)"]);
    assert_eq!(
        (e.joined.as_slice(), e.left.as_slice()),
        (&["g3".to_owned()][..], &["g1".to_owned()][..])
    );
    assert_eq!(e.profile, ["given_name"]);
    // A first appearance: active from nothing, every role granted, no profile diff.
    let created = effect("created", None, Some(&after));
    assert_eq!(created.active, Some((None, false)));
    assert_eq!(created.granted.len(), 2);
    assert!(created.profile.is_empty() && created.revoked.is_empty());
    // Nothing changed: nothing said.
    let same = effect("updated", Some(&before), Some(&before));
    assert_eq!(
        same,
        Effect {
            action: "updated".into(),
            ..Effect::default()
        }
    );
}

#[test]
fn explain_text_tells_the_story_and_escapes_what_came_from_outside() {
    let x = Explanation {
        organization_id: "org_1".into(),
        directory_user_id: "diruser_1".into(),
        user: Some(UserState {
            email: Some("alice@x\u{1b}[31m".into()),
            display_name: Some("Alice".into()),
            active: false,
            deactivated_at: Some(at(11)),
            erased_at: None,
            provisioned_at: Some(at(9)),
            updated_at: at(11),
            roles: vec![],
            groups: vec!["g2".into()],
        }),
        history: vec![
            Entry {
                event_id: "evt_1".into(),
                event_type: "organization.directory.user_created".into(),
                occurred_at: Some(at(9)),
                source: Some("webhook".into()),
                handled_at: at(9),
                outcome: "applied".into(),
                reason: None,
                duplicates: 2,
                changes: vec![Effect {
                    action: "created".into(),
                    active: Some((None, true)),
                    granted: vec!["admin (scalekit)".into()],
                    ..Effect::default()
                }],
            },
            Entry {
                event_id: "evt_2".into(),
                event_type: "organization.directory.user_deleted".into(),
                occurred_at: Some(at(10)),
                source: Some("sync".into()),
                handled_at: at(11),
                outcome: "held".into(),
                reason: None,
                duplicates: 0,
                changes: vec![],
            },
        ],
    };
    let text = render::explain(&x);
    assert!(
        text.contains("INACTIVE since 2026-12-02T11:00:00Z"),
        "{text}"
    );
    assert!(
        text.contains("alice@x\\u{1b}[31m"),
        "control characters escaped: {text}"
    );
    assert!(
        text.contains("created; none → active; roles granted: admin (scalekit)"),
        "{text}"
    );
    assert!(
        text.contains("delivered 2 more times: duplicates, changed nothing"),
        "{text}"
    );
    assert!(
        text.contains("HELD by the deprovisioning brake (worker brake show --org org_1)"),
        "{text}"
    );
    assert!(text.find("evt_1") < text.find("evt_2"), "{text}");
}

#[test]
fn status_text_flags_what_needs_attention() {
    let s = Status {
        checked_at: at(12),
        database: Reach {
            ok: true,
            error: None,
        },
        broker: Reach {
            ok: false,
            error: Some("connection refused".into()),
        },
        queues: vec![QueueStatus {
            name: "scim.events.apply".into(),
            role: "apply".into(),
            messages: 12,
            unacked: None,
            consumers: 0,
            publish_rate: None,
            ack_rate: None,
        }],
        rates: "broker unreachable".into(),
        dead_letters: vec![DeadReasonCount {
            reason: "retries_exhausted".into(),
            events: 3,
            last_at: at(11),
        }],
        relay: Some(RelayStatus {
            unpublished: 40,
            lag_seconds: 75.0,
            leader: false,
            last_published_at: Some(at(10)),
        }),
        brakes: vec![BrakeStatus {
            organization_id: "org_9".into(),
            held: 20,
            engaged_at: Some(at(11)),
        }],
        syncs: vec![SyncStatus {
            organization_id: "org_9".into(),
            directory_id: "dir_1".into(),
            enabled: Some(true),
            finished_at: Some(at(6)),
            outcome: Some("failed".into()),
            users_listed: None,
            users_changed: None,
            detail: Some("Directory API: 401".into()),
        }],
    };
    assert!(!s.healthy());
    let text = render::status(&s);
    for needle in [
        "database: ok    broker: UNREACHABLE (connection refused)",
        "retries_exhausted              3 events, last 2026-12-02T11:00:00Z (60m ago)",
        "change relay: NO LEADER, 40 unpublished, lag 75.0s",
        "ENGAGED for org_9: 20 deactivations held",
        "org_9/dir_1: 2026-12-02T06:00:00Z (6h ago) — failed: Directory API: 401",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn slo_text_has_a_row_per_organization_and_class() {
    let rows = vec![SloRow {
        organization_id: "org_1".into(),
        class: "deprovisioning".into(),
        changes: 4,
        committed_p50: Some(0.25),
        committed_p99: Some(90.0),
        published_p50: Some(0.3),
        published_p99: None,
        unpublished: 1,
    }];
    let text = render::slo(&rows, at(0));
    let line = text
        .lines()
        .find(|l| l.contains("org_1"))
        .unwrap_or_default();
    for cell in ["deprovisioning", "250 ms", "90.0 s", "300 ms", "-"] {
        assert!(line.contains(cell), "{cell:?} missing from {line:?}");
    }
    assert!(render::slo(&[], at(0)).contains("no provisioning or deprovisioning"));
}
