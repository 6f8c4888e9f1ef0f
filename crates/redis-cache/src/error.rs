//! The error type of `redis-cache`.

use std::sync::Arc;

/// A loader's error, shared between every caller that waited for the same load.
pub type LoadError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`enum@Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `redis-cache`.
///
/// A miss, a negative entry or a fenced-off fill are values, not errors. Ask a predicate
/// ([`Error::is_retryable`], ...) to decide on a retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis, a key, a codec or the configuration failed (see [`redis_core::Error`]).
    #[error(transparent)]
    Core(#[from] redis_core::Error),

    /// The loader failed and no stale value was available to serve instead.
    ///
    /// Every caller that waited for the same load gets the same error.
    #[error("loader failed: {0}")]
    Load(#[source] LoadError),

    /// The write to the source of truth in [`Cache::write_through`](crate::Cache::write_through)
    /// failed; the cache was left untouched.
    #[error("write to the source of truth failed: {0}")]
    Write(#[source] redis_core::BoxError),
}

impl Error {
    fn core(&self) -> Option<&redis_core::Error> {
        match self {
            Self::Core(e) => Some(e),
            _ => None,
        }
    }

    /// True for time-outs talking to Redis.
    pub fn is_timeout(&self) -> bool {
        self.core().is_some_and(redis_core::Error::is_timeout)
    }

    /// True when the connection to Redis failed or was lost.
    pub fn is_connection_error(&self) -> bool {
        self.core()
            .is_some_and(redis_core::Error::is_connection_error)
    }

    /// True when trying again later may succeed (connection loss, time-outs, failovers).
    pub fn is_retryable(&self) -> bool {
        self.core().is_some_and(redis_core::Error::is_retryable)
    }

    /// True when bytes could not be decoded. The cache itself never returns this for a corrupt
    /// cached payload (that is a miss); it can come from a value that does not encode back.
    pub fn is_decode_error(&self) -> bool {
        self.core().is_some_and(redis_core::Error::is_decode_error)
    }

    /// True when Redis rejected the credentials.
    pub fn is_auth_error(&self) -> bool {
        self.core().is_some_and(redis_core::Error::is_auth_error)
    }

    /// True when the loader failed.
    pub fn is_load_error(&self) -> bool {
        matches!(self, Self::Load(_))
    }

    /// A copy of this error for another caller of the same load, when one can be made without
    /// losing its meaning.
    pub(crate) fn duplicate(&self) -> Option<Self> {
        match self {
            Self::Load(e) => Some(Self::Load(e.clone())),
            Self::Core(redis_core::Error::Redis(e)) => {
                Some(Self::Core(redis_core::Error::Redis(e.clone())))
            }
            Self::Core(redis_core::Error::Timeout(d)) => {
                Some(Self::Core(redis_core::Error::Timeout(*d)))
            }
            Self::Core(redis_core::Error::PoolTimeout(d)) => {
                Some(Self::Core(redis_core::Error::PoolTimeout(*d)))
            }
            _ => None,
        }
    }
}
