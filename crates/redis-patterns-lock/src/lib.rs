#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod acquire;
mod config;
mod error;
mod fencing;
mod guard;
mod lease;
mod lock;
mod lock_lease;
mod metrics;
mod preflight;
mod redlock;
mod scripts;
mod semaphore;
mod state;
#[cfg(test)]
mod testing;
mod wake;
mod watchdog;

pub use acquire::WAIT_MARGIN;
pub use config::{
    AcquireOptions, DEFAULT_RETRY, DEFAULT_TTL, DEFAULT_WAIT, MIN_TTL, drift, validity,
};
pub use error::{Error, Result};
pub use fencing::{DEFAULT_HORIZON, Fencing, MIN_HORIZON};
pub use guard::{LeaseHandle, LockGuard, Permit};
pub use lock::{Lock, LockBuilder};
pub use metrics::METRICS;
pub use preflight::{REQUIREMENTS, preflight};
/// The foundation crate, re-exported for [`redis_core::Redis`], [`redis_core::KeySpace`] and
/// [`redis_core::Backoff`].
pub use redis_core;
pub use redis_core::ErrorPredicates;
pub use redlock::{DEFAULT_INSTANCE_TIMEOUT, Redlock, RedlockBuilder};
pub use semaphore::{Semaphore, SemaphoreBuilder};
