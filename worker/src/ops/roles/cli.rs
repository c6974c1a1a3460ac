//! `worker roles plan | apply` on a terminal. Ids and emails come from the identity provider:
//! they are printed escaped.

use super::run::{self, RolesError, UserRemap};
use crate::ops::args::RolesCommand;
use crate::service::apply::Applier;
use crate::service::role_mapping::{MappingError, RoleMapping};
use std::io::Write;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum RolesCliError {
    #[error(transparent)]
    Roles(#[from] RolesError),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("writing the output")]
    Output(#[from] std::io::Error),
}

pub async fn run(command: &RolesCommand) -> Result<(), RolesCliError> {
    let (args, applying) = match command {
        RolesCommand::Plan(args) => (args, false),
        RolesCommand::Apply(args) => (args, true),
    };
    let mapping = RoleMapping::load(&args.mapping)?;
    let pool = args.database.pool(2);
    let org = args.org.as_deref();
    let remaps = if applying {
        let cause = format!(
            "roles_apply_{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
        );
        // Remapping roles deletes nobody: the hard-delete setting plays no part.
        let applier = Applier::new(pool, Arc::new(mapping), false);
        run::apply(&applier, org, &cause).await?
    } else {
        run::plan(&pool, &mapping, org).await?
    };
    print(&mut std::io::stdout().lock(), &remaps, applying)?;
    Ok(())
}

fn print(out: &mut impl Write, remaps: &[UserRemap], applied: bool) -> std::io::Result<()> {
    let verb = if applied { "changed" } else { "would change" };
    writeln!(out, "{} users {verb}", remaps.len())?;
    let mut org: Option<&str> = None;
    for r in remaps {
        if org != Some(r.organization_id.as_str()) {
            let n = remaps
                .iter()
                .filter(|x| x.organization_id == r.organization_id)
                .count();
            writeln!(out, "{}: {n} users", r.organization_id.escape_debug())?;
            org = Some(&r.organization_id);
        }
        let grants = r.granted.iter().map(|g| format!("+{}", g.escape_debug()));
        let revokes = r.revoked.iter().map(|g| format!("-{}", g.escape_debug()));
        writeln!(
            out,
            "  {} {}\t{}",
            r.directory_user_id.escape_debug(),
            r.email.as_deref().unwrap_or("-").escape_debug(),
            grants.chain(revokes).collect::<Vec<_>>().join(" ")
        )?;
    }
    Ok(())
}
