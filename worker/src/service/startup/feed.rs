//! The change feed's parts of a running worker besides the relay: the pull API's listener
//! and the push delivery's settings, both checked at build.

use super::StartError;
use crate::service::changes::push::{PushSettings, send::Target};
use crate::service::config::RunArgs;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// The pull API's server and the commit listener that wakes its long-polls.
pub(super) struct ChangesApi {
    pub addr: SocketAddr,
    pub server: actix_web::dev::Server,
    pub wake: Arc<crate::service::changes::api::wake::Wake>,
}

/// Binds the pull API when `CHANGES_API_LISTEN` is set (its own pool of a few connections, so
/// readers never take the apply lanes' connections).
pub(super) fn changes_api(config: &RunArgs) -> Result<Option<ChangesApi>, StartError> {
    use crate::service::changes::api::{self, ApiState, wake::Wake};
    let Some(addr) = config.changes_api.changes_api_listen else {
        return Ok(None);
    };
    let tokens = config
        .changes_api
        .changes_api_tokens
        .clone()
        .ok_or(StartError::ApiTokens)?;
    let bind = |source| StartError::Bind { addr, source };
    let listener = TcpListener::bind(addr).map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    let wake = Arc::new(Wake::default());
    let state = ApiState {
        pool: config.database.pool(4),
        tokens,
        wake: Arc::clone(&wake),
    };
    let server = api::server(listener, state).map_err(bind)?;
    Ok(Some(ChangesApi { addr, server, wake }))
}

/// Push delivery's settings: every endpoint checked, and its HTTP client built, before the
/// worker starts.
pub(super) fn push_settings(config: &RunArgs) -> Result<PushSettings, StartError> {
    let args = &config.changes_push;
    let endpoints = args.endpoints()?;
    for e in &endpoints {
        Target::new(e.clone(), args.changes_webhook_timeout)?;
    }
    Ok(PushSettings {
        database_url: config.database.database_url().to_owned(),
        timeouts: config.database.timeouts(),
        endpoints,
        batch: usize::from(args.changes_webhook_batch),
        timeout: args.changes_webhook_timeout,
        pause_after: args.changes_webhook_pause_after,
        concurrency: usize::from(args.changes_webhook_concurrency),
        poll: config.changes_relay.changes_poll_interval,
    })
}
