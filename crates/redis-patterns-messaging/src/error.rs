//! The error type of `redis-patterns-messaging`.

use redis_core::{ErrorPredicates, redis};

/// `Result` with [`enum@Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `redis-patterns-messaging`.
///
/// Expected outcomes are not errors: a message that does not decode is an
/// [`Event::Undecodable`](crate::Event::Undecodable) on a subscription and a dead-lettered entry
/// on a stream; a lost connection is an [`Event::Gap`](crate::Event::Gap). Ask the
/// [`ErrorPredicates`] (`is_retryable`, `is_connection_error`, ...) to decide on a retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A connection, command, key or codec failure reported by `redis-patterns-core`, a reply of an
    /// unexpected shape, or a capability the deployment lacks (sharded channels need a Redis
    /// Cluster endpoint: [`redis_core::Error::Unsupported`]).
    #[error(transparent)]
    Core(#[from] redis_core::Error),

    /// A builder was given a value it cannot work with (zero batch size, empty group name, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A call was given an argument it refuses before sending anything (a due time that cannot
    /// be represented, an empty or overlong job id, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Builds an [`Error::InvalidConfig`].
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::InvalidConfig(message.into())
    }

    /// Builds an [`Error::InvalidArgument`].
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    /// A reply of a shape the crate never expects, as core's [`redis_core::Error::UnexpectedReply`].
    pub(crate) fn unexpected_reply(message: impl Into<String>) -> Self {
        Self::Core(redis_core::Error::UnexpectedReply(message.into()))
    }

    /// The Redis error code (`NOGROUP`, `BUSYGROUP`, ...) of a server error reply, if this is one.
    pub(crate) fn code(&self) -> Option<&str> {
        self.core_error()
            .and_then(redis_core::Error::redis_error)
            .and_then(redis::RedisError::code)
    }
}

impl ErrorPredicates for Error {
    fn core_error(&self) -> Option<&redis_core::Error> {
        match self {
            Self::Core(e) => Some(e),
            Self::InvalidConfig(_) | Self::InvalidArgument(_) => None,
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Self::Core(e.into())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn predicates_answer_through_the_core_error() {
        let timeout = Error::Core(redis_core::Error::Timeout(Duration::from_secs(1)));
        assert!(timeout.is_timeout() && timeout.is_retryable());
        let config = Error::invalid_config("batch size is zero");
        assert!(!config.is_retryable() && !config.is_timeout());
        assert!(config.core_error().is_none());
        assert_eq!(
            config.to_string(),
            "invalid configuration: batch size is zero"
        );
    }
}
