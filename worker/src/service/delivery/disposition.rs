//! Pure decisions about failures: which errors are worth retrying, and where a message goes
//! next (the retry tier for its retry count, or the dead-letter queue). The tiers themselves
//! (names, delays, queues) are part of the message contract, `shared::contract::Topology`;
//! `forward` publishes the copies.

use crate::service::apply::{ApplyError, Outcome};
use diesel::result::{DatabaseErrorKind, Error as DbError};
use shared::{DeadReason, ParseError, RetryTier, Topology};

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The database was unavailable, or the transaction lost a race (serialization failure,
    /// deadlock, lock timeout): try again later.
    Transient,
    /// The message itself cannot be applied: dead-letter it.
    Permanent(DeadReason),
}

/// What to do with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Ack(Outcome),
    /// Publish to this retry tier with `x-retry-count` = `retry_count`, then ack. The tier
    /// itself, as the topology has it: settling cannot find it missing.
    Retry {
        tier: RetryTier,
        retry_count: u32,
    },
    /// Publish to the dead-letter exchange, then ack.
    Dead {
        reason: DeadReason,
        error: String,
    },
}

pub fn classify_parse(e: &ParseError) -> Class {
    match e {
        ParseError::Envelope(_) => Class::Permanent(DeadReason::Malformed),
        ParseError::Data { .. } => Class::Permanent(DeadReason::Invalid),
    }
}

/// Class of an apply failure. Unknown database errors count as transient: retry tiers bound
/// the cost, and a real data problem still ends in the dead-letter queue (`retries_exhausted`).
pub fn classify_apply(e: &ApplyError) -> Class {
    match e {
        ApplyError::Pool(_) | ApplyError::BrakeContended => Class::Transient,
        ApplyError::MissingOrganization => Class::Permanent(DeadReason::Invalid),
        ApplyError::Database(db) => match db {
            DbError::DatabaseError(kind, info) => match kind {
                DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::RestrictViolation
                | DatabaseErrorKind::ExclusionViolation => Class::Permanent(DeadReason::Invalid),
                DatabaseErrorKind::Unknown if is_data_error(info.message()) => {
                    Class::Permanent(DeadReason::Invalid)
                }
                _ => Class::Transient,
            },
            DbError::SerializationError(_) | DbError::DeserializationError(_) => {
                Class::Permanent(DeadReason::Invalid)
            }
            _ => Class::Transient,
        },
    }
}

/// Whether the failure says the database itself is unreachable (no connection, or the
/// connection broke), rather than anything about the events: a batch failing so is forwarded
/// to its retry tier as a whole, not retried event by event.
pub fn database_unavailable(e: &ApplyError) -> bool {
    matches!(
        e,
        ApplyError::Pool(_)
            | ApplyError::Database(
                DbError::DatabaseError(
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                    _,
                ) | DbError::BrokenTransactionManager
            )
    )
}

/// Why a transient failure sends an event to a retry tier, as the label `cause` of
/// `scim_worker_retries_total`: our own locks (`lock_timeout`, `deadlock`), the database away
/// (`database_unavailable`), or anything else the database said (`database`).
pub fn retry_cause(e: &ApplyError) -> &'static str {
    if database_unavailable(e) {
        return "database_unavailable";
    }
    match e {
        ApplyError::Database(DbError::DatabaseError(_, info)) => {
            let message = info.message();
            if message.contains("lock timeout") {
                "lock_timeout"
            } else if message.contains("deadlock detected") {
                "deadlock"
            } else if message.contains("statement timeout") {
                "statement_timeout"
            } else {
                "database"
            }
        }
        ApplyError::BrakeContended => "brake_contended",
        _ => "database",
    }
}

/// PostgreSQL class 22 (data exception) messages: the data, not the database, is at fault.
fn is_data_error(message: &str) -> bool {
    const DATA: [&str; 6] = [
        "invalid input syntax",
        "out of range",
        "value too long",
        "invalid byte sequence",
        "unsupported Unicode escape",
        "null character not permitted",
    ];
    DATA.iter().any(|d| message.contains(d))
}

