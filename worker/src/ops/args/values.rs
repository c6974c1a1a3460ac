//! Parsers of operator command values: `--since` (a duration back from now or an instant) and
//! `--rate` (`N/s`).

use chrono::{DateTime, Utc};

/// `--since`: a duration back from now (`2h`, `30m`) or an RFC 3339 instant.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is neither a duration nor RFC 3339: {e}"))?;
    let d = chrono::Duration::from_std(d).map_err(|e| e.to_string())?;
    Ok(now - d)
}

/// `--rate`: `N/s` or `N` (messages per second).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let n = text.trim().strip_suffix("/s").unwrap_or(text.trim());
    let r: f64 = n
        .parse()
        .map_err(|_| format!("`{text}` is not a rate like `50/s`"))?;
    if r.is_finite() && r > 0.0 {
        Ok(r)
    } else {
        Err(format!("`{text}`: the rate must be positive"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_rate_parsing() {
        let now = Utc::now();
        assert_eq!(
            parse_since("2h", now).unwrap(),
            now - chrono::Duration::hours(2)
        );
        assert_eq!(
            parse_since("2025-01-06T18:44:10Z", now)
                .unwrap()
                .to_rfc3339(),
            "2025-01-06T18:44:10+00:00"
        );
        assert!(parse_since("yesterday", now).is_err());
        assert_eq!(parse_rate("50/s").unwrap(), 50.0);
        assert_eq!(parse_rate("2.5").unwrap(), 2.5);
        assert!(parse_rate("0/s").is_err() && parse_rate("fast").is_err());
    }
}
