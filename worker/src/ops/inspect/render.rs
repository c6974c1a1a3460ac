//! Text for the terminal: `worker status`, `worker explain`, `worker report slo`. Every value
//! that came from a directory or a request (ids, emails, names, error texts) is printed with
//! control characters escaped.

use super::explain::{Effect, Entry, Explanation};
use super::slo::SloRow;
use super::status::Status;
use chrono::{DateTime, Utc};
use shared::redact::escape_controls as esc;
use std::fmt::Write;

fn at(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

fn ago(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    let Some(t) = t else {
        return "never".to_owned();
    };
    let secs = (now - t).num_seconds().max(0);
    let rough = match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    };
    format!("{} ({rough} ago)", at(Some(t)))
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}/s"))
}

fn reach(ok: bool, error: Option<&String>) -> String {
    if ok {
        "ok".to_owned()
    } else {
        format!(
            "UNREACHABLE ({})",
            error.map_or_else(String::new, |e| esc(e))
        )
    }
}

/// `worker status`.
pub fn status(s: &Status) -> String {
    let mut out = String::new();
    let now = s.checked_at;
    let _ = writeln!(out, "scim-provisioning status at {}", at(Some(now)));
    let _ = writeln!(
        out,
        "database: {}    broker: {}",
        reach(s.database.ok, s.database.error.as_ref()),
        reach(s.broker.ok, s.broker.error.as_ref())
    );
    let _ = writeln!(out, "\nqueues (rates: {})", esc(&s.rates));
    let _ = writeln!(
        out,
        "  {:<40} {:<12} {:>9} {:>9} {:>10} {:>10} {:>9}",
        "queue", "role", "ready", "unacked", "in", "acked", "consumers"
    );
    for q in &s.queues {
        let _ = writeln!(
            out,
            "  {:<40} {:<12} {:>9} {:>9} {:>10} {:>10} {:>9}",
            q.name,
            q.role,
            q.messages,
            q.unacked.map_or_else(|| "-".to_owned(), |u| u.to_string()),
            rate(q.publish_rate),
            rate(q.ack_rate),
            q.consumers
        );
    }
    if s.broker.ok && s.queues.is_empty() {
        let _ = writeln!(out, "  (none declared: run `worker migrate --topology`)");
    }
    let _ = writeln!(out, "\ndead-lettered and not applied since, by reason");
    if s.dead_letters.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for d in &s.dead_letters {
        let _ = writeln!(
            out,
            "  {:<24} {:>7} events, last {}",
            esc(&d.reason),
            d.events,
            ago(now, Some(d.last_at))
        );
    }
    if let Some(r) = &s.relay {
        let _ = writeln!(
            out,
            "\nchange relay: {}, {} unpublished, lag {:.1}s, last published {}",
            if r.leader { "leading" } else { "NO LEADER" },
            r.unpublished,
            r.lag_seconds,
            ago(now, r.last_published_at)
        );
    }
    let _ = writeln!(out, "\ndeprovisioning brake");
    if s.database.ok && s.brakes.is_empty() {
        let _ = writeln!(out, "  released everywhere");
    }
    for b in &s.brakes {
        let _ = writeln!(
            out,
            "  ENGAGED for {}: {} deactivations held since {} (worker brake show --org {})",
            esc(&b.organization_id),
            b.held,
            ago(now, b.engaged_at),
            esc(&b.organization_id)
        );
    }
    let _ = writeln!(out, "\ndirectories, last sync");
    if s.database.ok && s.syncs.is_empty() {
        let _ = writeln!(out, "  none known yet");
    }
    for d in &s.syncs {
        let outcome = match d.outcome.as_deref() {
            None => "never synced".to_owned(),
            Some("ok") => format!(
                "ok: {} users listed, {} changed",
                d.users_listed.unwrap_or(0),
                d.users_changed.unwrap_or(0)
            ),
            Some(other) => format!(
                "{}: {}",
                esc(other),
                d.detail.as_deref().map_or_else(String::new, esc)
            ),
        };
        let _ = writeln!(
            out,
            "  {}/{}{}: {} — {}",
            esc(&d.organization_id),
            esc(&d.directory_id),
            if d.enabled == Some(false) {
                " (disabled)"
            } else {
                ""
            },
            ago(now, d.finished_at),
            outcome
        );
    }
    out
}

fn list(items: &[String]) -> String {
    items.iter().map(|i| esc(i)).collect::<Vec<_>>().join(", ")
}

fn active(a: Option<bool>) -> &'static str {
    match a {
        None => "none",
        Some(true) => "active",
        Some(false) => "inactive",
    }
}

