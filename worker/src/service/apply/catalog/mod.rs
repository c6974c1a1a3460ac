//! The catalogue: group and directory events (versioned upserts with soft deletion). A group
//! deletion also takes the group out of its members' memberships and mapped roles.

pub mod apply;
pub mod plan;
pub mod store;

#[cfg(test)]
mod plan_tests;
