//! The change feed: what the application this product serves is told. Every applied event
//! writes its net changes (`plan`) into the `changes` outbox in its own transaction (`outbox`);
//! one relay per deployment publishes them in commit order to `{prefix}.changes` and its stream
//! `{prefix}.changes.log` (`relay`); old rows are pruned (`prune`); `worker changes tail`
//! prints the feed (`tail`); applications may also pull it over HTTP (`api`) or have it pushed to them (`push`). The contract is
//! `docs/changes.md`.

pub mod api;
pub mod body;
pub mod leader;
pub mod outbox;
pub mod plan;
pub mod prune;
pub mod push;
pub mod relay;
pub mod tail;
