//! worker: applies Scalekit directory events from RabbitMQ to PostgreSQL exactly once, in any
//! arrival order, with retry tiers and a dead-letter queue.
//!
//! It must never ack a message before its change (with its dedupe row) is committed or its
//! retry/dead-letter copy is confirmed by the broker, and never write users from anywhere but
//! the apply path.
//!
//! Two wings: [`service`] (what `worker run` runs) and [`ops`] (operator commands), with the
//! command line ([`cli`]) and the dispatch ([`commands`]) above both. `ops` imports `service`,
//! never the reverse.

pub mod cli;
pub mod commands;
pub mod ops;
pub mod service;

pub use service::startup::{StartError, Worker};
