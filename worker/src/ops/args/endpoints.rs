//! `worker endpoints …`: the push endpoints' operator commands.

use crate::service::config::DatabaseArgs;
use clap::Args;

/// `worker endpoints …`.
#[derive(Debug, Clone, Args)]
pub struct EndpointsArgs {
    #[command(subcommand)]
    pub command: EndpointsCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum EndpointsCommand {
    /// Each endpoint: last delivered seq, lag in changes and seconds, failing since, last
    /// status, paused.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop delivering to the endpoint (positions are kept; retention waits for it).
    Pause {
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Deliver again from the endpoint's positions; its failure record starts over.
    Resume {
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Deliver every change from `--from-seq` on again (every organization).
    Replay {
        name: String,
        #[arg(long)]
        from_seq: i64,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}
