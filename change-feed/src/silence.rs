//! Telling a silent subscription from a quiet feed: after a quiet spell the reader looks at
//! the stream's newest change on a short consumer of its own ([`newest_seq`]), and
//! [`silence`] decides from two such looks in a row.

use crate::stream::{FeedConfig, SUBSCRIBE_TIMEOUT};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use std::time::Duration;

/// What a silence check concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Silence {
    /// The feed has nothing past what was applied: a quiet feed, not a silent subscription.
    No,
    /// The feed moved on while nothing arrived, seen once: the subscription's deliveries may
    /// be on their way (a relay that paused — its database away — resumes just as the check
    /// runs, and the check's own look at the stream sees the new changes first). Looked at
    /// again after another quiet period.
    Suspected(i64),
    /// The feed had moved on at the previous check and nothing arrived since: silent.
    Yes(i64),
}

/// The check's verdict from what the previous check suspected, the stream's newest `seq` and
/// the last `seq` applied. A subscription is silent only when two checks in a row, a quiet
/// period apart, find the feed past it with no delivery in between: reacting to the first
/// one replaced live subscriptions whose deliveries were a moment behind (seen around every
/// database outage: the relay's first publishes after a pause raced the check).
pub(crate) fn silence(suspect: Option<i64>, newest: Option<i64>, last_seq: Option<i64>) -> Silence {
    match newest {
        Some(newest) if last_seq.is_none_or(|l| newest > l) => match suspect {
            Some(_) => Silence::Yes(newest),
            None => Silence::Suspected(newest),
        },
        _ => Silence::No,
    }
}

/// The `seq` of the stream's newest change: a short subscription of its own from `last` (the
/// newest chunk), read until it has been quiet for a moment. `None` for an empty stream.
pub(crate) async fn newest_seq(
    connection: &lapin::Connection,
    config: &FeedConfig,
) -> Result<Option<i64>, lapin::Error> {
    let look = async {
        let channel = connection.create_channel().await?;
        channel.basic_qos(1000, BasicQosOptions::default()).await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-stream-offset".into(),
            AMQPValue::LongString(LongString::from(b"last".to_vec())),
        );
        let mut peek = channel
            .basic_consume(
                config.stream.as_str().into(),
                format!("{}-peek", config.connection_name).as_str().into(),
                BasicConsumeOptions::default(),
                args,
            )
            .await?;
        let mut newest = None;
        while let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_millis(300), peek.next()).await
        {
            let delivery = delivery?;
            let seq = delivery.properties.headers().as_ref().and_then(|h| {
                match h.inner().get(shared::changes::header::SEQ) {
                    Some(AMQPValue::LongLongInt(n)) => Some(*n),
                    _ => None,
                }
            });
            newest = newest.max(seq);
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
        }
        let _ = channel.close(200, "peeked".into()).await;
        Ok::<_, lapin::Error>(newest)
    };
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, look)
        .await
        .unwrap_or_else(|_| {
            Err(lapin::Error::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer while looking at the stream's newest change",
            )))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_is_silent_only_when_two_checks_in_a_row_find_the_feed_past_it() {
        // A quiet feed: nothing past what was applied (or an empty stream).
        assert_eq!(silence(None, Some(5), Some(5)), Silence::No);
        assert_eq!(silence(None, None, None), Silence::No);
        assert_eq!(silence(Some(9), Some(5), Some(5)), Silence::No);
        // The feed moved on: suspected first (deliveries may be on their way) …
        assert_eq!(silence(None, Some(9), Some(5)), Silence::Suspected(9));
        assert_eq!(silence(None, Some(3), None), Silence::Suspected(3));
        // … silent when the next check, nothing having arrived, still finds it past.
        assert_eq!(silence(Some(9), Some(9), Some(5)), Silence::Yes(9));
        assert_eq!(silence(Some(9), Some(12), Some(5)), Silence::Yes(12));
    }
}
