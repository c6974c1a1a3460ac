//! `worker dlq …`: argument handling and output for the operations in this module.

use super::message::Filter;
use super::{DlqError, ReplayOptions, list, purge, render, replay, show};
use crate::ops::args::values::parse_since;
use crate::ops::args::{DlqCommand, DlqFilterArgs};

#[derive(Debug, thiserror::Error)]
pub enum DlqCliError {
    #[error(transparent)]
    Dlq(#[from] DlqError),
    #[error("--since: {0}")]
    Since(String),
    #[error("refusing to purge without --yes ({0} message(s) would be deleted)")]
    NotConfirmed(usize),
}

fn filter(args: &DlqFilterArgs) -> Result<Filter, DlqCliError> {
    let since = match &args.since {
        Some(s) => Some(parse_since(s, chrono::Utc::now()).map_err(DlqCliError::Since)?),
        None => None,
    };
    Ok(Filter {
        event_type: args.event_type.clone(),
        organization_id: args.org.clone(),
        reason: args.reason.clone(),
        since,
        ids: args.ids.clone(),
    })
}

/// Runs one dlq command, printing its output to stdout.
pub async fn run(command: &DlqCommand) -> Result<(), DlqCliError> {
    let url = command.broker().amqp_url();
    let topology = command.broker().topology();
    match command {
        DlqCommand::List {
            filter: f,
            max,
            json,
            ..
        } => {
            let (messages, total) = list(url, &topology, &filter(f)?, *max).await?;
            if *json {
                println!("{}", render::json(&messages, total));
            } else {
                print!("{}", render::table(&messages, total, chrono::Utc::now()));
            }
        }
        DlqCommand::Show { id, .. } => print!("{}", show(url, &topology, id).await?),
        DlqCommand::Replay {
            filter: f,
            max,
            rate,
            dry_run,
            force,
            max_replays,
            ..
        } => {
            let opts = ReplayOptions {
                filter: filter(f)?,
                max: *max,
                rate: *rate,
                dry_run: *dry_run,
                force: *force,
                max_replays: *max_replays,
            };
            let r = replay(url, &topology, &opts).await?;
            let verb = if *dry_run { "would replay" } else { "replayed" };
            println!(
                "{verb} {} of {} matching ({} scanned); {} skipped by the loop guard (DLQ_MAX_REPLAYS={})",
                r.done, r.matched, r.scanned, r.skipped, max_replays
            );
        }
        DlqCommand::Purge {
            filter: f,
            max,
            yes,
            ..
        } => {
            let r = purge(url, &topology, &filter(f)?, *max, *yes).await?;
            if !*yes {
                return Err(DlqCliError::NotConfirmed(r.done));
            }
            println!("deleted {} of {} scanned", r.done, r.scanned);
        }
    }
    Ok(())
}
