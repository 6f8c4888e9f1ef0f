#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod concurrency;
pub mod decision;
pub mod error;
pub mod limit;
mod limiter;
mod local;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

pub use concurrency::{
    Acquired, ConcurrencyLimiter, ConcurrencyLimiterBuilder, Permit, concurrency_scripts,
};
pub use decision::{Decision, Outcome, Source};
pub use error::{Error, Result};
pub use limit::{Algorithm, Limit};
pub use limiter::{FailurePolicy, RateLimiter, RateLimiterBuilder, script};
/// The foundation crate, re-exported: [`redis_core::Redis`], [`redis_core::KeySpace`], ...
pub use redis_core;
