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
            cut(&safe(&m.event_id), 28),
            cut(&safe(&m.event_type), 38),
            cut(&safe(m.organization_id.as_deref().unwrap_or("-")), 24),
            cut(&safe(&m.reason), 18),
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

/// What a dead letter carries comes from outside (a signed but hostile body, its headers): every
/// value is printed with control characters escaped, so none can move the terminal's cursor,
/// clear it or ring its bell.
fn safe(value: &str) -> String {
    shared::redact::escape_controls(value)
}

/// Everything about one message: headers, reason, error, body pretty-printed.
pub fn show(m: &DeadMessage, headers: &[(String, String)], body: &[u8]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "event id:        {}", safe(&m.event_id));
    let _ = writeln!(out, "type:            {}", safe(&m.event_type));
    let _ = writeln!(
        out,
        "organization:    {}",
        safe(m.organization_id.as_deref().unwrap_or("-"))
    );
    let _ = writeln!(out, "reason:          {}", safe(&m.reason));
    let _ = writeln!(
        out,
        "error:           {}",
        safe(m.error.as_deref().unwrap_or("-"))
    );
    let _ = writeln!(out, "retries/replays: {}/{}", m.retry_count, m.replay_count);
    let _ = writeln!(
        out,
        "first dead:      {}",
        m.first_dead_at.map_or("-".to_owned(), |t| t.to_rfc3339())
    );
    let _ = writeln!(out, "routing key:     {}", safe(&m.routing_key));
    let _ = writeln!(out, "headers:");
    for (k, v) in headers {
        let _ = writeln!(out, "  {}: {}", safe(k), safe(v));
    }
    let _ = writeln!(out, "body:");
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    // Line by line: the layout's own line breaks stay, any other control character is escaped.
    for line in text.lines() {
        let _ = writeln!(out, "{}", safe(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_escapes_what_could_drive_a_terminal() {
        let m = DeadMessage {
            event_id: "evt_\u{1b}[2J".to_owned(),
            ..DeadMessage::default()
        };
        let headers = [("x-dead-error".to_owned(), "boom\u{7}\r".to_owned())];
        let body = b"not json \x1b]0;pwned\x07 \xe2\x80\xae";
        let out = show(&m, &headers, body);
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(!out.contains('\u{202e}'), "{out:?}");
        assert!(out.contains("evt_\\u{1b}[2J"), "{out}");
        let json = show(&m, &[], br#"{"a": "\u001b[31m red"}"#);
        assert!(!json.contains('\u{1b}'), "{json:?}");
    }

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
