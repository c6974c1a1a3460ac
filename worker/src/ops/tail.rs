//! `worker changes tail`: prints the feed, one JSON change a line, for operators. It reads the
//! stream with the `change-feed` crate's reader (the one every Rust application uses: silence
//! check, reconnects, re-published changes skipped by `seq`), so what an operator sees is what
//! an application gets. Reading a stream takes nothing away from other readers.

use crate::ops::args::ChangesCommand;
use crate::ops::args::values::parse_since;
use change_feed::{Application, FeedConfig, FeedError, Position, Start};
use shared::Topology;
use shared::changes::{Change, ChangeKind};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Where to start reading.
#[derive(Debug, Clone, PartialEq)]
pub enum From {
    /// Only changes published from now on.
    Next,
    /// The whole retained feed, printing changes with `seq` ≥ this.
    Seq(i64),
    /// Changes published since this time.
    Since(chrono::DateTime<chrono::Utc>),
}

#[derive(Debug, Clone)]
pub struct TailOptions {
    pub from: From,
    /// Only these kinds (all when empty).
    pub kinds: Vec<ChangeKind>,
    /// Keep following after catching up; otherwise stop once nothing arrived for `idle`.
    pub follow: bool,
    pub idle: Duration,
    /// Stop after printing this many.
    pub max: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("reading the feed")]
    Feed(#[from] FeedError<std::io::Error>),
    #[error("writing")]
    Io(#[from] std::io::Error),
    #[error("--since: {0}")]
    Since(String),
}

/// `worker changes tail`: its options into [`TailOptions`], then [`tail`] to stdout.
pub async fn run(command: &ChangesCommand) -> Result<(), TailError> {
    let ChangesCommand::Tail {
        broker,
        from_seq,
        since,
        kinds,
        follow,
        max,
        idle,
    } = command;
    let from = match (from_seq, since) {
        (Some(seq), _) => From::Seq(*seq),
        (None, Some(since)) => {
            From::Since(parse_since(since, chrono::Utc::now()).map_err(TailError::Since)?)
        }
        (None, None) => From::Next,
    };
    let opts = TailOptions {
        // Without a starting point there is nothing to catch up on: follow.
        follow: *follow || from == From::Next,
        from,
        kinds: kinds.clone(),
        idle: *idle,
        max: *max,
    };
    tail(
        broker.amqp_url(),
        &broker.topology(),
        &opts,
        &mut std::io::stdout(),
    )
    .await?;
    Ok(())
}

/// Where the reader begins: the whole retained feed for `--from-seq` (filtered by `seq`).
fn start(from: &From) -> Start {
    match from {
        From::Next => Start::Next,
        From::Seq(_) => Start::First,
        From::Since(t) => Start::Since(*t),
    }
}

/// Whether a change passes the options' filters.
pub fn wanted(change: &Change, opts: &TailOptions) -> bool {
    let from_seq = match opts.from {
        From::Seq(n) => change.seq >= n,
        _ => true,
    };
    from_seq && (opts.kinds.is_empty() || opts.kinds.contains(&change.kind))
}

/// The operator's "application": prints what passes the filters and ends the reading at
/// `max`. Its position lives only as long as the tail (each tail starts where its options
/// say); it lets a reconnect resume after the last change read, not print it again.
struct Printer<'a, W> {
    out: &'a mut W,
    opts: &'a TailOptions,
    printed: usize,
    read: Option<Position>,
    /// Milliseconds since `started` at the last change read (the idle bound's clock).
    last_read: Arc<AtomicU64>,
    started: Instant,
    stop: CancellationToken,
}

impl<W: Write + Send> Application for Printer<'_, W> {
    type Error = std::io::Error;

    async fn position(&mut self) -> Result<Option<Position>, std::io::Error> {
        Ok(self.read)
    }

    async fn apply(&mut self, change: &Change, at: Position) -> Result<(), std::io::Error> {
        self.read = Some(at);
        self.last_read
            .store(millis(self.started), Ordering::Relaxed);
        if self.opts.max.is_some_and(|m| self.printed >= m) || !wanted(change, self.opts) {
            return Ok(());
        }
        serde_json::to_writer(&mut *self.out, change)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        self.printed += 1;
        if self.opts.max.is_some_and(|m| self.printed >= m) {
            self.stop.cancel();
        }
        Ok(())
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Prints matching changes to `out`; returns how many were printed.
pub async fn tail(
    url: &str,
    topology: &Topology,
    opts: &TailOptions,
    out: &mut (impl Write + Send),
) -> Result<usize, TailError> {
    if opts.max == Some(0) {
        return Ok(0);
    }
    let mut config = FeedConfig::new(url, topology.prefix(), "changes-tail");
    config.stream = topology.changes_stream();
    config.start = start(&opts.from);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let last_read = Arc::new(AtomicU64::new(0));
    let mut printer = Printer {
        out,
        opts,
        printed: 0,
        read: None,
        last_read: Arc::clone(&last_read),
        started,
        stop: stop.clone(),
    };
    // Without `--follow`, the reading ends once nothing arrived for `idle`.
    let idle = async {
        if opts.follow {
            return;
        }
        let idle_ms = u64::try_from(opts.idle.as_millis()).unwrap_or(u64::MAX);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if config.stats.subscriptions() == 0 {
                // Not reading yet (connecting): the idle clock starts with the subscription.
                last_read.store(millis(started), Ordering::Relaxed);
                continue;
            }
            if millis(started).saturating_sub(last_read.load(Ordering::Relaxed)) >= idle_ms {
                stop.cancel();
                return;
            }
        }
    };
    let (read, ()) = tokio::join!(change_feed::run(&config, &mut printer, &stop), idle);
    read?;
    Ok(printer.printed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::changes::ChangePayload;

    fn change(seq: i64, kind: ChangeKind) -> Change {
        Change {
            id: format!("chg_{seq}"),
            seq,
            kind,
            organization_id: "org_1".into(),
            cause_event_id: "evt_1".into(),
            occurred_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            committed_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            payload: ChangePayload::default(),
        }
    }

    #[test]
    fn filters_by_seq_and_kind() {
        let opts = TailOptions {
            from: From::Seq(5),
            kinds: vec![ChangeKind::UserDeprovisioned],
            follow: false,
            idle: Duration::from_secs(1),
            max: None,
        };
        assert!(!wanted(&change(4, ChangeKind::UserDeprovisioned), &opts));
        assert!(wanted(&change(5, ChangeKind::UserDeprovisioned), &opts));
        assert!(!wanted(&change(6, ChangeKind::UserProvisioned), &opts));
        let all = TailOptions {
            from: From::Next,
            kinds: vec![],
            ..opts
        };
        assert!(wanted(&change(1, ChangeKind::GroupCreated), &all));
        assert_eq!(start(&From::Seq(3)), Start::First);
        assert_eq!(start(&From::Next), Start::Next);
    }
}
