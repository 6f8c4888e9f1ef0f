//! The error type of `redis-patterns-cache`.

use std::sync::Arc;

use redis_core::ErrorPredicates;

/// A loader's error, shared between every caller that waited for the same load.
pub type LoadError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`enum@Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `redis-patterns-cache`.
///
/// A miss, a negative entry or a fenced-off fill are values, not errors. Ask a predicate of
/// [`ErrorPredicates`] ([`is_retryable`](ErrorPredicates::is_retryable), ...) to decide on a
/// retry. A corrupt cached payload is a miss too, never a decode error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis, a key or a codec failed (see [`redis_core::Error`]).
    #[error(transparent)]
    Core(#[from] redis_core::Error),

    /// A setting of the cache was rejected by [`CacheBuilder::build`](crate::CacheBuilder::build),
    /// or an entry's options cannot be stored (too many tags, a tag too long).
    #[error("invalid cache configuration: {0}")]
    InvalidConfig(String),

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

impl ErrorPredicates for Error {
    fn core_error(&self) -> Option<&redis_core::Error> {
        match self {
            Self::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl Error {
    /// Builds an [`Error::InvalidConfig`].
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::InvalidConfig(message.into())
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
            Self::InvalidConfig(m) => Some(Self::InvalidConfig(m.clone())),
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
