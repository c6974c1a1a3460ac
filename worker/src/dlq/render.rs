//! Output of `dlq list` / `dlq show`: a readable table with a summary, or JSON.

use super::message::DeadMessage;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fmt::Write;

fn age(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(at) = at else { return "-".to_owned() };
    let secs = (now - at).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// Counts by reason and by type.
pub fn summary(messages: &[DeadMessage]) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut by_reason = BTreeMap::new();
    let mut by_type = BTreeMap::new();
    for m in messages {
        *by_reason.entry(m.reason.clone()).or_insert(0) += 1;
        *by_type.entry(m.event_type.clone()).or_insert(0) += 1;
    }
    (by_reason, by_type)
}

pub fn table(messages: &[DeadMessage], total_in_queue: u32, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:<38} {:<24} {:<18} {:>5} {:>6} {:<20} {:>5}",
        "EVENT ID",
        "TYPE",
        "ORGANIZATION",
        "REASON",
        "RETRY",
        "REPLAY",
        "FIRST DEAD-LETTERED",
        "AGE"
    );
    for m in messages {
        let _ = writeln!(
            out,
            "{:<28} {:<38} {:<24} {:<18} {:>5} {:>6} {:<20} {:>5}",
            cut(&m.event_id, 28),
            cut(&m.event_type, 38),
            cut(m.organization_id.as_deref().unwrap_or("-"), 24),
            cut(&m.reason, 18),
            m.retry_count,
            m.replay_count,
            m.first_dead_at.map_or("-".to_owned(), |t| t
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()),
            age(m.first_dead_at, now),
        );
    }
    let (by_reason, by_type) = summary(messages);
    let _ = writeln!(
        out,
        "\n{} matching of {} in the dead-letter queue",
        messages.len(),
        total_in_queue
    );
    let _ = writeln!(
        out,
        "by reason: {}",
        by_reason
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "by type:   {}",
        by_type
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}

pub fn json(messages: &[DeadMessage], total_in_queue: u32) -> String {
    let (by_reason, by_type) = summary(messages);
    serde_json::to_string_pretty(&serde_json::json!({
        "total_in_queue": total_in_queue,
        "matching": messages.len(),
        "by_reason": by_reason,
        "by_type": by_type,
        "messages": messages,
    }))
    .unwrap_or_default()
}

/// Everything about one message: headers, reason, error, body pretty-printed.
pub fn show(m: &DeadMessage, headers: &[(String, String)], body: &[u8]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "event id:        {}", m.event_id);
    let _ = writeln!(out, "type:            {}", m.event_type);
    let _ = writeln!(
        out,
        "organization:    {}",
        m.organization_id.as_deref().unwrap_or("-")
    );
    let _ = writeln!(out, "reason:          {}", m.reason);
    let _ = writeln!(
        out,
        "error:           {}",
        m.error.as_deref().unwrap_or("-")
    );
    let _ = writeln!(out, "retries/replays: {}/{}", m.retry_count, m.replay_count);
    let _ = writeln!(
        out,
        "first dead:      {}",
        m.first_dead_at.map_or("-".to_owned(), |t| t.to_rfc3339())
    );
    let _ = writeln!(out, "routing key:     {}", m.routing_key);
    let _ = writeln!(out, "headers:");
    for (k, v) in headers {
        let _ = writeln!(out, "  {k}: {v}");
    }
    let _ = writeln!(out, "body:");
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            );
        }
        Err(_) => {
            let _ = writeln!(out, "{}", String::from_utf8_lossy(body));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_cuts() {
        let now = Utc::now();
        assert_eq!(age(Some(now - chrono::Duration::seconds(30)), now), "30s");
        assert_eq!(age(Some(now - chrono::Duration::hours(3)), now), "3h");
        assert_eq!(age(Some(now - chrono::Duration::days(4)), now), "4d");
        assert_eq!(age(None, now), "-");
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}
