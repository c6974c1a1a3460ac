//! The one confirmed publish: `mandatory`, bounded by a timeout, and a failure unless the
//! broker acked it without returning it. [`publish_confirmed`] publishes one message on a
//! channel; ingest's coalescer starts many publishes together and settles each one with
//! [`confirm_within`]. Many may be in flight on one channel at once: each awaits only its own
//! confirm (pipelining), there is no lock around publish-and-wait.

use super::link::LinkError;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, PublisherConfirm};
use std::time::Duration;

/// Why the broker did not take responsibility for a message.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("the broker nacked the message")]
    Nacked,
    #[error("the message was unroutable and returned ({0})")]
    Returned(String),
    #[error("no confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
}

/// The options of every publish: `mandatory`, so an unroutable message comes back instead of
/// vanishing.
pub fn mandatory() -> BasicPublishOptions {
    BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    }
}

/// Waits for a mandatory publish's confirm: `Ok` only for an ack without a returned message
/// (an ack that comes with a returned message means nothing was queued).
pub async fn settled(confirm: PublisherConfirm) -> Result<(), PublishError> {
    let confirm = confirm.await?;
    if confirm.is_nack() {
        return Err(PublishError::Nacked);
    }
    if let Some(returned) = confirm.take_message() {
        return Err(PublishError::Returned(returned.reply_text.to_string()));
    }
    Ok(())
}

/// Starts a publish (`started` yields its pending confirm) and settles it, all within
/// `timeout`.
pub async fn confirm_within(
    timeout: Duration,
    started: impl Future<Output = Result<PublisherConfirm, PublishError>>,
) -> Result<(), PublishError> {
    let work = async { settled(started.await?).await };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| PublishError::ConfirmTimeout(timeout))?
}

/// Publishes one message (mandatory) and waits, bounded by `timeout`, for its confirm.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> Result<(), PublishError> {
    confirm_within(timeout, async {
        Ok(channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                mandatory(),
                body,
                properties,
            )
            .await?)
    })
    .await
}
