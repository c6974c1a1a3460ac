//! The running service (`worker run`): consuming deliveries, applying them exactly once with
//! their outbox write, the deprovisioning brake's policy, the change feed's relay, push
//! delivery and pull API, directory sync, and the records they write for operators.
//!
//! Nothing here imports [`crate::ops`]: operator commands build on the service, never the
//! reverse (checked by `worker/tests/wings.rs`).

pub mod apply;
pub mod brake;
pub mod changes;
pub mod config;
pub mod db;
pub mod delivery;
pub mod depth;
pub mod health;
pub mod metrics;
pub mod records;
pub mod role_mapping;
pub mod startup;
pub mod sync;
