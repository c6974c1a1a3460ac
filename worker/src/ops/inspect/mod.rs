//! Answers for operators: `worker status` (the deployment at a glance), `worker explain`
//! (why a user is in the state it is in) and `worker report slo` (how fast the directory's
//! word takes effect), from what the service writes down for them (`crate::service::records`). Reading is
//! separate from rendering (`render`), which is pure and tested without services.

pub mod broker_api;
pub mod cli;
pub mod explain;
pub mod render;
pub mod slo;
pub mod status;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("database")]
    Database(#[from] diesel::result::Error),
    #[error("database connection")]
    Connect(#[from] diesel::ConnectionError),
}

#[cfg(test)]
mod tests;
