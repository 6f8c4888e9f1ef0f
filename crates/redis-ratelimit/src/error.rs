//! The error type of `redis-ratelimit`.

/// `Result` with [`enum@Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `redis-ratelimit`.
///
/// A denied check is not an error: it is a [`crate::Decision`] that says so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis (or building a key) failed; see [`redis_core::Error`]'s predicates for what to do.
    #[error(transparent)]
    Core(#[from] redis_core::Error),

    /// The configuration was rejected by `build()` (a zero limit, period, rate or burst, ...).
    #[error("invalid rate limit configuration: {0}")]
    InvalidConfig(String),

    /// A call was given an argument no limiter accepts (a cost of zero).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),

    /// A script answered with a reply of an unexpected shape.
    #[error("unexpected reply from a rate limit script: {0}")]
    UnexpectedReply(String),
}

impl Error {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::InvalidConfig(message.into())
    }

    /// True for time-outs talking to Redis.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Core(e) if e.is_timeout())
    }

    /// True when the connection to Redis failed or was lost.
    pub fn is_connection_error(&self) -> bool {
        matches!(self, Self::Core(e) if e.is_connection_error())
    }

    /// True when trying again later may succeed (connection loss, time-outs, transient server states).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Core(e) if e.is_retryable())
    }

    /// True when Redis rejected the credentials.
    pub fn is_auth_error(&self) -> bool {
        matches!(self, Self::Core(e) if e.is_auth_error())
    }

    /// True when a reply could not be decoded.
    pub fn is_decode_error(&self) -> bool {
        matches!(self, Self::Core(e) if e.is_decode_error())
            || matches!(self, Self::UnexpectedReply(_))
    }
}
