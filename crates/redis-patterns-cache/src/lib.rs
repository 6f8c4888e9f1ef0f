#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cache;
mod config;
mod engine;
mod entry;
mod error;
mod flight;
mod lease;
mod metrics;
mod near;
mod preflight;
mod scripts;

pub use cache::{Cache, CacheBuilder};
pub use config::{
    EntryOptions, FailurePolicy, MAX_TAGS, MAX_TTL, NearCacheConfig, RandomSource, WriteMode,
};
pub use entry::{jittered_ttl, xfetch_due};
pub use error::{Error, LoadError, Result};
pub use metrics::METRICS;
pub use near::NearCacheStats;
pub use preflight::{NEAR_CACHE_REQUIREMENTS, REQUIREMENTS, preflight};
pub use redis_core;
pub use redis_core::ErrorPredicates;
