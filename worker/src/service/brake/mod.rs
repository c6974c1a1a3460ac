//! The deprovisioning brake: no mass lock-out by mistake (docs/worker.md, "The brake engaged — what to
//! do"). Per organization, when the deactivations (and erasures) committed within
//! `DEPROVISION_BRAKE_WINDOW` would pass `DEPROVISION_BRAKE_PERCENT` of its active users (and at
//! least `DEPROVISION_BRAKE_MIN`), further deactivating events are **held**: stored in
//! `held_events` in arrival order, claimed in `processed_events` (outcome `held`, so
//! redeliveries are duplicates), not applied. Other organizations and other events flow on.
//! An operator then releases them (applied through the normal apply path, in order) or discards
//! them (audited).
//!
//! - [`budget`]: the pure decision (how many may pass, when to hold);
//! - [`store`]: the budget read inside the apply transaction, holding, listing;
//! - [`cache`]: the last counts per organization, for the optimistic read;
//! - `worker brake list | show | release | discard` is an operator command (`crate::ops::brake`);
//! - [`gauges`]: the per-organization metrics.

pub mod budget;
pub mod cache;
pub mod gauges;
pub mod store;

pub use budget::{BrakeSettings, Budget};
