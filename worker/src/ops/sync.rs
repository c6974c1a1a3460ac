//! `worker sync`: one organization's directories synced now, on a terminal (progress per
//! page); the service's scheduled sync runs the same [`crate::service::sync`] code.

use crate::ops::args::SyncArgs;
use crate::service::startup::{self, StartError};
use crate::service::sync::SyncError;
use crate::service::sync::progress::Progress;
use shared::amqp::{BrokerLink, connection_name};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SyncCliError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("RabbitMQ is not reachable")]
    BrokerUnreachable,
    #[error("sync failed (nothing was deactivated)")]
    Sync(#[from] SyncError),
}

pub async fn run(args: &SyncArgs) -> Result<(), SyncCliError> {
    let link = BrokerLink::start(
        args.broker.amqp_url().to_owned(),
        connection_name("sync"),
        Some(args.broker.topology()),
        1,
    );
    let pool = args.database.pool(4);
    // SIGTERM / SIGINT stop the sync at its next page, recorded `cancelled`.
    let stop = tokio_util::sync::CancellationToken::new();
    let signals = tokio::spawn(startup::stop_on_signal(stop.clone()));
    let syncer = startup::syncer(&args.scalekit, &args.broker, link.clone(), pool, stop)?;
    if !link.wait_ready(Duration::from_secs(30)).await {
        return Err(SyncCliError::BrokerUnreachable);
    }
    let result = syncer
        .sync_org(
            &args.org,
            args.directory.as_deref(),
            &mut Progress::for_terminal(),
        )
        .await;
    signals.abort();
    link.close().await;
    println!("{}", result?);
    Ok(())
}
