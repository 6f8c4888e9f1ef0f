//! The error type of `redis-patterns-lock`.

use std::time::Duration;

use redis_core::ErrorPredicates;

/// `Result` with [`enum@Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while taking, keeping or giving back a lease.
///
/// A lock that is simply held by someone else is not an error: `try_acquire` returns `Ok(None)`.
/// [`Error::Timeout`] is what [`acquire`](crate::Lock::acquire) reports when it waited its whole
/// budget. Ask [`ErrorPredicates`] (`is_timeout`, `is_retryable`, ...) to decide on a retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Redis command failed, a key could not be built, the connection was lost, or a script
    /// answered with a reply of a shape it never sends (a foreign key in the lock's place).
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

    /// A lock built with [`replica_ack`](crate::LockBuilder::replica_ack) was granted, but no
    /// replica acknowledged the grant within the time-out; the grant was given back. Retryable:
    /// `acquire` tries again until its wait runs out.
    #[error("no replica acknowledged the grant on {resource:?} within {timeout:?}")]
    NotReplicated {
        /// The resource whose grant was given back.
        resource: String,
        /// How long the grant waited for a replica.
        timeout: Duration,
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
}

impl Error {
    /// True when a lease was lost (expired, taken over, or deleted).
    pub fn is_lost(&self) -> bool {
        matches!(self, Self::Lost { .. })
    }

    pub(crate) fn invalid_config(message: impl Into<String>) -> Self {
        Self::InvalidConfig(message.into())
    }

    pub(crate) fn lost(resource: &str) -> Self {
        Self::Lost {
            resource: resource.to_owned(),
        }
    }

    /// A script reply of a shape the script never sends.
    pub(crate) fn unexpected_reply(detail: impl Into<String>) -> Self {
        Self::Core(redis_core::Error::UnexpectedReply(detail.into()))
    }
}

impl ErrorPredicates for Error {
    fn core_error(&self) -> Option<&redis_core::Error> {
        match self {
            Self::Core(e) => Some(e),
            _ => None,
        }
    }

    /// True for time-outs: an `acquire` that waited its budget, or a command that timed out.
    fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_)) || self.core_error().is_some_and(|e| e.is_timeout())
    }

    /// True when trying again later may succeed: connection loss, time-outs, transient server
    /// states, a missed Redlock quorum, a grant no replica acknowledged, and a resource that
    /// stayed held.
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_) | Self::NoQuorum { .. } | Self::NotReplicated { .. }
        ) || self.core_error().is_some_and(|e| e.is_retryable())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_answer_for_the_crates_own_variants_and_defer_to_core() {
        let waited = Error::Timeout(Duration::from_secs(1));
        assert!(waited.is_timeout() && waited.is_retryable() && !waited.is_lost());
        let quorum = Error::NoQuorum {
            granted: 1,
            failed: 2,
            needed: 2,
        };
        assert!(quorum.is_retryable() && !quorum.is_timeout());
        let unreplicated = Error::NotReplicated {
            resource: "r".into(),
            timeout: Duration::from_millis(5),
        };
        assert!(unreplicated.is_retryable() && !unreplicated.is_timeout());
        let lost = Error::lost("r");
        assert!(lost.is_lost() && !lost.is_retryable() && !lost.is_timeout());
        assert!(!Error::invalid_config("x").is_retryable());
        let core = Error::Core(redis_core::Error::Timeout(Duration::from_secs(1)));
        assert!(core.is_timeout() && core.is_retryable());
        assert!(matches!(
            Error::unexpected_reply("x"),
            Error::Core(redis_core::Error::UnexpectedReply(_))
        ));
    }
}
