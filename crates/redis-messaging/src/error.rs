//! The error type of `redis-messaging`.

/// `Result` with [`enum@Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `redis-messaging`.
///
/// Expected outcomes are not errors: a message that does not decode is an
/// [`Event::Undecodable`](crate::Event::Undecodable) on a subscription and a dead-lettered entry
/// on a stream; a lost connection is an [`Event::Gap`](crate::Event::Gap).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A connection, command, key or codec failure reported by `redis-core`.
    #[error(transparent)]
    Core(#[from] redis_core::Error),

    /// A builder was given a value it cannot work with (zero batch size, empty group name, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// The deployment cannot do what was asked (sharded channels need a Redis Cluster endpoint).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

impl Error {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::InvalidConfig(message.into())
    }

    /// The `redis-core` error inside, if any.
    pub fn core(&self) -> Option<&redis_core::Error> {
        match self {
            Self::Core(e) => Some(e),
            _ => None,
        }
    }

    /// True for time-outs (see [`redis_core::Error::is_timeout`]).
    pub fn is_timeout(&self) -> bool {
        self.core().is_some_and(redis_core::Error::is_timeout)
    }

    /// True when the connection failed or was lost (see [`redis_core::Error::is_connection_error`]).
    pub fn is_connection_error(&self) -> bool {
        self.core()
            .is_some_and(redis_core::Error::is_connection_error)
    }

    /// True when trying again later may succeed (see [`redis_core::Error::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.core().is_some_and(redis_core::Error::is_retryable)
    }

    /// True when a payload did not decode (see [`redis_core::Error::is_decode_error`]).
    pub fn is_decode_error(&self) -> bool {
        self.core().is_some_and(redis_core::Error::is_decode_error)
    }

    /// True when the server rejected the credentials.
    pub fn is_auth_error(&self) -> bool {
        self.core().is_some_and(redis_core::Error::is_auth_error)
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Self::Core(e.into())
    }
}
