//! `worker brake list | show | release | discard`: what the deprovisioning brake
//! (`crate::service::brake`) holds, and the operator's two ways out of it.

pub mod actions;
pub mod cli;
