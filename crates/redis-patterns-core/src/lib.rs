#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod audit;
mod background;
mod backoff;
pub mod codec;
pub mod config;
mod connection;
pub mod doctor;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod script;
mod time;
mod token;
mod version;

pub use background::release_in_background;
pub use backoff::Backoff;
pub use codec::Codec;
pub use config::{Config, ConfigBuilder, PoolConfig, Topology, TopologyKind};
pub use connection::{
    Backend, CLUSTER_POLL, DedicatedConnection, Endpoint, MIGRATION_WAIT, NodeAddr, Redis,
    TopologyBackoff, TopologyWatch, cluster_masters, command, connect_with_pushes,
    parse_cluster_masters,
};
pub use error::{BoxError, Error, ErrorPredicates, KeyError, Result};
pub use keys::{Key, KeySpace};
/// The redis-rs crate this workspace is built on, re-exported so users never juggle two versions.
pub use redis;
pub use script::{Script, ScriptCall};

#[doc(hidden)]
pub mod __private {
    pub use tracing;

    /// Whether an operation's `INFO` span can be seen by anyone: a subscriber that may want
    /// `INFO`, or, with no subscriber set, a `log` logger at `Info` or finer (tracing's `log`
    /// feature hands spans to it then). When not, [`operation_span!`](crate::operation_span)
    /// makes `Span::none()`: nothing to build, enter or record into, where a disabled span would
    /// still carry its fields and look each recorded one up by name.
    pub fn spans_seen() -> bool {
        seen_at(
            tracing::level_filters::LevelFilter::INFO,
            log::LevelFilter::Info,
        )
    }

    /// As [`spans_seen`], for a `TRACE` span (a script call's).
    pub fn trace_spans_seen() -> bool {
        seen_at(
            tracing::level_filters::LevelFilter::TRACE,
            log::LevelFilter::Trace,
        )
    }

    fn seen_at(level: tracing::level_filters::LevelFilter, log_level: log::LevelFilter) -> bool {
        use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
        STATIC_MAX_LEVEL >= level
            && (LevelFilter::current() >= level
                || (!tracing::dispatcher::has_been_set() && log::max_level() >= log_level))
    }
}

/// An `INFO` span for one public operation of a pattern, named and fielded after OpenTelemetry's
/// database conventions: `db.system.name = "redis"`, `db.operation.name`, `server.address`,
/// `server.port`, `otel.kind = "client"`, and `otel.name` (the span name exporters show). Extra
/// fields follow the operation name; record an outcome later with `Span::record`.
///
/// Never put a key, an identity, a session id or a payload in a field.
///
/// When no subscriber (and no `log` logger) could see an `INFO` span, it is `Span::none()`: free
/// to enter and to record into.
///
/// Its parent is the current span, or, given first as `parent: <span or None>`, that one (`None`:
/// a root span, as for work that each message starts on its own, whichever task runs it):
/// `operation_span!(redis, parent: None, "messaging.handle")`.
///
/// ```
/// # async fn demo(redis: redis_core::Redis) {
/// use tracing::Instrument;
///
/// let span = redis_core::operation_span!(redis, "cache.get", outcome = tracing::field::Empty);
/// async {
///     // ... the operation ...
///     tracing::Span::current().record("outcome", "hit");
/// }
/// .instrument(span)
/// .await;
/// # }
/// ```
#[macro_export]
macro_rules! operation_span {
    ($redis:expr, parent: $parent:expr, $operation:literal $(, $($fields:tt)*)?) => {{
        if $crate::__private::spans_seen() {
            let (address, port) = $crate::Redis::server_address(&$redis);
            $crate::__private::tracing::info_span!(
                parent: $parent,
                $operation,
                otel.name = $operation,
                otel.kind = "client",
                db.system.name = "redis",
                db.operation.name = $operation,
                server.address = address,
                server.port = port
                $(, $($fields)*)?
            )
        } else {
            $crate::__private::tracing::Span::none()
        }
    }};
    ($redis:expr, $operation:literal $(, $($fields:tt)*)?) => {
        $crate::operation_span!(
            $redis,
            parent: &$crate::__private::tracing::Span::current(),
            $operation
            $(, $($fields)*)?
        )
    };
}

/// Awaits `future` inside `span`, entered on each poll, or as it is when the span is
/// `Span::none()` (as [`operation_span!`] makes it when nobody could see it): then nothing wraps
/// the future, so it is built where it is awaited instead of being moved into tracing's
/// `Instrumented` first (a copy of its whole state, a kibibyte or more for a command's future,
/// on every call). Pass the call itself, not a variable holding its future; for a block, pass an
/// async closure's call (`let op = async || { .. }; in_span!(span, op())`), so that the block's
/// code is generated once rather than once per branch. `span` is borrowed.
///
/// ```
/// # async fn demo(redis: redis_core::Redis) -> redis_core::Result<()> {
/// let span = redis_core::operation_span!(redis, "cache.get", outcome = tracing::field::Empty);
/// let value: Option<String> =
///     redis_core::in_span!(span, redis.query(redis_core::redis::cmd("GET").arg("k")))?;
/// span.record("outcome", if value.is_some() { "hit" } else { "miss" });
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! in_span {
    ($span:expr, $future:expr $(,)?) => {{
        let span: &$crate::__private::tracing::Span = &$span;
        if span.is_none() {
            $future.await
        } else {
            $crate::__private::tracing::Instrument::instrument($future, span.clone()).await
        }
    }};
}

pub use time::{duration_millis, server_time};
pub use token::random_token;
pub use version::{Feature, ServerVersion};
