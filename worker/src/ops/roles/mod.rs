//! Role-mapping changes, the other mass change: `worker roles plan --mapping FILE` shows who
//! would gain or lose which mapped roles, `worker roles apply --mapping FILE` recomputes every
//! active user's mapped roles under the user's lock, with audit rows and `user.roles_changed`
//! in the change feed, in the same transaction. Without it a new mapping reaches a user only
//! with their next event.
//!
//! - the pure decision for one user and the transaction that applies it are the service's
//!   (`crate::service::apply::user::remap`, `Applier::remap_roles`);
//! - [`run`]: reading users in chunks, planning, applying;
//! - [`cli`]: the subcommands' output.

pub mod cli;
pub mod run;
