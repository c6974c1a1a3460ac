//! From a delivery to a settled message, in the order the code runs:
//!
//! - [`lanes`]: the consume loop, `WORKER_CONCURRENCY` lanes each with its own channel, taking
//!   a batch of deliveries at a time;
//! - [`handle`]: parse → apply (`crate::service::apply`) → ack, or on failure ask [`disposition`];
//! - [`disposition`]: the retry logic in one place — which failures are worth retrying, and
//!   whether a message goes to the next retry tier or to the dead-letter queue;
//! - [`forward`]: the confirmed publish of that copy; the original is acked only after it.

pub mod disposition;
pub mod forward;
pub mod handle;
pub mod lanes;

pub use handle::Handler;
pub use lanes::ConsumeSettings;
