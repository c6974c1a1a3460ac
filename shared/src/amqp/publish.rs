//! One confirmed, mandatory publish. Many of these may be in flight on one channel at once: each
//! awaits only its own confirm (pipelining), there is no lock around publish-and-wait.

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};
use std::time::Duration;

/// Why the broker did not take responsibility for a message.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("no broker channel is available")]
    Unavailable,
    #[error("the broker is blocking publishers (resource alarm)")]
    Blocked,
    #[error("the broker nacked the message")]
    Nacked,
    #[error("the message was unroutable and returned ({0})")]
    Returned(String),
    #[error("no confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
}

/// Waits for a mandatory publish's confirm: `Ok` only for an ack without a returned message
/// (an ack that comes with a returned message means nothing was queued).
pub async fn settled(confirm: lapin::PublisherConfirm) -> Result<(), PublishError> {
    let confirm = confirm.await?;
    if confirm.is_nack() {
        return Err(PublishError::Nacked);
    }
    if let Some(returned) = confirm.take_message() {
        return Err(PublishError::Returned(returned.reply_text.to_string()));
    }
    Ok(())
}

/// Publishes with `mandatory` and waits (bounded) for the broker's confirm. An ack that comes
/// with a returned message is a failure: nothing was queued.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> Result<(), PublishError> {
    let work = async {
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await?;
        settled(confirm).await
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| PublishError::ConfirmTimeout(timeout))?
}
