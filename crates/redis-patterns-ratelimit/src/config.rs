//! Settings and policies of the limiters: what a check does when Redis cannot be reached, and
//! the defaults the builders start from.

use std::time::Duration;

use crate::limit::Limit;

/// How long a concurrency permit lives unless released or extended, by default.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The `retry_after` (and `reset_after`) of a denial made without Redis: a fail-closed check,
/// or a fallback limiter that cannot decide.
pub(crate) const LOCAL_DENIAL_WAIT: Duration = Duration::from_secs(1);

/// What a check does when Redis cannot be reached (connection lost or refused, time-out,
/// `LOADING`, `CLUSTERDOWN`, ...: whatever
/// [`ErrorPredicates::is_retryable`](crate::ErrorPredicates::is_retryable) calls transient).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Return the error. The default: the caller decides.
    ReturnError,
    /// Allow the check (availability over protection). The decision's source is
    /// [`Source::FailOpen`](crate::Source::FailOpen) and it reports the full limit remaining.
    FailOpen,
    /// Deny the check (protection over availability) with a `retry_after` of one second.
    /// The decision's source is [`Source::FailClosed`](crate::Source::FailClosed).
    FailClosed,
    /// Decide with an in-process limiter of this limit, for example the limit divided by the
    /// number of application instances. Its state lives in this process only and starts empty.
    /// A cost within the limit but above this fallback's capacity is denied with a `retry_after`
    /// of one second, not [`Outcome::ExceedsCapacity`](crate::Outcome::ExceedsCapacity).
    Local(Limit),
}
