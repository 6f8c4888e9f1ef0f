//! Metrics and spans of the crate: the handles one lock, Redlock or semaphore registers when it is
//! built (recorded through `redis_core::metrics`, empty unless the `metrics` feature is on), the
//! documented table [`METRICS`], and the `name` every builder takes.
//!
//! | name | kind | labels | recorded by |
//! |---|---|---|---|
//! | `redis_patterns_lock_acquisitions_total` | counter | `name`, `kind`, `outcome` | every `acquire`, `try_acquire` and `with_lock` / `with_permit` |
//! | `redis_patterns_lock_wait_seconds` | histogram | `name`, `kind` | the same, from the first attempt to the grant or give-up |
//! | `redis_patterns_lock_attempts` | histogram | `name`, `kind` | the same: attempts it took |
//! | `redis_patterns_lock_hold_seconds` | histogram | `name`, `kind` | a lease released, dropped or lost: time since its grant |
//! | `redis_patterns_lock_lost_total` | counter | `name`, `kind` | a lease found lost (renewal refused, deadline passed, release refused) |
//! | `redis_patterns_lock_renewals_total` | counter | `name`, `kind`, `result` | every renewal, by the watchdog or `extend` |
//! | `redis_patterns_lock_quorum_failures_total` | counter | `name` | a Redlock attempt no majority agreed on |
//! | `redis_patterns_lock_permits_in_use` | gauge | `name` | semaphore permits this process holds |

use std::{fmt, sync::Arc};

use redis_core::{
    Redis,
    metrics::{Counter, Description, Gauge, Histogram, Kind as MetricKind},
};

use crate::error::{Error, Result};

/// The name a lock, Redlock or semaphore carries in its metrics and spans unless its builder is
/// given one.
pub(crate) const DEFAULT_NAME: &str = "default";

/// The metrics this crate records (with the `metrics` feature), for
/// [`redis_core::metrics::describe`].
pub const METRICS: &[Description] = &[
    Description {
        name: "redis_patterns_lock_acquisitions_total",
        kind: MetricKind::Counter,
        labels: &["name", "kind", "outcome"],
        help: "Lease acquisitions (acquire, try_acquire, with_lock), by kind and outcome: acquired, timeout (still held when the wait ran out, or at the one attempt of try_acquire) or error.",
    },
    Description {
        name: "redis_patterns_lock_wait_seconds",
        kind: MetricKind::Histogram,
        labels: &["name", "kind"],
        help: "Time from the first attempt of an acquisition to the grant or give-up.",
    },
    Description {
        name: "redis_patterns_lock_attempts",
        kind: MetricKind::Histogram,
        labels: &["name", "kind"],
        help: "Attempts per acquisition.",
    },
    Description {
        name: "redis_patterns_lock_hold_seconds",
        kind: MetricKind::Histogram,
        labels: &["name", "kind"],
        help: "Time a lease was held: from its grant to its release, drop or loss.",
    },
    Description {
        name: "redis_patterns_lock_lost_total",
        kind: MetricKind::Counter,
        labels: &["name", "kind"],
        help: "Leases lost while held: renewal refused or failing until the deadline, deadline passed, or release refused.",
    },
    Description {
        name: "redis_patterns_lock_renewals_total",
        kind: MetricKind::Counter,
        labels: &["name", "kind", "result"],
        help: "Lease renewals (watchdog and manual extend), by result: ok or failed.",
    },
    Description {
        name: "redis_patterns_lock_quorum_failures_total",
        kind: MetricKind::Counter,
        labels: &["name"],
        help: "Redlock attempts no majority agreed on (neither granted nor held by a majority, or the fence raised on too few instances).",
    },
    Description {
        name: "redis_patterns_lock_permits_in_use",
        kind: MetricKind::Gauge,
        labels: &["name"],
        help: "Semaphore permits this process holds.",
    },
];

/// Which primitive handed a lease out: the `kind` label and span field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseKind {
    Lock,
    Semaphore,
    Redlock,
}

impl LeaseKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::Semaphore => "semaphore",
            Self::Redlock => "redlock",
        }
    }
}

/// How an acquisition ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Acquired = 0,
    Timeout = 1,
    Error = 2,
}

impl Outcome {
    const ALL: [Self; 3] = [Self::Acquired, Self::Timeout, Self::Error];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Acquired => "acquired",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }

    /// The outcome of an acquisition that ended with `result` (`Ok(None)`: held at the one attempt).
    pub(crate) fn of<T>(result: &Result<Option<T>>) -> Self {
        match result {
            Ok(Some(_)) => Self::Acquired,
            Ok(None) | Err(Error::Timeout(_)) => Self::Timeout,
            Err(_) => Self::Error,
        }
    }
}

/// Checks a name given to a builder: 1 to 64 characters of `[A-Za-z0-9_.-]`.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    redis_core::metrics::check_name(name).map_err(Error::invalid_config)
}

