//! The error type of `redis-patterns-ratelimit`.

use redis_core::ErrorPredicates;

/// `Result` with [`enum@Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `redis-patterns-ratelimit`.
///
/// A denied check is not an error: it is a [`crate::Decision`] that says so. Ask the
/// [`ErrorPredicates`] (`is_retryable`, `is_timeout`, ...) what to do about one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis (or building a key) failed, or a script answered with a reply of an unexpected
    /// shape ([`redis_core::Error::UnexpectedReply`]).
    #[error(transparent)]
    Core(#[from] redis_core::Error),

    /// The configuration was rejected by `build()` (a zero limit, period, rate or burst, ...).
    #[error("invalid rate limit configuration: {0}")]
    InvalidConfig(String),

    /// A call was given an argument no limiter accepts (a cost of zero).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

impl Error {
    /// Builds an [`Error::InvalidConfig`].
    pub(crate) fn invalid_config(message: impl Into<String>) -> Self {
        Self::InvalidConfig(message.into())
    }

    /// A script reply that is not what the script promises.
    pub(crate) fn unexpected_reply(reply: &impl std::fmt::Debug) -> Self {
        Self::Core(redis_core::Error::UnexpectedReply(format!(
            "rate limit script answered {reply:?}"
        )))
    }
}

impl ErrorPredicates for Error {
    fn core_error(&self) -> Option<&redis_core::Error> {
        match self {
            Self::Core(e) => Some(e),
            Self::InvalidConfig(_) | Self::InvalidArgument(_) => None,
        }
    }

    /// True when a reply could not be decoded, including a script reply of an unexpected shape.
    fn is_decode_error(&self) -> bool {
        self.core_error().is_some_and(|e| {
            e.is_decode_error() || matches!(e, redis_core::Error::UnexpectedReply(_))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unexpected_reply_counts_as_a_decode_error_and_is_not_retried() {
        let e = Error::unexpected_reply(&[7_i64, 0]);
        assert!(e.is_decode_error());
        assert!(!e.is_retryable() && !e.is_timeout() && !e.is_connection_error());
        assert!(matches!(
            e,
            Error::Core(redis_core::Error::UnexpectedReply(_))
        ));
        let config = Error::invalid_config("zero");
        assert!(!config.is_decode_error() && !config.is_retryable());
    }
}
