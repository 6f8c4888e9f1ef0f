//! What the limiters record through [`redis_core::metrics`] (behind the `metrics` feature), and
//! the `name` every limiter carries into its labels and spans.
//!
//! Handles are registered once, when a limiter is built; a check only picks the handle of its
//! `(outcome, source)` by index and increments it. A check's latency is core's
//! `redis_patterns_core_script_duration_seconds` of its algorithm's script (`ratelimit_gcra`,
//! ...): recording it twice would cost every check a second clock read and histogram sample.
//!
//! | name | kind | labels | recorded by |
//! |---|---|---|---|
//! | `redis_patterns_ratelimit_decisions_total` | counter | `name`, `algorithm`, `outcome`, `source` | every decision of a check |
//! | `redis_patterns_ratelimit_fallback_activations_total` | counter | `name` | a check decided by the failure policy because Redis failed |
//! | `redis_patterns_ratelimit_concurrency_acquisitions_total` | counter | `name`, `outcome` | every concurrency acquisition Redis answered |
//! | `redis_patterns_ratelimit_concurrency_in_flight` | gauge | `name` | permits this process holds |

use std::sync::Arc;

use redis_core::metrics::{Counter, Description, Gauge, Kind};

use crate::{
    decision::{Decision, Outcome, Source},
    error::{Error, Result},
};

/// The metrics of `redis-patterns-ratelimit`, as documented: give them to
/// [`redis_core::metrics::describe`] for the exporter's help texts.
pub const METRICS: &[Description] = &[
    Description {
        name: DECISIONS,
        kind: Kind::Counter,
        labels: &["name", "algorithm", "outcome", "source"],
        help: "Rate limit decisions, by outcome (allowed, denied) and source (redis, block_cache, \
               fallback, local).",
    },
    Description {
        name: FALLBACK_ACTIVATIONS,
        kind: Kind::Counter,
        labels: &["name"],
        help: "Checks decided by the failure policy because Redis failed.",
    },
    Description {
        name: CONCURRENCY_ACQUISITIONS,
        kind: Kind::Counter,
        labels: &["name", "outcome"],
        help: "Concurrency permit acquisitions, by outcome (acquired, rejected).",
    },
    Description {
        name: CONCURRENCY_IN_FLIGHT,
        kind: Kind::Gauge,
        labels: &["name"],
        help: "Concurrency permits this process holds.",
    },
];

const DECISIONS: &str = "redis_patterns_ratelimit_decisions_total";
const FALLBACK_ACTIVATIONS: &str = "redis_patterns_ratelimit_fallback_activations_total";
const CONCURRENCY_ACQUISITIONS: &str = "redis_patterns_ratelimit_concurrency_acquisitions_total";
const CONCURRENCY_IN_FLIGHT: &str = "redis_patterns_ratelimit_concurrency_in_flight";

/// The `name` of a limiter that was given none.
pub(crate) const DEFAULT_NAME: &str = "default";

/// Checks a limiter's `name`: 1 to 64 characters of `[A-Za-z0-9_.-]`.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    redis_core::metrics::check_name(name).map_err(Error::invalid_config)
}

/// The `outcome` labels of decisions, by index.
const OUTCOMES: [&str; 2] = ["allowed", "denied"];
/// The `source` labels of decisions, by index.
const SOURCES: [&str; 4] = ["redis", "block_cache", "fallback", "local"];

/// The `outcome` field of a span: `allowed`, `denied` or `exceeds_capacity`.
pub(crate) fn outcome_field(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Allowed => "allowed",
        Outcome::Denied => "denied",
        Outcome::ExceedsCapacity => "exceeds_capacity",
    }
}

/// The `source` field of a span: `redis`, `block_cache`, `local`, `fail_open`, `fail_closed` or
/// `fallback`.
pub(crate) fn source_field(source: Source) -> &'static str {
    match source {
        Source::Redis => "redis",
        Source::BlockCache => "block_cache",
        Source::Local => "local",
        Source::FailOpen => "fail_open",
        Source::FailClosed => "fail_closed",
        Source::Fallback => "fallback",
    }
}

