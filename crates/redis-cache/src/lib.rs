#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cache;
mod config;
mod entry;
mod error;
mod flight;
mod near;

pub use cache::Cache;
pub use config::{CacheBuilder, EntryOptions, FailurePolicy, RandomSource, WriteMode};
pub use entry::{jittered_ttl, xfetch_due};
pub use error::{Error, LoadError, Result};
pub use near::{NearCacheConfig, NearCacheStats};
/// Codecs, re-exported from `redis-core`.
pub use redis_core::codec;
pub use redis_core::{Codec, KeySpace, Redis};
