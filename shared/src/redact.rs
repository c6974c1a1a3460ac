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

/// The URLs of a comma-separated list (`AMQP_URL` may name every node of a cluster). A comma
/// separates two URLs only where a URL scheme (`amqps://`, `postgres://`…) or nothing follows it, so a
/// comma inside a password, or a PostgreSQL host list (`postgres://u@h1,h2/db`), stays in its
/// URL. Pieces are trimmed; empty ones are dropped.
pub fn split_url_list(list: &str) -> Vec<&str> {
    let mut urls = Vec::new();
    let mut start = 0;
    for (i, _) in list.match_indices(',') {
        let next = list[i + 1..].trim_start();
        if next.is_empty() || starts_with_scheme(next) {
            urls.push(list[start..i].trim());
            start = i + 1;
        }
    }
    urls.push(list[start..].trim());
    urls.retain(|u| !u.is_empty());
    urls
}

/// `scheme://` at the start: a letter, then letters, digits, `+`, `-` or `.`.
fn starts_with_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// A URL, or a comma-separated list of them ([`split_url_list`]), for logs:
/// `postgres://u:pw@h/db?sslpassword=x` → `postgres://u:***@h/db?sslpassword=***`.
///
/// Every byte of a password goes, whatever it holds: the user information ends at the last
/// `@` of the URL (a raw `/`, `?`, `#` or `@` in the password cannot end it early), and a query
/// parameter whose name mentions a password loses its value up to the next `&`. Where the
/// `@` may belong to the path or the query instead, the whole user information is hidden:
/// too much is hidden rather than too little. A piece without `://` is not echoed at all (it
/// may be a secret pasted into the wrong variable).
pub fn redact_url(url: &str) -> String {
    let pieces = split_url_list(url);
    if pieces.is_empty() {
        return "<empty url>".to_owned();
    }
    pieces
        .into_iter()
        .map(redact_one)
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one(url: &str) -> String {
    if !starts_with_scheme(url) {
        return "<unparseable url>".to_owned();
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparseable url>".to_owned();
    };
    let (userinfo, host_and_tail) = match rest.rsplit_once('@') {
        Some((userinfo, after)) => (Some(userinfo), after),
        None => (None, rest),
    };
    let userinfo = match userinfo {
        None => String::new(),
        Some(info) if info.contains(['/', '?', '#']) => match info.split_once(':') {
            // `user:pass/word@host`: the first `:` comes before any `/`, `?` or `#`.
            Some((user, _)) if !user.contains(['/', '?', '#']) => format!("{user}:***@"),
            _ => "***@".to_owned(),
        },
        Some(info) => match info.split_once(':') {
            Some((user, _)) => format!("{user}:***@"),
            None => format!("{info}@"),
        },
    };
    let tail = match host_and_tail.split_once('?') {
        Some((before, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.to_ascii_lowercase().contains("password") => {
                        format!("{k}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{before}?{}", query.join("&"))
        }
        None => host_and_tail.to_owned(),
    };
    format!("{scheme}://{userinfo}{tail}")
}

#[cfg(test)]
mod tests {
    use super::{escape_controls, for_log, redact_url, split_url_list};
    use proptest::prelude::*;

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
            "postgres://u:***@h/db?sslpassword=***"
        );
        assert_eq!(redact_url("whsec_abc"), "<unparseable url>");
        assert_eq!(redact_url(" , "), "<empty url>");
    }

    #[test]
    fn every_url_of_a_list_is_redacted() {
        // The review's finding: only the first node's password was hidden.
        assert_eq!(
            redact_url("amqp://u:FIRSTPW@127.0.0.1:1/%2f,amqp://u:SECONDPW@127.0.0.1:2/%2f"),
            "amqp://u:***@127.0.0.1:1/%2f,amqp://u:***@127.0.0.1:2/%2f"
        );
        assert_eq!(
            redact_url("amqps://a:x@h1/v, amqps://b:y@h2/v ,amqps://c:z@h3/v"),
            "amqps://a:***@h1/v,amqps://b:***@h2/v,amqps://c:***@h3/v"
        );
        // A PostgreSQL host list is one URL.
        assert_eq!(
            redact_url("postgres://u:pw@h1:5432,h2:5432/db?target_session_attrs=read-write"),
            "postgres://u:***@h1:5432,h2:5432/db?target_session_attrs=read-write"
        );
    }

    #[test]
    fn raw_separators_in_a_password_do_not_end_it() {
        for (url, shown) in [
            ("amqp://u:pa/ss@h:5672/v", "amqp://u:***@h:5672/v"),
            ("amqp://u:pa?ss@h:5672/v", "amqp://u:***@h:5672/v"),
            ("amqp://u:pa#ss@h:5672/v", "amqp://u:***@h:5672/v"),
            ("amqp://u:p/?#@:,s@h/v", "amqp://u:***@h/v"),
            // An `@` that may be the path's: everything before it is hidden.
            ("postgres://h/db?password=a@b", "postgres://***@b"),
            (
                "postgres://h/db?password=p#w/x&sslmode=require",
                "postgres://h/db?password=***&sslmode=require",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn a_list_splits_only_before_a_scheme() {
        assert_eq!(
            split_url_list("amqp://u:a,b@h1/v,amqps://u:c@h2/v,"),
            ["amqp://u:a,b@h1/v", "amqps://u:c@h2/v"]
        );
        assert_eq!(
            split_url_list("postgres://h1,h2/db"),
            ["postgres://h1,h2/db"]
        );
    }

    /// A password of any printable ASCII (raw or percent-encoded) in any node of a list.
    fn password() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::string::string_regex("[ -~]{1,24}").unwrap(),
            proptest::string::string_regex("(%[0-9A-F]{2}|[A-Za-z0-9]){1,16}").unwrap(),
        ]
        // A comma followed by a URL scheme is the list's separator, so no password can hold it.
        .prop_filter("holds a list separator", |p| {
            !p.match_indices(',')
                .any(|(i, _)| super::starts_with_scheme(&p[i + 1..]))
        })
    }

    proptest! {
        #[test]
        fn no_password_byte_survives(
            nodes in proptest::collection::vec(
                (
                    prop_oneof![Just("amqp"), Just("amqps"), Just("postgres")],
                    "[a-z][a-z0-9_]{0,7}",
                    password(),
                    "[a-z0-9.-]{1,12}(:[0-9]{1,5})?",
                    prop_oneof![Just(""), Just("/"), Just("/%2f"), Just("/db?sslmode=require")],
                ),
                1..4,
            )
        ) {
            let url: Vec<String> = nodes
                .iter()
                .map(|(scheme, user, pw, host, path)| format!("{scheme}://{user}:{pw}@{host}{path}"))
                .collect();
            let expected: Vec<String> = nodes
                .iter()
                .map(|(scheme, user, _, host, path)| format!("{scheme}://{user}:***@{host}{path}"))
                .collect();
            prop_assert_eq!(redact_url(&url.join(",")), expected.join(","));
        }
    }
}
