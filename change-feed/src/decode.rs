//! A delivery's body as a change: kinds this version does not know pass as `other` (counted,
//! logged once each); a body that is no change stops the reader, naming its `seq`.

use shared::changes::Change;

#[derive(Debug, thiserror::Error)]
pub enum FeedError<E: std::error::Error + 'static> {
    #[error("broker")]
    Broker(#[from] lapin::Error),
    #[error("application")]
    App(#[source] E),
    /// A message that is not a change of a known kind: the reader stops rather than skip it
    /// (a skipped change is a gap the application cannot see).
    #[error("change seq {seq} (stream offset {offset}) does not parse: {reason}", seq = seq.map_or_else(|| "unknown".to_owned(), |s| s.to_string()))]
    Corrupt {
        seq: Option<i64>,
        offset: u64,
        reason: String,
    },
}

/// Kinds this reader does not know, counted; each is logged the first time it is seen.
#[derive(Debug, Default)]
pub struct UnknownKinds(std::collections::BTreeMap<String, u64>);

impl UnknownKinds {
    /// Counts one change of `kind`; true the first time.
    pub fn note(&mut self, kind: &str) -> bool {
        let n = self.0.entry(kind.to_owned()).or_default();
        *n += 1;
        *n == 1
    }

    /// How many changes of `kind` were seen.
    pub fn count(&self, kind: &str) -> u64 {
        self.0.get(kind).copied().unwrap_or_default()
    }
}

/// A delivery's body as a change. A kind this version does not know comes back as
/// [`shared::changes::ChangeKind::Other`], noted in `unknown` (and logged the first time); a
/// body that is no change at all is [`FeedError::Corrupt`].
pub fn decode<E: std::error::Error + 'static>(
    body: &[u8],
    offset: u64,
    unknown: &mut UnknownKinds,
) -> Result<Change, FeedError<E>> {
    #[derive(serde::Deserialize)]
    struct Head {
        seq: Option<i64>,
        kind: Option<String>,
    }
    match serde_json::from_slice::<Change>(body) {
        Ok(change) => {
            if change.kind == shared::changes::ChangeKind::Other {
                let kind = serde_json::from_slice::<Head>(body)
                    .ok()
                    .and_then(|h| h.kind)
                    .unwrap_or_default();
                if unknown.note(&kind) {
                    tracing::warn!(
                        kind = %shared::redact::for_log(&kind),
                        seq = change.seq,
                        "change kind unknown to this reader: handed on as `other` (further ones are counted, not logged)"
                    );
                }
            }
            Ok(change)
        }
        Err(error) => Err(FeedError::Corrupt {
            seq: serde_json::from_slice::<Head>(body)
                .ok()
                .and_then(|h| h.seq),
            offset,
            reason: shared::Chain(&error).to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::changes::ChangeKind;

    #[test]
    fn unknown_kinds_pass_as_other_and_a_broken_change_stops_the_reader() {
        let mut unknown = UnknownKinds::default();
        let newer = br#"{"id":"chg_3","seq":3,"kind":"user.suspended","organization_id":"o",
            "cause_event_id":"e","occurred_at":"2026-01-01T00:00:00Z",
            "committed_at":"2026-01-01T00:00:00Z"}"#;
        for _ in 0..3 {
            let change = decode::<std::io::Error>(newer, 7, &mut unknown).unwrap();
            assert_eq!((change.kind, change.seq), (ChangeKind::Other, 3));
        }
        assert_eq!(unknown.count("user.suspended"), 3);
        assert!(!unknown.note("user.suspended"), "logged once");
        let broken = br#"{"id":"chg_4","seq":4,"kind":"user.updated","organization_id":"o"}"#;
        match decode::<std::io::Error>(broken, 8, &mut unknown) {
            Err(
                e @ FeedError::Corrupt {
                    seq: Some(4),
                    offset: 8,
                    ..
                },
            ) => {
                assert!(
                    e.to_string().starts_with("change seq 4 (stream offset 8)"),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
        match decode::<std::io::Error>(b"not json", 9, &mut unknown) {
            Err(FeedError::Corrupt { seq: None, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
