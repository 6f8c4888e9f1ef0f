//! The error type of `redis-lock`.

use std::time::Duration;

/// `Result` with [`enum@Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while taking, keeping or giving back a lease.
///
/// A lock that is simply held by someone else is not an error: `try_acquire` returns `Ok(None)`.
/// [`Error::Timeout`] is what [`acquire`](crate::Lock::acquire) reports when it waited its whole
/// budget.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Redis command failed, a key could not be built, or the connection was lost.
    #[error(transparent)]
    Core(#[from] redis_core::Error),

    /// The configuration or the per-call options were rejected (zero TTL, empty instance list, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// `acquire` waited as long as it was allowed to and the resource stayed taken.
    #[error("resource still held by another owner after waiting {0:?}")]
    Timeout(Duration),

    /// The lease is no longer ours: it expired, was taken over, or was deleted. Returned by
    /// `extend` and `release` on a lost lease and by `with_lock` when the work was cut short.
    #[error("lease on {resource:?} was lost")]
    Lost {
        /// The resource whose lease was lost.
        resource: String,
    },

    /// Redlock could not reach enough instances to decide: fewer than a majority answered.
    #[error("redlock quorum not reached: {granted} granted, {failed} failed, {needed} needed")]
    NoQuorum {
        /// Instances that granted the lock.
        granted: usize,
        /// Instances that failed or timed out.
        failed: usize,
        /// The quorum (a majority of instances).
        needed: usize,
    },

    /// A script returned a reply of a shape it never sends (a foreign key in the lock's place).
    #[error("unexpected reply from redis: {0}")]
    UnexpectedReply(String),
}

impl Error {
    /// True for time-outs: an `acquire` that waited its budget, or a command that timed out.
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            Self::Core(e) => e.is_timeout(),
            _ => false,
        }
    }

    /// True when the connection to a server failed or was lost.
    pub fn is_connection_error(&self) -> bool {
        match self {
            Self::Core(e) => e.is_connection_error(),
            _ => false,
        }
    }

    /// True when trying again later may succeed: connection loss, time-outs, transient server
    /// states, a missed Redlock quorum, and a resource that stayed held.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::NoQuorum { .. } => true,
            Self::Core(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// True when the server rejected the credentials.
    pub fn is_auth_error(&self) -> bool {
        matches!(self, Self::Core(e) if e.is_auth_error())
    }

    /// True when a lease was lost (expired, taken over, or deleted).
    pub fn is_lost(&self) -> bool {
        matches!(self, Self::Lost { .. })
    }

    pub(crate) fn lost(resource: &str) -> Self {
        Self::Lost {
            resource: resource.to_owned(),
        }
    }
}

impl From<redis_core::redis::RedisError> for Error {
    fn from(e: redis_core::redis::RedisError) -> Self {
        Self::Core(e.into())
    }
}

impl From<redis_core::KeyError> for Error {
    fn from(e: redis_core::KeyError) -> Self {
        Self::Core(e.into())
    }
}
