//! `worker status`, `worker explain` and `worker report slo` on a terminal: read, then render
//! (text, or JSON with `--json`).

use super::{InspectError, explain, render, slo, status};
use crate::ops::args::values::parse_since;
use crate::ops::args::{ExplainArgs, ReportCommand, StatusArgs};
use crate::service::db;

#[derive(Debug, thiserror::Error)]
pub enum InspectCliError {
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error("the database or the broker did not answer (see above)")]
    Unhealthy,
    #[error("no user {0} and no event about it on record")]
    UnknownUser(String),
    #[error("--since: {0}")]
    Since(String),
    #[error("writing JSON")]
    Json(#[from] serde_json::Error),
}

/// `worker status`: fails (exit 1) when the database or the broker did not answer.
pub async fn status(args: &StatusArgs) -> Result<(), InspectCliError> {
    let status = status::collect(&status::Sources {
        amqp_url: args.broker.amqp_url(),
        management_url: args.management_url(),
        topology: &args.broker.topology(),
        database_url: args.database.database_url(),
        timeouts: &args.database.timeouts(),
    })
    .await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render::status(&status));
    }
    if status.healthy() {
        Ok(())
    } else {
        Err(InspectCliError::Unhealthy)
    }
}

/// `worker explain`: fails when neither the user nor any event about it is on record.
pub async fn explain(args: &ExplainArgs) -> Result<(), InspectCliError> {
    let mut conn = db::connect(args.database.database_url(), &args.database.timeouts())
        .await
        .map_err(InspectError::from)?;
    let x = explain::explain(&mut conn, &args.org, &args.user).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&x)?);
    } else {
        print!("{}", render::explain(&x));
    }
    if x.user.is_none() && x.history.is_empty() {
        return Err(InspectCliError::UnknownUser(
            shared::redact::escape_controls(&args.user),
        ));
    }
    Ok(())
}

/// `worker report slo`.
pub async fn report(command: &ReportCommand) -> Result<(), InspectCliError> {
    let ReportCommand::Slo {
        database,
        since,
        json,
    } = command;
    let since = parse_since(since, chrono::Utc::now()).map_err(InspectCliError::Since)?;
    let mut conn = db::connect(database.database_url(), &database.timeouts())
        .await
        .map_err(InspectError::from)?;
    let rows = slo::report(&mut conn, since).await?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", render::slo(&rows, since));
    }
    Ok(())
}
