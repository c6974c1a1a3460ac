//! The query of `GET /v1/changes`, checked: every parameter known, each in range, so a typo
//! (`afer=`) is a 400 naming it rather than a silent default.

use shared::changes::ChangeKind;
use std::time::Duration;

/// Most changes one answer may hold.
pub const MAX_LIMIT: i64 = 1000;
/// Changes an answer holds when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;
/// Longest long-poll.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Changes with `seq` above this (0: from the start of what is kept).
    pub after: i64,
    pub limit: i64,
    /// Only these kinds (any when empty).
    pub kinds: Vec<ChangeKind>,
    pub organization_id: Option<String>,
    /// Wait up to this long for a change when there is none yet.
    pub wait: Duration,
}

/// A parameter that cannot be used: its name and why (the 400's body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {reason}")]
pub struct BadParam {
    pub parameter: String,
    pub reason: String,
}

fn bad(parameter: &str, reason: impl Into<String>) -> BadParam {
    BadParam {
        parameter: shared::redact::for_log(parameter),
        reason: reason.into(),
    }
}

impl Params {
    /// Parses a decoded query (`after=5&kind=user.updated&kind=…`).
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, BadParam> {
        let mut after = None;
        let mut limit = DEFAULT_LIMIT;
        let mut kinds = Vec::new();
        let mut organization_id = None;
        let mut wait = Duration::ZERO;
        for (name, value) in pairs {
            match name.as_str() {
                "after" => {
                    let n: i64 = value
                        .parse()
                        .map_err(|_| bad("after", "must be a whole number (a seq; 0 to start)"))?;
                    if n < 0 {
                        return Err(bad("after", "must not be negative"));
                    }
                    after = Some(n);
                }
                "limit" => {
                    limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| bad("limit", format!("must be 1 to {MAX_LIMIT}")))?;
                }
                "kind" => {
                    for k in value.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                        let kind = ChangeKind::parse(k).ok_or_else(|| {
                            bad(
                                "kind",
                                format!("unknown kind {}", shared::redact::for_log(k)),
                            )
                        })?;
                        if !kinds.contains(&kind) {
                            kinds.push(kind);
                        }
                    }
                }
                "organization_id" => {
                    if value.is_empty() || value.len() > 255 {
                        return Err(bad("organization_id", "must be 1 to 255 characters"));
                    }
                    organization_id = Some(value.clone());
                }
                "wait" => {
                    let secs: u64 = value
                        .parse()
                        .ok()
                        .filter(|s| *s <= MAX_WAIT.as_secs())
                        .ok_or_else(|| {
                            bad(
                                "wait",
                                format!("must be 0 to {} seconds", MAX_WAIT.as_secs()),
                            )
                        })?;
                    wait = Duration::from_secs(secs);
                }
                other => return Err(bad(other, "unknown parameter")),
            }
        }
        Ok(Self {
            after: after.ok_or_else(|| bad("after", "is required (0 to start)"))?,
            limit,
            kinds,
            organization_id,
            wait,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &[(&str, &str)]) -> Result<Params, BadParam> {
        let pairs: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Params::parse(&pairs)
    }

    #[test]
    fn defaults_and_every_parameter() {
        assert_eq!(
            parse(&[("after", "0")]).unwrap(),
            Params {
                after: 0,
                limit: 100,
                kinds: vec![],
                organization_id: None,
                wait: Duration::ZERO
            }
        );
        let p = parse(&[
            ("after", "42"),
            ("limit", "1000"),
            ("kind", "user.deprovisioned"),
            ("kind", "user.erased,user.deprovisioned"),
            ("organization_id", "org_1"),
            ("wait", "30"),
        ])
        .unwrap();
        assert_eq!(p.after, 42);
        assert_eq!(p.limit, 1000);
        assert_eq!(
            p.kinds,
            [ChangeKind::UserDeprovisioned, ChangeKind::UserErased]
        );
        assert_eq!(p.organization_id.as_deref(), Some("org_1"));
        assert_eq!(p.wait, Duration::from_secs(30));
    }

    #[test]
    fn each_bad_parameter_is_named() {
        for (query, named) in [
            (&[("limit", "5")][..], "after"),
            (&[("after", "x")][..], "after"),
            (&[("after", "-1")][..], "after"),
            (&[("after", "1"), ("limit", "0")][..], "limit"),
            (&[("after", "1"), ("limit", "1001")][..], "limit"),
            (&[("after", "1"), ("kind", "user.created")][..], "kind"),
            (&[("after", "1"), ("kind", "other")][..], "kind"),
            (&[("after", "1"), ("wait", "31")][..], "wait"),
            (&[("after", "1"), ("wait", "1.5")][..], "wait"),
            (
                &[("after", "1"), ("organization_id", "")][..],
                "organization_id",
            ),
            (&[("afer", "1")][..], "afer"),
        ] {
            let e = parse(query).unwrap_err();
            assert_eq!(e.parameter, named, "{query:?}: {e}");
        }
    }
}
