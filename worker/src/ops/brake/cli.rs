//! `worker brake …` on a terminal: what [`super::actions`] finds and does, printed. Ids and emails
//! come from the identity provider: they are printed escaped.

use super::actions::{self, BrakeError};
use crate::ops::args::BrakeCommand;
use crate::service::apply::Applier;
use crate::service::role_mapping::{MappingError, RoleMapping};
use std::io::Write;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum BrakeCliError {
    #[error(transparent)]
    Brake(#[from] BrakeError),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("discarding held events cannot be undone: pass --yes")]
    NotConfirmed,
    #[error("writing the output")]
    Output(#[from] std::io::Error),
}

pub async fn run(command: &BrakeCommand) -> Result<(), BrakeCliError> {
    let mut out = std::io::stdout().lock();
    match command {
        BrakeCommand::List { database } => {
            let pool = database.pool(2);
            let held = actions::list(&pool).await?;
            if held.is_empty() {
                writeln!(out, "no organization is held")?;
            }
            for o in held {
                let sample: Vec<String> = o
                    .sample
                    .iter()
                    .map(|s| s.escape_debug().to_string())
                    .collect();
                writeln!(
                    out,
                    "{}\theld {}\tsince {}\tlast {}\tusers {}",
                    o.organization_id.escape_debug(),
                    o.held,
                    o.engaged_at.map_or("-".to_owned(), |t| t.to_rfc3339()),
                    o.last_held_at.map_or("-".to_owned(), |t| t.to_rfc3339()),
                    sample.join(", ")
                )?;
            }
        }
        BrakeCommand::Show { org, database } => {
            let pool = database.pool(2);
            let rows = actions::show(&pool, org).await?;
            writeln!(out, "{} held events for {}", rows.len(), org.escape_debug())?;
            for r in rows {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\toccurred {}\theld {}",
                    r.seq,
                    r.event_id.escape_debug(),
                    r.event_type.escape_debug(),
                    r.directory_user_id.escape_debug(),
                    r.email.as_deref().unwrap_or("-").escape_debug(),
                    r.occurred_at.to_rfc3339(),
                    r.held_at.to_rfc3339()
                )?;
            }
        }
        BrakeCommand::Release {
            org,
            database,
            apply,
        } => {
            let mapping = match &apply.role_mapping_file {
                Some(path) => RoleMapping::load(path)?,
                None => RoleMapping::default(),
            };
            let pool = database.pool(2);
            let applier = Applier::new(pool.clone(), Arc::new(mapping), apply.hard_delete);
            let done = actions::release(&pool, &applier, org).await?;
            writeln!(
                out,
                "released {} events of {}: applied {}, superseded {}{}",
                done.events,
                org.escape_debug(),
                done.applied,
                done.stale,
                still_held(done.disengaged)
            )?;
        }
        BrakeCommand::Discard { org, yes, database } => {
            if !yes {
                return Err(BrakeCliError::NotConfirmed);
            }
            let pool = database.pool(2);
            let done = actions::discard(&pool, org).await?;
            writeln!(
                out,
                "discarded {} events of {}{}",
                done.events,
                org.escape_debug(),
                still_held(done.disengaged)
            )?;
        }
    }
    Ok(())
}

fn still_held(disengaged: bool) -> &'static str {
    if disengaged {
        "; the brake is disengaged"
    } else {
        "; more events were held meanwhile: the brake stays engaged (run it again)"
    }
}
