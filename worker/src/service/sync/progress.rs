//! Sync progress: a live line on a terminal, log lines otherwise; and the summary of a run.

use std::io::{IsTerminal, Write};
use std::time::Duration;

/// What a sync saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub directories: usize,
    pub pages: usize,
    pub groups: usize,
    pub seen: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub deactivated: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "directories {}, pages {}, groups {}, users seen {}: created {}, updated {}, unchanged {}, deactivated {}",
            self.directories,
            self.pages,
            self.groups,
            self.seen,
            self.created,
            self.updated,
            self.unchanged,
            self.deactivated
        )
    }
}

pub struct Progress {
    terminal: bool,
    quiet: bool,
}

impl Progress {
    /// Live progress when stderr is a terminal.
    pub fn for_terminal() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            quiet: false,
        }
    }

    /// No output (the scheduler logs summaries instead).
    pub fn quiet() -> Self {
        Self {
            terminal: false,
            quiet: true,
        }
    }

    pub fn page(&mut self, pages: usize, users: usize, elapsed: Duration) {
        if self.quiet {
            return;
        }
        let rate = users as f64 / elapsed.as_secs_f64().max(0.001);
        if self.terminal {
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\r  pages {pages:>6}  users {users:>8}  {rate:>8.0} users/s"
            );
            let _ = err.flush();
        } else if pages.is_multiple_of(50) {
            tracing::info!(
                pages,
                users,
                users_per_second = rate as u64,
                "sync progress"
            );
        }
    }

    pub fn done(&mut self, summary: &Summary, elapsed: Duration) {
        if self.terminal && !self.quiet {
            eprintln!();
        }
        let rate = summary.seen as f64 / elapsed.as_secs_f64().max(0.001);
        tracing::info!(%summary, elapsed_ms = elapsed.as_millis() as u64, users_per_second = rate as u64, "directory synced");
    }
}
