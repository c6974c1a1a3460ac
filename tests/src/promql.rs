//! Splitting an alert's PromQL into what must return data on a healthy run. An alert's
//! expression is empty while it does not fire (`x > 60`), so the live check evaluates its
//! operands instead: the sides of its top-level `or` / `and` / `unless` and comparisons, with
//! number literals dropped and `absent(x)` read as `x` (absent is empty exactly when `x` has
//! data).

/// The top-level operands of `expr` that should each return data.
pub fn operands(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    collect(expr.trim(), &mut out);
    out
}

fn collect(expr: &str, out: &mut Vec<String>) {
    let expr = strip_parens(expr.trim());
    let parts = split_top(expr);
    if parts.len() > 1 {
        for p in parts {
            collect(&p, out);
        }
        return;
    }
    if expr.parse::<f64>().is_ok() || expr.is_empty() {
        return;
    }
    if let Some(inner) = expr
        .strip_prefix("absent(")
        .and_then(|r| r.strip_suffix(')'))
        .filter(|i| balanced(i))
    {
        collect(inner, out);
        return;
    }
    out.push(expr.to_owned());
}

fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' | '[' | '{' if !quoted => depth += 1,
            ')' | ']' | '}' if !quoted => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// `( x )` → `x`, while the parentheses enclose the whole expression.
fn strip_parens(mut s: &str) -> &str {
    while let Some(inner) = s.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        if !balanced(inner) {
            break;
        }
        s = inner.trim();
    }
    s
}

/// Splits at binary set and comparison operators outside brackets and strings.
fn split_top(s: &str) -> Vec<String> {
    let bytes = s.as_bytes();
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start, mut i) = (0i32, false, 0usize, 0usize);
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' {
            quoted = !quoted;
        } else if !quoted {
            match c {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                _ if depth == 0 => {
                    let rest = &s[i..];
                    let word = ["or", "and", "unless"].into_iter().find(|w| {
                        rest.starts_with(w)
                            && i > 0
                            && bytes[i - 1].is_ascii_whitespace()
                            && rest[w.len()..].starts_with(char::is_whitespace)
                    });
                    let op = ["==", "!=", ">=", "<=", ">", "<"]
                        .into_iter()
                        .find(|o| rest.starts_with(o));
                    if let Some(len) = word.or(op).map(str::len) {
                        parts.push(s[start..i].trim().to_owned());
                        i += len;
                        start = i;
                        continue;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    parts.push(s[start..].trim().to_owned());
    parts
}

#[cfg(test)]
mod tests {
    use super::operands;

    #[test]
    fn thresholds_and_set_operators_leave_their_operands() {
        assert_eq!(
            operands("max(scim_worker_dlq_depth) > 0"),
            ["max(scim_worker_dlq_depth)"]
        );
        assert_eq!(
            operands(
                r#"sum(rabbitmq_detailed_queue_consumers{queue=~".*events.apply"}) == 0 or absent(scim_worker_ready)"#
            ),
            [
                r#"sum(rabbitmq_detailed_queue_consumers{queue=~".*events.apply"})"#,
                "scim_worker_ready"
            ]
        );
        assert_eq!(
            operands(
                "max(scim_changes_relay_lag_seconds) > 60 or (sum(scim_worker_ready) > 0 and sum(scim_changes_relay_leader) == 0)"
            ),
            [
                "max(scim_changes_relay_lag_seconds)",
                "sum(scim_worker_ready)",
                "sum(scim_changes_relay_leader)"
            ]
        );
    }

    #[test]
    fn operators_inside_calls_matchers_and_strings_stay() {
        let ratio = r#"sum(rate(x{outcome="broker_unavailable"}[5m]))
            / clamp_min(sum(rate(x[5m])), 1e-9) > 0.05"#;
        assert_eq!(operands(ratio).len(), 1);
        assert!(operands(ratio)[0].ends_with("1e-9)"));
        assert_eq!(
            operands(r#"sum(x{a!="b>c or d"}) >= 1"#),
            [r#"sum(x{a!="b>c or d"})"#]
        );
        assert_eq!(
            operands("histogram_quantile(0.99, sum by (le) (rate(b[10m]))) > 300"),
            ["histogram_quantile(0.99, sum by (le) (rate(b[10m])))"]
        );
        assert_eq!(
            operands("order_total > 0"),
            ["order_total"],
            "no split inside a name"
        );
    }
}
