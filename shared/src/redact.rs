//! URLs for logs: the password of a `scheme://user:password@host/…` URL, and any query
//! parameter whose name mentions a password (PostgreSQL's `?password=`), become `***`.

/// Characters of an unverified value (a header, a field of a body) that logs may show.
pub const LOG_PREFIX_CHARS: usize = 64;

/// An unverified value for a log line or a terminal: its first [`LOG_PREFIX_CHARS`] characters,
/// control and other non-printing characters escaped (`\n`, `\u{1b}`), `…` when cut.
pub fn for_log(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(LOG_PREFIX_CHARS + 8));
    for (i, c) in value.chars().enumerate() {
        if i == LOG_PREFIX_CHARS {
            out.push('…');
            break;
        }
        out.extend(escape(c));
    }
    out
}

/// Control characters escaped, everything else as it is (`worker dlq show` prints whole values
/// so: nothing cut, nothing that moves a terminal's cursor or rings its bell).
pub fn escape_controls(value: &str) -> String {
    value.chars().flat_map(escape).collect()
}

fn escape(c: char) -> impl Iterator<Item = char> {
    let plain = !c.is_control()
        && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let (one, many) = if plain {
        (Some(c), None)
    } else {
        (None, Some(c.escape_default()))
    };
    one.into_iter().chain(many.into_iter().flatten())
}

/// `postgres://u:pw@h/db?sslpassword=x` → `postgres://u:***@h/db?sslpassword=***`. A URL
/// without `://` is not echoed at all (it may be a secret pasted into the wrong variable).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparseable url>".to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}:***@{host}")
        }
        _ => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.to_ascii_lowercase().contains("password") => {
                        format!("{k}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            let mut out = format!("{path}?{}", query.join("&"));
            if let Some(f) = fragment {
                out.push('#');
                out.push_str(f);
            }
            out
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::{escape_controls, for_log, redact_url};

    #[test]
    fn unverified_values_are_cut_and_escaped_for_logs() {
        assert_eq!(for_log("msg_1"), "msg_1");
        assert_eq!(for_log("a\nb\x1b[2Jc"), "a\\nb\\u{1b}[2Jc");
        let long = "x".repeat(300);
        let shown = for_log(&long);
        assert_eq!(shown.chars().count(), super::LOG_PREFIX_CHARS + 1);
        assert!(shown.ends_with('…'));
        // Right-to-left overrides would reorder what an operator reads.
        assert_eq!(for_log("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape_controls("ok\tgo\u{7}"), "ok\\tgo\\u{7}");
        assert_eq!(escape_controls("naïve ✓"), "naïve ✓");
    }

    #[test]
    fn passwords_are_replaced_and_the_rest_kept() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        // An `@` inside the password does not leak its tail.
        assert_eq!(redact_url("amqp://u:p@ss@h:5672/"), "amqp://u:***@h:5672/");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=pw&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://u:x@h/db?sslpassword=k#f"),
            "postgres://u:***@h/db?sslpassword=***#f"
        );
        assert_eq!(redact_url("whsec_abc"), "<unparseable url>");
    }
}
