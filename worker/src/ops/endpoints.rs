//! `worker endpoints …`: push delivery's endpoints as an operator sees and steers them. What it
//! reads and writes is the service's (`crate::service::changes::push::store`); the service never
//! imports this.

use crate::ops::args::EndpointsCommand;
use crate::service::changes::push::store::{self, Replay, Status};
use std::io::Write;

#[derive(Debug, thiserror::Error)]
pub enum EndpointsCliError {
    #[error("database")]
    Database(#[from] diesel::result::Error),
    #[error("database connection")]
    Connect(#[from] diesel::ConnectionError),
    #[error("no endpoint named {0:?} (see `worker endpoints list`)")]
    Unknown(String),
    #[error(
        "changes before seq {oldest} were pruned (CHANGES_RETENTION): replay from {oldest} or later"
    )]
    Pruned { oldest: i64 },
    #[error("--from-seq must be at least 1")]
    FromSeq,
    #[error("writing the output")]
    Output(#[from] std::io::Error),
    #[error("writing JSON")]
    Json(#[from] serde_json::Error),
}

pub async fn run(command: &EndpointsCommand) -> Result<(), EndpointsCliError> {
    let mut out = std::io::stdout().lock();
    match command {
        EndpointsCommand::List { database, json } => {
            let mut conn =
                crate::service::db::connect(database.database_url(), &database.timeouts()).await?;
            let all = store::statuses(&mut conn).await?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
            } else {
                write!(out, "{}", render(&all))?;
            }
        }
        EndpointsCommand::Pause { name, database } => {
            let mut conn =
                crate::service::db::connect(database.database_url(), &database.timeouts()).await?;
            if !store::pause(&mut conn, name, "paused by an operator").await? {
                return Err(EndpointsCliError::Unknown(name.escape_debug().to_string()));
            }
            writeln!(out, "paused {}", name.escape_debug())?;
        }
        EndpointsCommand::Resume { name, database } => {
            let mut conn =
                crate::service::db::connect(database.database_url(), &database.timeouts()).await?;
            if !store::resume(&mut conn, name).await? {
                return Err(EndpointsCliError::Unknown(name.escape_debug().to_string()));
            }
            writeln!(out, "resumed {}", name.escape_debug())?;
        }
        EndpointsCommand::Replay {
            name,
            from_seq,
            database,
        } => {
            if *from_seq < 1 {
                return Err(EndpointsCliError::FromSeq);
            }
            let mut conn =
                crate::service::db::connect(database.database_url(), &database.timeouts()).await?;
            match store::replay(&mut conn, name, *from_seq).await? {
                Replay::Started => writeln!(
                    out,
                    "{} delivers again from seq {from_seq} (every organization)",
                    name.escape_debug()
                )?,
                Replay::NoSuchEndpoint => {
                    return Err(EndpointsCliError::Unknown(name.escape_debug().to_string()));
                }
                Replay::Pruned { oldest } => return Err(EndpointsCliError::Pruned { oldest }),
            }
        }
    }
    Ok(())
}

/// The table `worker endpoints list` prints.
pub fn render(all: &[Status]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if all.is_empty() {
        out.push_str(
            "no change endpoint is configured (CHANGES_WEBHOOK_URL, CHANGES_WEBHOOKS_FILE)\n",
        );
        return out;
    }
    let _ = writeln!(
        out,
        "NAME\tLAST SEQ\tLAG\tLAG SECONDS\tFAILING SINCE\tLAST STATUS\tPAUSED\tURL"
    );
    let time =
        |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or("-".to_owned(), |t| t.to_rfc3339());
    for s in all {
        let paused = match (&s.paused_at, &s.paused_reason) {
            (Some(at), Some(why)) => format!("since {} ({})", at.to_rfc3339(), why.escape_debug()),
            (Some(at), None) => format!("since {}", at.to_rfc3339()),
            _ if s.retired_at.is_some() => "retired (not configured)".to_owned(),
            _ => "no".to_owned(),
        };
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{:.1}\t{}\t{}\t{}\t{}",
            s.name.escape_debug(),
            s.last_delivered_seq,
            s.lag_changes,
            s.lag_seconds,
            time(s.failing_since),
            s.last_status.as_deref().unwrap_or("-").escape_debug(),
            paused,
            s.url.escape_debug(),
        );
    }
    out
}