fn effect_line(e: &Effect) -> String {
    let mut parts = vec![e.action.clone()];
    if let Some((was, is)) = e.active {
        parts.push(format!("{} → {}", active(was), active(Some(is))));
    }
    for (label, items) in [
        ("roles granted", &e.granted),
        ("roles revoked", &e.revoked),
        ("joined", &e.joined),
        ("left", &e.left),
        ("profile", &e.profile),
    ] {
        if !items.is_empty() {
            parts.push(format!("{label}: {}", list(items)));
        }
    }
    parts.join("; ")
}

fn outcome_line(org: &str, e: &Entry) -> String {
    match e.outcome.as_str() {
        "applied" if e.changes.is_empty() => "applied: changed nothing of this user".to_owned(),
        "applied" => "applied".to_owned(),
        "stale" => {
            "stale: a later event about this user was applied first; changed nothing".to_owned()
        }
        "held" => format!(
            "HELD by the deprovisioning brake (worker brake show --org {})",
            esc(org)
        ),
        "ignored" => "ignored: a type this build does not know".to_owned(),
        "dead_lettered" => format!(
            "DEAD-LETTERED: {} (worker dlq list)",
            e.reason.as_deref().map_or_else(String::new, esc)
        ),
        other => esc(other),
    }
}

/// `worker explain`.
pub fn explain(x: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "user {} in {}",
        esc(&x.directory_user_id),
        esc(&x.organization_id)
    );
    match &x.user {
        None => {
            let _ = writeln!(out, "  not stored (never provisioned here)");
        }
        Some(u) => {
            let state = if u.erased_at.is_some() {
                format!("erased at {}", at(u.erased_at))
            } else if u.active {
                format!("active since {}", at(u.provisioned_at))
            } else {
                format!("INACTIVE since {}", at(u.deactivated_at))
            };
            let _ = writeln!(
                out,
                "  {} <{}>: {}",
                u.display_name.as_deref().map_or_else(String::new, esc),
                u.email.as_deref().map_or_else(String::new, esc),
                state
            );
            let _ = writeln!(out, "  roles: {}", or_none(&list(&u.roles)));
            let _ = writeln!(out, "  groups: {}", or_none(&list(&u.groups)));
            let _ = writeln!(out, "  last changed {}", at(Some(u.updated_at)));
        }
    }
    let _ = writeln!(out, "\nhistory, oldest first (by when the event occurred)");
    if x.history.is_empty() {
        let _ = writeln!(out, "  no event about this user is on record");
    }
    for e in &x.history {
        let _ = writeln!(
            out,
            "  {}  {:<36} {}  via {}, handled {}",
            at(e.occurred_at),
            esc(&e.event_type),
            esc(&e.event_id),
            e.source.as_deref().map_or_else(|| "-".to_owned(), esc),
            at(Some(e.handled_at))
        );
        let _ = writeln!(out, "      → {}", outcome_line(&x.organization_id, e));
        for c in &e.changes {
            let _ = writeln!(out, "        {}", effect_line(c));
        }
        if e.duplicates > 0 {
            let _ = writeln!(
                out,
                "      delivered {} more time{}: duplicate{}, changed nothing",
                e.duplicates,
                if e.duplicates == 1 { "" } else { "s" },
                if e.duplicates == 1 { "" } else { "s" }
            );
        }
    }
    out
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "none" } else { s }
}

fn secs(s: Option<f64>) -> String {
    match s {
        None => "-".to_owned(),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) if s < 120.0 => format!("{s:.1} s"),
        Some(s) if s < 7200.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

/// `worker report slo`.
pub fn slo(rows: &[SloRow], since: DateTime<Utc>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "from occurred_at to committed / to published to the application, changes committed since {}",
        at(Some(since))
    );
    let _ = writeln!(
        out,
        "  {:<28} {:<15} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "organization",
        "class",
        "changes",
        "commit p50",
        "commit p99",
        "publish p50",
        "publish p99",
        "unpublished"
    );
    if rows.is_empty() {
        let _ = writeln!(out, "  no provisioning or deprovisioning in that window");
    }
    for r in rows {
        let _ = writeln!(
            out,
            "  {:<28} {:<15} {:>7} {:>11} {:>11} {:>11} {:>11} {:>11}",
            esc(&r.organization_id),
            r.class,
            r.changes,
            secs(r.committed_p50),
            secs(r.committed_p99),
            secs(r.published_p50),
            secs(r.published_p99),
            r.unpublished
        );
    }
    out
}
