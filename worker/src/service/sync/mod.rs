//! Directory sync (`docs/architecture.md`, "Directory sync"): a Scalekit Directory API client, a sync that publishes
//! snapshot events through the normal apply path, reconciliation, and a scheduler.

pub mod client;
pub mod listing;
pub mod model;
pub mod progress;
pub mod run;
pub mod schedule;
pub mod snapshot;
pub mod store;

pub use client::{ClientConfig, ClientError, ScalekitClient};
pub use listing::Incomplete;
pub use progress::Summary;
pub use run::{SyncError, Syncer};
