//! The one error type of `redis-patterns-core`, with predicates that answer "what now?".

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// A boxed error from user code (a codec, a loader) kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`enum@Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `redis-patterns-core`.
///
/// Match on the variant when the cause matters; ask a predicate
/// ([`Error::is_retryable`], [`Error::is_connection_error`], ...) to decide on a retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was rejected before any connection was made (bad URL, zero pool size, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// A key could not be built: empty, too long, or with a forbidden character in a segment.
    #[error("invalid key: {0}")]
    InvalidKey(#[from] KeyError),

    /// The keys of one multi-key operation hash to different cluster slots.
    ///
    /// Build keys with the same hash tag ([`crate::Key::companion`], [`crate::KeySpace::tagged`])
    /// so that they land on one slot.
    /// The message names the keys and slots when the check ran before sending, or carries the
    /// server's reply when the server refused the command.
    #[error("keys of one operation map to different cluster slots: {0}")]
    CrossSlot(String),

    /// The server rejected the credentials (wrong user or password, or none given).
    #[error("authentication failed")]
    Authentication(#[source] RedisError),

    /// No pooled connection became free within the pool's connection timeout.
    #[error("timed out after {0:?} waiting for a pooled connection")]
    PoolTimeout(Duration),

    /// The operation did not finish within its deadline.
    #[error("operation timed out after {0:?}")]
    Timeout(Duration),

    /// A command failed: I/O, protocol or a server error reply.
    #[error("redis error: {0}")]
    Redis(#[source] RedisError),

    /// A value could not be serialized by a codec.
    #[error("failed to encode value")]
    Encode(#[source] BoxError),

    /// Bytes read from Redis could not be deserialized by a codec (corrupt or foreign payload).
    #[error("failed to decode value")]
    Decode(#[source] BoxError),

    /// The server answered with a reply of an unexpected shape.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),

    /// The backend does not offer this capability (for example pub/sub endpoints on a custom backend).
    #[error("unsupported by this backend: {0}")]
    Unsupported(&'static str),

    /// The server is older than a feature a pattern needs (see [`crate::Redis::require`]).
    #[error("the server (version {found}) lacks {feature}: it needs Redis {needs} or newer")]
    ServerTooOld {
        /// What is missing.
        feature: crate::Feature,
        /// The first version that has it.
        needs: crate::ServerVersion,
        /// The server's version.
        found: crate::ServerVersion,
    },

    /// The server has the feature but refused it to this client: an ACL rule, a proxy that does
    /// not pass it through (RESP3 behind some proxies), or a disabled command.
    #[error("the server refused {feature}: {detail}")]
    FeatureRefused {
        /// What was refused.
        feature: crate::Feature,
        /// The server's answer.
        detail: String,
    },
}

/// Why a key was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The name (or a prefix segment) was empty.
    #[error("empty {0}")]
    Empty(&'static str),
    /// The finished key would be longer than the key space allows.
    #[error("key is {len} bytes, the limit is {max}")]
    TooLong {
        /// Length of the key that would have been built.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A prefix or pattern segment contains a character that would break the layout.
    #[error(
        "segment {segment:?} contains {found:?}; segments may not contain '{{', '}}', ':' or whitespace"
    )]
    ForbiddenChar {
        /// The offending segment.
        segment: String,
        /// The character found.
        found: char,
    },
}

impl Error {
    /// [`Error::FeatureRefused`] for `feature` when `err` is the server refusing it: an ACL
    /// `NOPERM`, `NOPROTO` (no RESP3), or an unknown command or subcommand; any other error (a
    /// full server, a bad database index, a lost connection) converts as usual.
    pub fn refusing(feature: crate::Feature, err: RedisError) -> Self {
        let detail = err.detail().unwrap_or("").to_ascii_lowercase();
        let refused = matches!(err.code(), Some("NOPERM" | "NOPROTO"))
            || (matches!(err.code(), Some("ERR"))
                && ["unknown command", "unknown subcommand", "hello"]
                    .iter()
                    .any(|marker| detail.contains(marker)));
        if refused {
            Self::FeatureRefused {
                feature,
                detail: err.to_string(),
            }
        } else {
            Self::from(err)
        }
    }

    /// Builds an [`Error::InvalidConfig`].
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::InvalidConfig(message.into())
    }

    /// The underlying redis-rs error, if any.
    pub fn redis_error(&self) -> Option<&RedisError> {
        match self {
            Self::Redis(e) | Self::Authentication(e) => Some(e),
            _ => None,
        }
    }

    /// True for time-outs: a pool checkout, an operation deadline, or a socket time-out.
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::PoolTimeout(_) | Self::Timeout(_) => true,
            Self::Redis(e) => e.is_timeout(),
            _ => false,
        }
    }

    /// True when the connection to the server failed or was lost (refused, reset, closed, unreachable).
    pub fn is_connection_error(&self) -> bool {
        match self {
            Self::Redis(e) => is_connection_error(e),
            _ => false,
        }
    }

    /// True when the server rejected the credentials.
    pub fn is_auth_error(&self) -> bool {
        matches!(self, Self::Authentication(_))
    }

    /// True when the payload could not be decoded (corrupt or written by something else).
    pub fn is_decode_error(&self) -> bool {
        matches!(self, Self::Decode(_))
    }

    /// True when trying the same operation again later may succeed: connection loss, time-outs,
    /// and what a topology change leaves behind: `LOADING`, `TRYAGAIN`, `CLUSTERDOWN`,
    /// `MASTERDOWN`, `READONLY` (a demoted master), `UNBLOCKED` (a blocked call on a master
    /// that became a replica), a redirect the connection layer could not follow (`MOVED` or
    /// `ASK` to a node that is gone), and a transaction aborted by one of them.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::PoolTimeout(_) | Self::Timeout(_) => true,
            Self::Redis(e) => is_retryable(e),
            _ => false,
        }
    }

    /// True for a cluster redirect (`MOVED`, `ASK`) that reached the caller, alone or inside an
    /// aborted transaction. The connection layer follows redirects, so this only happens when
    /// the node they name cannot be reached; such errors are also retryable.
    pub fn is_redirect(&self) -> bool {
        self.redis_error().is_some_and(|e| {
            server_kinds(e)
                .iter()
                .any(|kind| matches!(kind, Some(ServerErrorKind::Moved | ServerErrorKind::Ask)))
        })
    }
}