/// The handles of one lock, Redlock or semaphore, registered once when it is built, with its name
/// and kind for spans. Guards share it with their primitive.
pub(crate) struct Metrics {
    pub(crate) name: Arc<str>,
    pub(crate) kind: LeaseKind,
    /// Where spans say the primitive talks to (the first instance of a Redlock); `None` only in
    /// unit-test fixtures, which then make no spans.
    redis: Option<Redis>,
    acquisitions: [Counter; 3],
    wait: Histogram,
    attempts: Histogram,
    hold: Histogram,
    lost: Counter,
    /// `[ok, failed]`.
    renewals: [Counter; 2],
    /// Redlock only; an empty handle otherwise.
    quorum_failures: Counter,
    /// Semaphore only; an empty handle otherwise.
    permits_in_use: Gauge,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers the handles of a primitive of `kind` named `name` talking to `redis`.
    pub(crate) fn register(name: &str, kind: LeaseKind, redis: Option<Redis>) -> Arc<Self> {
        let by_kind = [("name", name), ("kind", kind.as_str())];
        let only_name = [("name", name)];
        let renewal = |result: &'static str| {
            Counter::new(
                "redis_patterns_lock_renewals_total",
                &[by_kind[0], by_kind[1], ("result", result)],
            )
        };
        Arc::new(Self {
            name: name.into(),
            kind,
            redis,
            acquisitions: Outcome::ALL.map(|outcome| {
                Counter::new(
                    "redis_patterns_lock_acquisitions_total",
                    &[by_kind[0], by_kind[1], ("outcome", outcome.as_str())],
                )
            }),
            wait: Histogram::new("redis_patterns_lock_wait_seconds", &by_kind),
            attempts: Histogram::new("redis_patterns_lock_attempts", &by_kind),
            hold: Histogram::new("redis_patterns_lock_hold_seconds", &by_kind),
            lost: Counter::new("redis_patterns_lock_lost_total", &by_kind),
            renewals: [renewal("ok"), renewal("failed")],
            quorum_failures: if kind == LeaseKind::Redlock {
                Counter::new("redis_patterns_lock_quorum_failures_total", &only_name)
            } else {
                Counter::default()
            },
            permits_in_use: if kind == LeaseKind::Semaphore {
                Gauge::new("redis_patterns_lock_permits_in_use", &only_name)
            } else {
                Gauge::default()
            },
        })
    }

    /// The Redis spans of this primitive name as their server, if any.
    pub(crate) fn redis(&self) -> Option<&Redis> {
        self.redis.as_ref()
    }

    /// One acquisition ended with `outcome` after `attempts` attempts over `waited`.
    pub(crate) fn acquisition(&self, outcome: Outcome, attempts: u32, waited: std::time::Duration) {
        self.acquisitions[outcome as usize].increment(1);
        if attempts > 0 {
            self.attempts.record(f64::from(attempts));
            self.wait.record_duration(waited);
        }
    }

    /// A lease was granted to this process.
    pub(crate) fn granted(&self) {
        self.permits_in_use.increment(1.0);
    }

    /// A lease stopped being held after `held`; `lost` when it was lost rather than given back.
    /// Called once per lease.
    pub(crate) fn ended(&self, held: std::time::Duration, lost: bool) {
        self.hold.record_duration(held);
        if lost {
            self.lost.increment(1);
        }
        self.permits_in_use.decrement(1.0);
    }

    /// One renewal, kept or not.
    pub(crate) fn renewal(&self, ok: bool) {
        self.renewals[usize::from(!ok)].increment(1);
    }

    /// A Redlock attempt no majority agreed on.
    pub(crate) fn quorum_failure(&self) {
        self.quorum_failures.increment(1);
    }
}

/// A span for the public operation `$op` of the primitive whose [`Metrics`] are `$metrics`, with
/// its `name` and `kind`, and `$fields` (recorded later); a disabled span when there is no Redis to
/// name (unit-test fixtures).
macro_rules! lease_span {
    ($metrics:expr, $op:literal $(, $($fields:tt)*)?) => {{
        let metrics: &$crate::metrics::Metrics = &$metrics;
        match metrics.redis() {
            Some(redis) => redis_core::operation_span!(
                redis,
                $op,
                name = %metrics.name,
                kind = metrics.kind.as_str()
                $(, $($fields)*)?
            ),
            None => tracing::Span::none(),
        }
    }};
}
pub(crate) use lease_span;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_plain() {
        for ok in ["default", "a", "billing.ledger-7_x", &"n".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "with space", "key:{42}", "é", &"n".repeat(65)] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidConfig(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn outcomes_follow_the_result() {
        assert_eq!(Outcome::of(&Ok(Some(()))), Outcome::Acquired);
        assert_eq!(Outcome::of::<()>(&Ok(None)), Outcome::Timeout);
        let waited = Error::Timeout(std::time::Duration::from_secs(1));
        assert_eq!(Outcome::of::<()>(&Err(waited)), Outcome::Timeout);
        let lost = Error::lost("r");
        assert_eq!(Outcome::of::<()>(&Err(lost)), Outcome::Error);
    }
}
