//! What ingest, worker and the tests share: the Scalekit webhook envelope and typed events, the
//! Standard Webhooks verifier and the RabbitMQ message contract.
//!
//! The default build does no I/O: everything here is a pure decision or plain data. The optional
//! `amqp` feature adds the one RabbitMQ adapter both binaries use (topology, confirmed publish).
//! It must never hold secrets in a printable form, nor accept an unverified body as verified.

pub mod chain;
pub mod changes;
pub mod contract;
pub mod envelope;
pub mod event_data;
pub mod event_type;
pub mod ids;
pub mod lane;
pub mod redact;
pub mod secret;
pub mod verify;

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "telemetry")]
pub mod telemetry;

pub use chain::Chain;
pub use contract::{DeadReason, MessageMeta, RetryTier, Source, Topology};
pub use envelope::{Envelope, EnvelopeHead, EnvelopeOf, Event, ParseError, WebhookEvent};
pub use event_data::{DirectoryData, GroupData, GroupRef, RoleRef, UserData, UserDeletedData};
pub use event_type::EventType;
pub use ids::{
    DirectoryGroupId, DirectoryId, DirectoryUserId, EnvironmentId, EventId, OrganizationId,
};
pub use redact::redact_url;
pub use secret::{SecretError, WebhookSecret, WebhookSecrets};
pub use verify::{HeaderSource, SignedHeaders, VerifiedWebhook, Verifier, VerifyError, sign};
