//! The change feed: what the application this product serves is told. Every applied event
//! writes its net changes into the `changes` outbox in its own transaction (that write belongs
//! to the apply path: `crate::service::apply::outbox`); one relay per deployment publishes them
//! in commit order to `{prefix}.changes` and its stream `{prefix}.changes.log` (`relay`); old
//! rows are pruned (`prune`); applications may also pull them over HTTP (`api`) or have them
//! pushed (`push`). `worker changes tail` (an operator command) reads the stream. The contract
//! is `docs/changes.md`.

pub mod api;
pub mod body;
pub mod leader;
pub mod prune;
pub mod push;
pub mod relay;
