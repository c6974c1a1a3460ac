//! From a verified webhook to a confirmed message: events go to the events exchange with their
//! type as routing key, deprovisionings to the urgent exchange and an organization's events past
//! its fair share to the bulk exchange (`shared::lane`, `crate::fair`); a signed body that is not an envelope goes to the dead-letter exchange
//! with `x-dead-reason: malformed` (nothing signed is dropped).

use crate::coalesce::Coalescer;
use crate::state::AppState;
use shared::amqp::{PublishError, mark_dead, properties};
use shared::lane::{EnvelopeRoute, Lane, lane};
use shared::{DeadReason, MessageMeta, Source, VerifiedWebhook};
use std::time::Instant;

/// What was published.
pub enum Published {
    Event { event_id: String, lane: Lane },
    Malformed { reason: String },
}

/// AMQP short strings (routing key, message id) hold at most 255 bytes.
const SHORT_STRING_MAX: usize = 255;

pub async fn publish(
    state: &AppState,
    publisher: &Coalescer,
    hook: &VerifiedWebhook,
) -> Result<Published, PublishError> {
    let envelope = serde_json::from_slice::<EnvelopeRoute>(hook.body())
        .map_err(|e| shared::envelope::json_error(&e))
        .and_then(|env| {
            if env.event_type.len() > SHORT_STRING_MAX || env.id.as_str().len() > SHORT_STRING_MAX {
                Err("event type or id longer than 255 bytes".to_owned())
            } else {
                Ok(env)
            }
        });
    match envelope {
        Ok(env) => {
            let span = tracing::Span::current();
            span.record("event_id", env.id.as_str());
            span.record("event_type", env.event_type.as_str());
            if let Some(org) = &env.organization_id {
                span.record("organization_id", org.as_str());
            }
            let meta =
                MessageMeta::of_envelope(&env, Source::Webhook).with_webhook_id(hook.webhook_id());
            let lane = match (lane(&env.event_type, env.data), &env.organization_id) {
                (Lane::Apply, Some(org)) if !state.fair.admit(org.as_str(), Instant::now()) => {
                    Lane::Bulk
                }
                (lane, _) => lane,
            };
            let exchange = match lane {
                Lane::Apply => &state.events_exchange,
                Lane::Urgent => &state.urgent_exchange,
                Lane::Bulk => &state.bulk_exchange,
            };
            publisher
                .publish(
                    exchange,
                    &env.event_type,
                    hook.body().clone(),
                    properties(&meta),
                    state.confirm_timeout,
                )
                .await?;
            Ok(Published::Event {
                event_id: env.id.into_inner(),
                lane,
            })
        }
        Err(reason) => {
            let webhook_id: String = hook.webhook_id().chars().take(SHORT_STRING_MAX).collect();
            let meta = MessageMeta::malformed(webhook_id);
            let props = mark_dead(properties(&meta), DeadReason::Malformed, &reason);
            publisher
                .publish(
                    &state.dead_exchange,
                    DeadReason::Malformed.as_str(),
                    hook.body().clone(),
                    props,
                    state.confirm_timeout,
                )
                .await?;
            Ok(Published::Malformed { reason })
        }
    }
}
