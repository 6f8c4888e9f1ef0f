//! The error type of `redis-patterns-session`.

/// `Result` with [`enum@Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `redis-patterns-session`.
///
/// A missing, expired, revoked, tampered or malformed session id is **not** an error: loads return
/// `Ok(None)` and updates return `Ok(false)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Redis, key or codec failure from `redis-patterns-core`.
    #[error(transparent)]
    Core(#[from] redis_core::Error),

    /// The store configuration was rejected by `build()`.
    #[error("invalid session configuration: {0}")]
    InvalidConfig(String),

    /// A field name is empty or starts with `__`, which is reserved for the store's own metadata.
    #[error("invalid field name {0:?}: names must be non-empty and may not start with \"__\"")]
    InvalidField(String),

    /// Session data did not serialize to a map (a struct or a map with string keys).
    #[error("session data must serialize to a map of fields, got {0}")]
    NotAMap(&'static str),
}

impl Error {
    /// A rejected store setting.
    pub(crate) fn invalid_config(msg: impl Into<String>) -> Self {
        Self::InvalidConfig(msg.into())
    }

    /// A reply of Redis that the store cannot read.
    pub(crate) fn unexpected_reply(what: &str) -> Self {
        Self::Core(redis_core::Error::UnexpectedReply(what.to_owned()))
    }
}

/// `is_timeout`, `is_connection_error`, `is_retryable`, `is_auth_error` and `is_decode_error`
/// answer for the wrapped core error; the store's own variants are none of these.
impl redis_core::ErrorPredicates for Error {
    fn core_error(&self) -> Option<&redis_core::Error> {
        match self {
            Self::Core(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use redis_core::ErrorPredicates as _;

    use super::*;

    #[test]
    fn predicates_answer_for_the_core_error_and_never_for_the_stores_own() {
        let timeout = Error::from(redis_core::Error::Timeout(Duration::from_millis(5)));
        assert!(timeout.is_timeout() && timeout.is_retryable());
        let decode = Error::from(redis_core::Error::Decode("bad".into()));
        assert!(decode.is_decode_error() && !decode.is_retryable());
        for own in [
            Error::invalid_config("idle timeout is below 1 ms"),
            Error::InvalidField("__user".into()),
            Error::NotAMap("a number"),
        ] {
            assert!(own.core_error().is_none());
            assert!(!own.is_timeout() && !own.is_retryable() && !own.is_connection_error());
            assert!(!own.is_auth_error() && !own.is_decode_error());
        }
    }
}