/// The indexes of a decision's `outcome` and `source` labels: a cost above the capacity counts
/// as `denied` from `local`; fail-open and fail-closed decisions, like the fallback limiter's,
/// come from `fallback`.
#[inline]
fn index(decision: &Decision) -> (usize, usize) {
    let outcome = match decision.outcome() {
        Outcome::Allowed => 0,
        Outcome::Denied | Outcome::ExceedsCapacity => 1,
    };
    let source = match decision.source() {
        Source::Redis => 0,
        Source::BlockCache => 1,
        Source::Fallback | Source::FailOpen | Source::FailClosed => 2,
        Source::Local => 3,
    };
    (outcome, source)
}

/// The handles of one [`RateLimiter`](crate::RateLimiter).
#[derive(Debug)]
pub(crate) struct LimiterMetrics {
    /// By `outcome * SOURCES.len() + source`.
    decisions: [Counter; 8],
    fallback: Counter,
}

impl LimiterMetrics {
    /// `algorithm` is the label: an [`Algorithm::name`], or `multi`.
    pub(crate) fn new(name: &str, algorithm: &str) -> Arc<Self> {
        let decisions = std::array::from_fn(|i| {
            Counter::new(
                DECISIONS,
                &[
                    ("name", name),
                    ("algorithm", algorithm),
                    ("outcome", OUTCOMES[i / SOURCES.len()]),
                    ("source", SOURCES[i % SOURCES.len()]),
                ],
            )
        });
        Arc::new(Self {
            decisions,
            fallback: Counter::new(FALLBACK_ACTIVATIONS, &[("name", name)]),
        })
    }

    /// Counts one decision.
    #[inline]
    pub(crate) fn decision(&self, decision: &Decision) {
        let (outcome, source) = index(decision);
        self.decisions[outcome * SOURCES.len() + source].increment(1);
    }

    /// Counts a check the failure policy decided.
    #[inline]
    pub(crate) fn fallback(&self) {
        self.fallback.increment(1);
    }
}

/// The handles of one [`ConcurrencyLimiter`](crate::ConcurrencyLimiter).
#[derive(Debug)]
pub(crate) struct ConcurrencyMetrics {
    /// `acquired`, `rejected`.
    acquisitions: [Counter; 2],
    /// Shared with the permits, which give their slot back on release or drop.
    pub(crate) in_flight: Gauge,
}

impl ConcurrencyMetrics {
    pub(crate) fn new(name: &str) -> Arc<Self> {
        let acquisitions = ["acquired", "rejected"].map(|outcome| {
            Counter::new(
                CONCURRENCY_ACQUISITIONS,
                &[("name", name), ("outcome", outcome)],
            )
        });
        Arc::new(Self {
            acquisitions,
            in_flight: Gauge::new(CONCURRENCY_IN_FLIGHT, &[("name", name)]),
        })
    }

    /// Counts an acquisition Redis answered; a granted one holds a permit from now on.
    #[inline]
    pub(crate) fn acquisition(&self, granted: bool) {
        self.acquisitions[usize::from(!granted)].increment(1);
        if granted {
            self.in_flight.increment(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::limit::Algorithm;

    #[test]
    fn names_are_validated() {
        for ok in ["default", "api.v2", "login-form_1", &"a".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "user:42", "a b", "é", &"a".repeat(65)] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidConfig(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_decision_has_a_documented_label_pair() {
        let labels = |d: &Decision| {
            let (outcome, source) = index(d);
            (OUTCOMES[outcome], SOURCES[source])
        };
        let sec = Duration::from_secs(1);
        let allowed = Decision::allowed(1, 0, sec);
        let denied = Decision::denied(1, 0, sec, sec);
        assert_eq!(labels(&allowed), ("allowed", "local"));
        assert_eq!(
            labels(&denied.with_source(Source::Redis)),
            ("denied", "redis")
        );
        assert_eq!(
            labels(&denied.with_source(Source::BlockCache)),
            ("denied", "block_cache")
        );
        assert_eq!(
            labels(&allowed.with_source(Source::FailOpen)),
            ("allowed", "fallback")
        );
        assert_eq!(
            labels(&denied.with_source(Source::FailClosed)),
            ("denied", "fallback")
        );
        assert_eq!(labels(&Decision::exceeds_capacity(1)), ("denied", "local"));
        assert_eq!(outcome_field(Outcome::ExceedsCapacity), "exceeds_capacity");
        assert_eq!(source_field(Source::FailOpen), "fail_open");
        let metrics = LimiterMetrics::new("default", Algorithm::Gcra.name());
        metrics.decision(&allowed);
        metrics.fallback();
        ConcurrencyMetrics::new("default").acquisition(true);
    }
}
