//! change-feed: what an application links to follow scim-provisioning's changes.
//!
//! The worker publishes every net change it commits to the RabbitMQ stream
//! `{prefix}.changes.log`, in commit order (`seq`), at least once. [`run`] reads that stream
//! from the position the application stored, hands each change to [`Application::apply`], and
//! skips changes already applied (`seq` not above the stored one). The application stores the
//! position **in the same transaction** as its own effects, so each change takes effect exactly
//! once, whatever crashes or re-publishes happen. [`ChangeHandler`] and [`dispatch`] turn a
//! change into calls like `on_provisioned` / `on_deprovisioned`, each ignoring by default.
//!
//! The contract (kinds, body, headers) is `docs/changes.md` in the repository.

mod decode;
mod handler;
mod silence;
mod stats;
mod stream;

pub use decode::{FeedError, UnknownKinds, decode};
pub use handler::{ChangeHandler, dispatch};
pub use shared::changes::{
    Change, ChangeKind, ChangePayload, DirectoryState, GroupState, UserState,
};
pub use stats::FeedStats;
pub use stream::{FeedConfig, Start, run};

/// Where the application is in the feed: the last change it applied and that change's stream
/// offset. Stored by the application with its own effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub seq: i64,
    pub offset: u64,
}

/// The application's side: its stored position, and applying one change together with storing
/// the new position (one transaction of the application's).
pub trait Application: Send {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The stored position, or `None` to start from the beginning of the retained feed.
    fn position(&mut self) -> impl Future<Output = Result<Option<Position>, Self::Error>> + Send;

    /// Applies `change` and stores `at` in the same transaction. An error stops [`run`]; the
    /// change is read again on the next run (nothing was stored).
    fn apply(
        &mut self,
        change: &Change,
        at: Position,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
