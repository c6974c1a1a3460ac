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
    #[error("broker error")]
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

/// One message for [`start_all`].
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub properties: BasicProperties,
}

/// Starts every publish (mandatory) on `channel` before awaiting any, their frames queued in
/// the order given: one message's write does not wait for the one before. Returns each
/// pending confirm, or why the publish could not start, in the same order.
pub async fn start_all<'a>(
    channel: &Channel,
    messages: impl IntoIterator<Item = Outgoing<'a>>,
) -> Vec<Result<PublisherConfirm, PublishError>> {
    use futures_util::future::{join_all, maybe_done};
    use std::pin::Pin;
    let mut publishes: Vec<_> = messages
        .into_iter()
        .map(|m| {
            maybe_done(Box::pin(channel.basic_publish(
                m.exchange.into(),
                m.routing_key.into(),
                mandatory(),
                m.body,
                m.properties,
            )))
        })
        .collect();
    // A publish queues its frames when first polled, before its first await: one poll each,
    // in order, puts them all on the wire in that order.
    std::future::poll_fn(|cx| {
        for publish in &mut publishes {
            let _ = Pin::new(publish).poll(cx);
        }
        std::task::Poll::Ready(())
    })
    .await;
    join_all(publishes.iter_mut()).await;
    publishes
        .iter_mut()
        .map(|p| match Pin::new(p).take_output() {
            Some(started) => started.map_err(PublishError::from),
            // join_all has run every publish to completion.
            None => Err(PublishError::Link(LinkError::Down)),
        })
        .collect()
}
