//! `worker changes tail`: prints the feed from the stream, one JSON change a line, for operators.
//! Reading a stream takes nothing away from other readers.

use crate::ops::args::ChangesCommand;
use crate::ops::args::values::parse_since;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use shared::Topology;
use shared::changes::{Change, ChangeKind};
use std::io::Write;
use std::time::Duration;

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
    #[error("broker")]
    Broker(#[from] lapin::Error),
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
        &mut std::io::stdout().lock(),
    )
    .await?;
    Ok(())
}

fn offset_argument(from: &From) -> AMQPValue {
    match from {
        From::Next => AMQPValue::LongString(LongString::from(b"next".to_vec())),
        From::Seq(_) => AMQPValue::LongString(LongString::from(b"first".to_vec())),
        From::Since(t) => AMQPValue::Timestamp(u64::try_from(t.timestamp()).unwrap_or(0)),
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

/// Prints matching changes to `out`; returns how many were printed.
pub async fn tail(
    url: &str,
    topology: &Topology,
    opts: &TailOptions,
    out: &mut impl Write,
) -> Result<usize, TailError> {
    let connection =
        shared::amqp::connect(url, &shared::amqp::connection_name("changes-tail")).await?;
    let channel = connection.create_channel().await?;
    channel.basic_qos(500, BasicQosOptions::default()).await?;
    let mut args = FieldTable::default();
    args.insert("x-stream-offset".into(), offset_argument(&opts.from));
    let mut consumer = channel
        .basic_consume(
            topology.changes_stream().as_str().into(),
            "changes-tail".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await?;
    let mut printed = 0;
    loop {
        if opts.max.is_some_and(|m| printed >= m) {
            break;
        }
        let next = if opts.follow {
            consumer.next().await
        } else {
            match tokio::time::timeout(opts.idle, consumer.next()).await {
                Ok(next) => next,
                Err(_) => break,
            }
        };
        let Some(delivery) = next else { break };
        let delivery = delivery?;
        match serde_json::from_slice::<Change>(&delivery.data) {
            Ok(change) if wanted(&change, opts) => {
                out.write_all(&delivery.data)?;
                out.write_all(b"\n")?;
                printed += 1;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %shared::Chain(&e), "not a change: skipped"),
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
    }
    out.flush()?;
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(printed)
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
        assert_eq!(
            offset_argument(&From::Seq(3)),
            AMQPValue::LongString(LongString::from(b"first".to_vec()))
        );
    }
}
