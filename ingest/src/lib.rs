//! ingest: the webhook receiver. It verifies each Scalekit webhook over the raw body and answers
//! 2xx only once RabbitMQ has confirmed the message.
//!
//! It must never answer 2xx for a message the broker has not confirmed, never publish anything
//! that did not pass verification, and never log a body or a secret.

pub mod coalesce;
pub mod config;
pub mod fair;
pub mod health;
pub mod metrics;
pub mod publish;
pub mod startup;
pub mod state;
pub mod webhook;

pub use config::Config;
pub use startup::{Application, StartError, WEBHOOK_PATH};
