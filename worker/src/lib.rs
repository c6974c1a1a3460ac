//! worker: applies Scalekit directory events from RabbitMQ to PostgreSQL exactly once, in any
//! arrival order, with retry tiers and a dead-letter queue.
//!
//! It must never ack a message before its change (with its dedupe row) is committed or its
//! retry/dead-letter copy is confirmed by the broker, and never write users from anywhere but
//! the apply path.

pub mod apply;
pub mod brake;
pub mod changes;
pub mod commands;
pub mod config;
pub mod db;
pub mod delivery;
pub mod depth;
pub mod dlq;
pub mod endpoints;
pub mod health;
pub mod inspect;
pub mod metrics;
pub mod role_mapping;
pub mod roles;
pub mod startup;
pub mod sync;

pub use startup::{StartError, Worker};
