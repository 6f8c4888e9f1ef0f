//! The error type of `redis-session`.

/// `Result` with [`enum@Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `redis-session`.
///
/// A missing, expired, revoked, tampered or malformed session id is **not** an error: loads return
/// `Ok(None)` and updates return `Ok(false)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Redis, key or codec failure from `redis-core`.
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
    /// True for time-outs (pool checkout, reply deadline, socket).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Core(e) if e.is_timeout())
    }

    /// True when the connection to Redis failed or was lost.
    pub fn is_connection_error(&self) -> bool {
        matches!(self, Self::Core(e) if e.is_connection_error())
    }

    /// True when trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Core(e) if e.is_retryable())
    }

    /// True when stored bytes could not be decoded into the requested type.
    pub fn is_decode_error(&self) -> bool {
        matches!(self, Self::Core(e) if e.is_decode_error())
    }

    /// True when the server rejected the credentials.
    pub fn is_auth_error(&self) -> bool {
        matches!(self, Self::Core(e) if e.is_auth_error())
    }
}