/// The server error kinds in `e`: its own, or those of the commands of an aborted transaction.
fn server_kinds(e: &RedisError) -> Vec<Option<ServerErrorKind>> {
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::ExecAbort) => e
            .clone()
            .into_server_errors()
            .map(|errors| errors.iter().map(|(_, inner)| inner.kind()).collect())
            .unwrap_or_default(),
        ErrorKind::Server(kind) => vec![Some(kind)],
        _ => Vec::new(),
    }
}

/// See [`Error::is_retryable`].
fn is_retryable(e: &RedisError) -> bool {
    if is_connection_error(e)
        || e.is_timeout()
        || matches!(e.kind(), ErrorKind::MasterNameNotFoundBySentinel)
        || e.code() == Some("UNBLOCKED")
    {
        return true;
    }
    let kinds = server_kinds(e);
    !kinds.is_empty()
        && kinds.iter().all(|kind| {
            matches!(
                kind,
                Some(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                )
            )
        })
}

/// The questions every error of the workspace answers, written once.
///
/// Pattern crates wrap core's [`enum@Error`] in their own `Error`; they implement the one required
/// method, [`core_error`](Self::core_error), and override a predicate only where one of their own
/// variants answers differently (a lock's `NoQuorum` is retryable, say).
///
/// ```
/// use redis_core::{Error, ErrorPredicates};
///
/// #[derive(Debug)]
/// enum MyError {
///     Core(Error),
///     Rejected,
/// }
///
/// impl ErrorPredicates for MyError {
///     fn core_error(&self) -> Option<&Error> {
///         match self {
///             Self::Core(e) => Some(e),
///             Self::Rejected => None,
///         }
///     }
/// }
///
/// let timeout = MyError::Core(Error::Timeout(std::time::Duration::from_secs(1)));
/// assert!(timeout.is_timeout() && timeout.is_retryable());
/// assert!(!MyError::Rejected.is_retryable());
/// ```
pub trait ErrorPredicates {
    /// The core error this error wraps, if any.
    fn core_error(&self) -> Option<&Error>;

    /// True for time-outs: a pool checkout, an operation deadline, or a socket time-out.
    fn is_timeout(&self) -> bool {
        self.core_error().is_some_and(Error::is_timeout)
    }

    /// True when the connection to the server failed or was lost.
    fn is_connection_error(&self) -> bool {
        self.core_error().is_some_and(Error::is_connection_error)
    }

    /// True when trying the same operation again later may succeed.
    fn is_retryable(&self) -> bool {
        self.core_error().is_some_and(Error::is_retryable)
    }

    /// True when the server rejected the credentials.
    fn is_auth_error(&self) -> bool {
        self.core_error().is_some_and(Error::is_auth_error)
    }

    /// True when a payload could not be decoded (corrupt or written by something else).
    fn is_decode_error(&self) -> bool {
        self.core_error().is_some_and(Error::is_decode_error)
    }
}

impl ErrorPredicates for Error {
    fn core_error(&self) -> Option<&Error> {
        Some(self)
    }
}

/// True when a redis-rs error means the connection is gone or could not be made.
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound | ErrorKind::NoValidReplicasFoundBySentinel
        )
}

impl From<RedisError> for Error {
    fn from(e: RedisError) -> Self {
        if matches!(e.code(), Some("NOAUTH" | "WRONGPASS")) {
            return Self::Authentication(e);
        }
        match e.kind() {
            ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => {
                Self::Authentication(e)
            }
            ErrorKind::InvalidClientConfig => Self::InvalidConfig(e.to_string()),
            ErrorKind::Server(ServerErrorKind::CrossSlot) => {
                Self::CrossSlot(e.detail().unwrap_or("refused by the server").to_owned())
            }
            _ => Self::Redis(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(text: &str) -> Error {
        Error::from(
            redis::parse_redis_value(text.as_bytes())
                .unwrap()
                .extract_error()
                .unwrap_err(),
        )
    }

    #[test]
    fn what_a_topology_change_leaves_behind_is_retryable() {
        for text in [
            "-MOVED 3999 127.0.0.1:6381\r\n",
            "-ASK 3999 127.0.0.1:6381\r\n",
            "-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
            "-CLUSTERDOWN The cluster is down\r\n",
            "-MASTERDOWN Link with MASTER is down\r\n",
            "-READONLY You can't write against a read only replica.\r\n",
            "-LOADING Redis is loading the dataset in memory\r\n",
            "-UNBLOCKED force unblock from blocking operation, instance state changed\r\n",
        ] {
            assert!(server(text).is_retryable(), "{text}");
        }
        for text in ["-ERR syntax error\r\n", "-NOSCRIPT No matching script\r\n"] {
            assert!(!server(text).is_retryable(), "{text}");
        }
        assert!(server("-MOVED 1 127.0.0.1:7000\r\n").is_redirect());
        assert!(!server("-TRYAGAIN x\r\n").is_redirect());
        let refused = Error::from(RedisError::from(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(refused.is_retryable() && refused.is_connection_error());
    }
}
