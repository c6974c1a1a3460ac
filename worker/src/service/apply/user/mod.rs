//! User events (`user_created`, `user_updated`, `user_deleted`): the pure planner, the
//! set-based store, and the transaction step that joins them.

pub mod apply;
pub mod erasure;
pub mod plan;
pub mod remap;
pub mod roles;
pub mod store;

#[cfg(test)]
mod plan_tests;
