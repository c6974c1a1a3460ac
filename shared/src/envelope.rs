//! The webhook envelope (`docs/scalekit.md`, "Events") and the typed event it carries.

use crate::event_data::{DirectoryData, GroupData, UserData, UserDeletedData};
use crate::event_type::EventType;
use crate::ids::{EnvironmentId, EventId, OrganizationId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every webhook body: the fields common to all events, with the payload as `D`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct EnvelopeOf<D> {
    pub spec_version: String,
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339, nanosecond precision kept.
    pub occurred_at: DateTime<Utc>,
    pub environment_id: EnvironmentId,
    #[serde(default)]
    pub organization_id: Option<OrganizationId>,
    pub object: String,
    pub data: D,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// The envelope with `data` kept raw.
pub type Envelope = EnvelopeOf<Value>;

/// The envelope without its payload: what ingest needs to route a webhook. It accepts exactly
/// the bodies [`Envelope`] accepts — `data` must be present and be JSON — but checks the payload
/// without building it (no allocation per field of a body that is forwarded as bytes anyway).
pub type EnvelopeHead = EnvelopeOf<serde::de::IgnoredAny>;

/// The typed payload. Adding a variant is a compile error in every exhaustive `match` over it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    DirectoryEnabled(DirectoryData),
    DirectoryDisabled(DirectoryData),
    UserCreated(Box<UserData>),
    UserUpdated(Box<UserData>),
    UserDeleted(UserDeletedData),
    GroupCreated(GroupData),
    GroupUpdated(GroupData),
    GroupDeleted(GroupData),
    /// A type this build does not know: never a parse error.
    Unknown {
        event_type: String,
        raw: Value,
    },
}

impl Event {
    /// The known type, or `None` for [`Event::Unknown`].
    pub fn event_type(&self) -> Option<EventType> {
        Some(match self {
            Event::DirectoryEnabled(_) => EventType::DirectoryEnabled,
            Event::DirectoryDisabled(_) => EventType::DirectoryDisabled,
            Event::UserCreated(_) => EventType::UserCreated,
            Event::UserUpdated(_) => EventType::UserUpdated,
            Event::UserDeleted(_) => EventType::UserDeleted,
            Event::GroupCreated(_) => EventType::GroupCreated,
            Event::GroupUpdated(_) => EventType::GroupUpdated,
            Event::GroupDeleted(_) => EventType::GroupDeleted,
            Event::Unknown { .. } => return None,
        })
    }

    /// The id of what the event is about — the directory user, group or directory (the
    /// `data.id` of its type); `None` for a type this build does not know.
    pub fn subject_id(&self) -> Option<&str> {
        match self {
            Event::DirectoryEnabled(d) | Event::DirectoryDisabled(d) => Some(d.id.as_str()),
            Event::UserCreated(u) | Event::UserUpdated(u) => Some(u.id.as_str()),
            Event::UserDeleted(u) => Some(u.id.as_str()),
            Event::GroupCreated(g) | Event::GroupUpdated(g) | Event::GroupDeleted(g) => {
                Some(g.id.as_str())
            }
            Event::Unknown { .. } => None,
        }
    }

    /// The organization named inside `data`, if the event type has one.
    pub fn data_organization_id(&self) -> Option<&OrganizationId> {
        match self {
            Event::DirectoryEnabled(d) | Event::DirectoryDisabled(d) => Some(&d.organization_id),
            Event::UserCreated(u) | Event::UserUpdated(u) => Some(&u.organization_id),
            Event::UserDeleted(u) => Some(&u.organization_id),
            Event::GroupCreated(g) | Event::GroupUpdated(g) | Event::GroupDeleted(g) => {
                Some(&g.organization_id)
            }
            Event::Unknown { .. } => None,
        }
    }
}

/// Why a body is not a usable event. All of these are permanent: retrying cannot help.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not a JSON event envelope: {}", json_error(.0))]
    Envelope(#[source] serde_json::Error),
    #[error("`data` of a {event_type} event is invalid: {}", json_error(.source))]
    Data {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A JSON error as it may be written to a log or an `x-dead-error` header: what kind of error
/// and where, never a value from the body. serde's own text quotes input ("invalid type:
/// string \"…\"", "unknown variant `…`"); only its "missing field" message, which names a
/// field of ours, is kept.
pub fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = e.to_string();
    let kind = match e.classify() {
        Category::Data if text.starts_with("missing field `") => {
            return text;
        }
        Category::Data => "a value of the wrong type or form",
        Category::Syntax => "invalid JSON",
        Category::Eof => "truncated JSON",
        Category::Io => "unreadable input",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

/// A parsed webhook body: the envelope plus its typed event.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    pub envelope: Envelope,
    pub event: Event,
}

impl WebhookEvent {
    /// Parses a body. Unknown types become [`Event::Unknown`]; a known type whose `data` lacks a
    /// required field (ids) is an error.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let envelope: Envelope = serde_json::from_slice(body).map_err(ParseError::Envelope)?;
        let event = Self::typed(&envelope)?;
        Ok(Self { envelope, event })
    }

    fn typed(envelope: &Envelope) -> Result<Event, ParseError> {
        fn data<T: serde::de::DeserializeOwned>(e: &Envelope) -> Result<T, ParseError> {
            T::deserialize(&e.data).map_err(|source| ParseError::Data {
                event_type: e.event_type.clone(),
                source,
            })
        }
        let Some(kind) = EventType::from_wire(&envelope.event_type) else {
            return Ok(Event::Unknown {
                event_type: envelope.event_type.clone(),
                raw: envelope.data.clone(),
            });
        };
        Ok(match kind {
            EventType::DirectoryEnabled => Event::DirectoryEnabled(data(envelope)?),
            EventType::DirectoryDisabled => Event::DirectoryDisabled(data(envelope)?),
            EventType::UserCreated => Event::UserCreated(Box::new(data(envelope)?)),
            EventType::UserUpdated => Event::UserUpdated(Box::new(data(envelope)?)),
            EventType::UserDeleted => Event::UserDeleted(data(envelope)?),
            EventType::GroupCreated => Event::GroupCreated(data(envelope)?),
            EventType::GroupUpdated => Event::GroupUpdated(data(envelope)?),
            EventType::GroupDeleted => Event::GroupDeleted(data(envelope)?),
        })
    }

    /// The organization: the envelope's, else the one inside `data`.
    pub fn organization_id(&self) -> Option<&OrganizationId> {
        self.envelope
            .organization_id
            .as_ref()
            .or_else(|| self.event.data_organization_id())
    }
}

#[cfg(test)]
mod head_tests {
    use super::*;

    fn same_verdict(body: &[u8]) {
        let full = serde_json::from_slice::<Envelope>(body);
        let head = serde_json::from_slice::<EnvelopeHead>(body);
        assert_eq!(
            full.is_ok(),
            head.is_ok(),
            "{}: {full:?} / {head:?}",
            String::from_utf8_lossy(body)
        );
        if let (Ok(f), Ok(h)) = (full, head) {
            assert_eq!(
                (f.id, f.event_type, f.occurred_at, f.organization_id),
                (h.id, h.event_type, h.occurred_at, h.organization_id)
            );
        }
    }

    #[test]
    fn head_accepts_exactly_what_the_envelope_accepts() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/events");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                same_verdict(&std::fs::read(path).unwrap());
                seen += 1;
            }
        }
        assert_eq!(seen, 8);
        let ok = r#"{"spec_version":"1","id":"evt_1","type":"x.y","occurred_at":"2025-01-01T00:00:00Z","environment_id":"env_1","object":"X","data":{"a":[1,{"b":null}]}}"#;
        same_verdict(ok.as_bytes());
        for broken in [
            ok.replace(r#","data":{"a":[1,{"b":null}]}"#, ""),
            ok.replace(r#"{"a":[1,{"b":null}]}"#, "[1,2"),
            ok.replace(
                r#""occurred_at":"2025-01-01T00:00:00Z""#,
                r#""occurred_at":"yesterday""#,
            ),
            ok.replace(r#""id":"evt_1""#, r#""id":7"#),
            ok.replace(r#""data""#, r#""data":1,"data""#),
            "not json".to_owned(),
        ] {
            same_verdict(broken.as_bytes());
        }
    }
}

#[cfg(test)]
mod json_error_tests {
    use super::{WebhookEvent, json_error};

    fn error_of(body: &str) -> String {
        match WebhookEvent::parse(body.as_bytes()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parse_errors_never_quote_the_body() {
        let secret = "SECRET-VALUE\u{1b}[2J";
        let cases = [
            format!(r#"{{"id": 12, "type": "{secret}"}}"#),
            format!(
                r#"{{"id": "evt_1", "type": "organization.directory.user_created", "occurred_at": "{secret}"}}"#
            ),
            format!(r#"{{"id": ["{secret}"]"#),
            format!(r#"{{"{secret}": 1e999}}"#),
        ];
        for body in &cases {
            let text = error_of(body);
            assert!(!text.is_empty(), "{body} parsed");
            assert!(!text.contains("SECRET"), "{text}");
            assert!(!text.contains('\u{1b}'), "{text}");
        }
        let missing: serde_json::Error = serde_json::from_str::<super::Envelope>("{}").unwrap_err();
        assert!(json_error(&missing).starts_with("missing field `"));
    }
}
