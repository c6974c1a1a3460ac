//! How an error is printed, one way: the error's own message, then each cause in turn (its
//! `source()`), on one line, a cause left out when the text before it already says it.
//!
//! The policy for every error type of the project: a variant's message says what was being
//! done (`"migrating"`, `"database"`), and the underlying error is its `#[source]` /
//! `#[from]`, never repeated in the message (no `": {0}"`). Whatever prints or logs an error
//! prints its chain through [`Chain`] (`tracing::warn!(error = %Chain(&e), …)`,
//! `Chain(&e).to_string()`), so each cause appears exactly once.

use std::fmt;

/// Displays an error and its causes on one line: `what: cause: deeper cause`. Line breaks
/// inside a message become spaces, so a log line stays one line.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            source = cause.source();
        }
        f.write_str(&line.replace(['\n', '\r'], " "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("connection refused\nby peer")]
        Refused,
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("database")]
        Database(#[from] Inner),
        #[error("old style: {0}")]
        OldStyle(#[source] Inner),
    }

    #[test]
    fn each_cause_once_on_one_line() {
        assert_eq!(
            Chain(&Outer::Database(Inner::Refused)).to_string(),
            "database: connection refused by peer"
        );
        // A message that already carries its cause does not get it twice.
        assert_eq!(
            Chain(&Outer::OldStyle(Inner::Refused)).to_string(),
            "old style: connection refused by peer"
        );
    }
}