/// Where a failed message goes next.
pub fn after_failure(
    class: Class,
    error: String,
    retry_count: u32,
    topology: &Topology,
) -> Disposition {
    match class {
        Class::Permanent(reason) => Disposition::Dead { reason, error },
        Class::Transient => match topology.next_tier(retry_count) {
            Some(tier) => Disposition::Retry {
                tier: tier.clone(),
                retry_count: retry_count.saturating_add(1),
            },
            None => Disposition::Dead {
                reason: DeadReason::RetriesExhausted,
                error,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Info(&'static str);
    impl diesel::result::DatabaseErrorInformation for Info {
        fn message(&self) -> &str {
            self.0
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn db(kind: DatabaseErrorKind, msg: &'static str) -> ApplyError {
        ApplyError::Database(DbError::DatabaseError(kind, Box::new(Info(msg))))
    }

    #[test]
    fn retries_are_counted_by_cause() {
        let cause = |kind, msg| retry_cause(&db(kind, msg));
        assert_eq!(
            cause(
                DatabaseErrorKind::Unknown,
                "canceling statement due to lock timeout"
            ),
            "lock_timeout"
        );
        assert_eq!(
            cause(DatabaseErrorKind::Unknown, "deadlock detected"),
            "deadlock"
        );
        assert_eq!(
            cause(
                DatabaseErrorKind::Unknown,
                "canceling statement due to statement timeout"
            ),
            "statement_timeout"
        );
        assert_eq!(
            cause(DatabaseErrorKind::ClosedConnection, "closed"),
            "database_unavailable"
        );
        assert_eq!(
            cause(
                DatabaseErrorKind::SerializationFailure,
                "could not serialize"
            ),
            "database"
        );
        assert_eq!(retry_cause(&ApplyError::BrakeContended), "brake_contended");
    }

    #[test]
    fn only_a_missing_database_fails_a_batch_as_a_whole() {
        assert!(database_unavailable(&db(
            DatabaseErrorKind::ClosedConnection,
            "closed"
        )));
        assert!(database_unavailable(&db(
            DatabaseErrorKind::UnableToSendCommand,
            "connection reset"
        )));
        assert!(database_unavailable(&ApplyError::Database(
            DbError::BrokenTransactionManager
        )));
        // These are about some event of the batch (or its locks): one by one isolates it.
        for (kind, msg) in [
            (
                DatabaseErrorKind::Unknown,
                "canceling statement due to lock timeout",
            ),
            (DatabaseErrorKind::Unknown, "deadlock detected"),
            (
                DatabaseErrorKind::CheckViolation,
                "violates check constraint",
            ),
            (
                DatabaseErrorKind::SerializationFailure,
                "could not serialize",
            ),
        ] {
            assert!(!database_unavailable(&db(kind, msg)), "{msg}");
        }
        assert!(!database_unavailable(&ApplyError::MissingOrganization));
        assert!(database_unavailable(&ApplyError::Pool(
            crate::service::db::PoolError::TimedOut
        )));
    }

    #[test]
    fn classes() {
        assert_eq!(
            classify_apply(&db(
                DatabaseErrorKind::SerializationFailure,
                "could not serialize"
            )),
            Class::Transient
        );
        assert_eq!(
            classify_apply(&db(DatabaseErrorKind::Unknown, "deadlock detected")),
            Class::Transient
        );
        assert_eq!(
            classify_apply(&db(
                DatabaseErrorKind::Unknown,
                "canceling statement due to lock timeout"
            )),
            Class::Transient
        );
        assert_eq!(
            classify_apply(&db(DatabaseErrorKind::ClosedConnection, "closed")),
            Class::Transient
        );
        assert_eq!(
            classify_apply(&db(
                DatabaseErrorKind::CheckViolation,
                "violates check constraint"
            )),
            Class::Permanent(DeadReason::Invalid)
        );
        assert_eq!(
            classify_apply(&db(
                DatabaseErrorKind::Unknown,
                "value too long for type character varying(5)"
            )),
            Class::Permanent(DeadReason::Invalid)
        );
        assert_eq!(
            classify_apply(&ApplyError::MissingOrganization),
            Class::Permanent(DeadReason::Invalid)
        );
        let parse = shared::WebhookEvent::parse(b"nope").unwrap_err();
        assert_eq!(
            classify_parse(&parse),
            Class::Permanent(DeadReason::Malformed)
        );
    }

    #[test]
    fn transient_failures_walk_the_tiers_then_dead_letter() {
        let t = Topology::default();
        assert_eq!(
            after_failure(Class::Transient, "x".into(), 0, &t),
            Disposition::Retry {
                tier: t.tiers()[0].clone(),
                retry_count: 1
            }
        );
        assert_eq!(
            after_failure(Class::Transient, "x".into(), 3, &t),
            Disposition::Retry {
                tier: t.tiers()[3].clone(),
                retry_count: 4
            }
        );
        assert_eq!(
            after_failure(Class::Transient, "x".into(), 4, &t),
            Disposition::Dead {
                reason: DeadReason::RetriesExhausted,
                error: "x".into()
            }
        );
        assert_eq!(
            after_failure(Class::Permanent(DeadReason::Malformed), "bad".into(), 0, &t),
            Disposition::Dead {
                reason: DeadReason::Malformed,
                error: "bad".into()
            }
        );
    }
}
