#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod block_cache;
mod concurrency;
mod config;
mod decision;
mod engine;
mod error;
mod limit;
mod limiter;
mod local;
mod metrics;
mod multi;
mod permit;
mod preflight;
mod scripts;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

pub use concurrency::{Acquired, ConcurrencyLimiter, ConcurrencyLimiterBuilder};
pub use config::FailurePolicy;
pub use decision::{
    Decision, Outcome, RATELIMIT, RATELIMIT_LIMIT, RATELIMIT_POLICY, RATELIMIT_REMAINING,
    RATELIMIT_RESET, RETRY_AFTER, Source,
};
pub use error::{Error, Result};
pub use limit::{Algorithm, Limit, MAX_LIMIT, MAX_LOG_LIMIT, MAX_PERIOD, MAX_REFILL};
pub use limiter::{RateLimiter, RateLimiterBuilder};
pub use metrics::METRICS;
pub use multi::{MultiDecision, MultiLimiter, MultiLimiterBuilder};
pub use permit::Permit;
pub use preflight::{REQUIREMENTS, preflight};
/// The foundation crate, re-exported: [`redis_core::Redis`], [`redis_core::KeySpace`], ...
pub use redis_core;
/// The questions every error answers: `is_retryable`, `is_timeout`, `is_connection_error`, ...
pub use redis_core::ErrorPredicates;
pub use scripts::{batch_script, concurrency_scripts, script};

/// Not part of the API: reached by the crate's integration tests only, may change at any time.
#[doc(hidden)]
pub mod __private {
    pub use crate::local::LocalLimiter;
}
