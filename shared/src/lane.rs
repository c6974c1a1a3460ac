//! Which queue an event goes to, decided where it is first parsed (ingest): deprovisionings
//! take the urgent path (`{prefix}.events.urgent`, `docs/architecture.md`, "Urgent path") so
//! that a customer's offboarding never waits behind other customers' bulk work; an
//! organization sending faster than its fair share (an onboarding burst), and our own sync
//! snapshots, the bulk queue (`{prefix}.events.bulk`, "Fair share"); everything else the apply
//! queue. The apply path tolerates any arrival order, so overtaking is safe.

use crate::envelope::EnvelopeOf;
use crate::event_type::EventType;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The one payload field routing looks at: `data.active`, when `data` is an object that has
/// it as a boolean. Any other `data` (the envelope accepts any JSON there) reads as `None`;
/// nothing else of the payload is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RouteHint {
    pub active: Option<bool>,
}

/// The envelope as ingest reads it to route a webhook.
pub type EnvelopeRoute = EnvelopeOf<RouteHint>;

impl<'de> Deserialize<'de> for RouteHint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HintVisitor;
        impl<'de> Visitor<'de> for HintVisitor {
            type Value = RouteHint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RouteHint, A::Error> {
                let mut hint = RouteHint::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "active" {
                        hint.active = match map.next_value::<serde_json::Value>()? {
                            serde_json::Value::Bool(b) => Some(b),
                            _ => None,
                        };
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(hint)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RouteHint, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RouteHint::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<RouteHint, E> {
                Ok(RouteHint::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<RouteHint, E> {
                Ok(RouteHint::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<RouteHint, E> {
                Ok(RouteHint::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<RouteHint, E> {
                Ok(RouteHint::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<RouteHint, E> {
                Ok(RouteHint::default())
            }
            fn visit_unit<E>(self) -> Result<RouteHint, E> {
                Ok(RouteHint::default())
            }
        }
        deserializer.deserialize_any(HintVisitor)
    }
}

/// Where an event is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// `{prefix}.events` → `{prefix}.events.apply`.
    Apply,
    /// `{prefix}.events.urgent` → the queue of the same name.
    Urgent,
    /// `{prefix}.events.bulk` → the queue of the same name.
    Bulk,
}

/// The lane of an event: a user's deletion, a user update that says `active: false`, and a
/// directory's disabling are deprovisionings (urgent); everything else, unknown types
/// included, goes to the apply queue.
pub fn lane(event_type: &str, hint: RouteHint) -> Lane {
    match EventType::from_wire(event_type) {
        Some(EventType::UserDeleted | EventType::DirectoryDisabled) => Lane::Urgent,
        Some(EventType::UserUpdated) if hint.active == Some(false) => Lane::Urgent,
        _ => Lane::Apply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(data: &str) -> Result<RouteHint, serde_json::Error> {
        serde_json::from_str(data)
    }

    #[test]
    fn deprovisionings_are_urgent_and_nothing_else() {
        let off = RouteHint {
            active: Some(false),
        };
        let on = RouteHint { active: Some(true) };
        let none = RouteHint::default();
        assert_eq!(
            lane("organization.directory.user_deleted", none),
            Lane::Urgent
        );
        assert_eq!(lane("organization.directory_disabled", none), Lane::Urgent);
        assert_eq!(
            lane("organization.directory.user_updated", off),
            Lane::Urgent
        );
        assert_eq!(lane("organization.directory.user_updated", on), Lane::Apply);
        assert_eq!(
            lane("organization.directory.user_updated", none),
            Lane::Apply
        );
        assert_eq!(
            lane("organization.directory.user_created", off),
            Lane::Apply
        );
        assert_eq!(
            lane("organization.directory.group_deleted", none),
            Lane::Apply
        );
        assert_eq!(lane("organization.directory_enabled", none), Lane::Apply);
        assert_eq!(lane("something.new", off), Lane::Apply);
    }

    #[test]
    fn the_hint_reads_active_from_any_json_without_failing() {
        assert_eq!(
            hint(r#"{"id":"u","active":false}"#).unwrap().active,
            Some(false)
        );
        assert_eq!(
            hint(r#"{"nested":{"active":false},"active":true}"#)
                .unwrap()
                .active,
            Some(true)
        );
        assert_eq!(hint(r#"{"active":"no"}"#).unwrap().active, None);
        assert_eq!(hint(r#"{"active":null}"#).unwrap().active, None);
        for other in [
            "[1,{\"active\":false}]",
            "3",
            "1.5",
            "-2",
            "\"x\"",
            "null",
            "true",
            "{}",
        ] {
            assert_eq!(hint(other).unwrap(), RouteHint::default(), "{other}");
        }
        assert!(hint("{").is_err());
    }

    #[test]
    fn the_route_envelope_accepts_what_the_head_accepts() {
        for body in [
            r#"{"spec_version":"1","id":"evt_1","type":"organization.directory.user_updated","occurred_at":"2025-01-01T00:00:00Z","environment_id":"env_1","organization_id":"org_1","object":"DirectoryUser","data":{"id":"u","active":false}}"#,
            r#"{"spec_version":"1","id":"evt_2","type":"x","occurred_at":"2025-01-01T00:00:00Z","environment_id":"env_1","object":"X","data":[1,2]}"#,
            r#"{"spec_version":"1","id":"evt_3","type":"x","occurred_at":"2025-01-01T00:00:00Z","environment_id":"env_1","object":"X"}"#,
        ] {
            let route = serde_json::from_str::<EnvelopeRoute>(body);
            let head = serde_json::from_str::<crate::EnvelopeHead>(body);
            assert_eq!(route.is_ok(), head.is_ok(), "{body}");
        }
        let r: EnvelopeRoute = serde_json::from_str(
            r#"{"spec_version":"1","id":"evt_1","type":"organization.directory.user_updated","occurred_at":"2025-01-01T00:00:00Z","environment_id":"env_1","organization_id":"org_1","object":"DirectoryUser","data":{"id":"u","active":false}}"#,
        )
        .unwrap();
        assert_eq!(lane(&r.event_type, r.data), Lane::Urgent);
    }
}
