//! Operator commands: dead-letter queues (`dlq`), reads for operators (`inspect`: status,
//! explain, report), role mapping changes (`roles`), the brake's list / release / discard
//! (`brake`), push endpoints (`endpoints`), following the stream (`tail`), and the one-shot
//! runs (`migrate`, `sync`). Each has its arguments in [`args`] and its runner in a `run`
//! function its subcommand calls.
//!
//! Operator code imports the service ([`crate::service`]), never the reverse.

pub mod args;
pub mod brake;
pub mod dlq;
pub mod endpoints;
pub mod inspect;
pub mod migrate;
pub mod roles;
pub mod sync;
pub mod tail;
