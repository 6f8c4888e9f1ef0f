#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod error;
mod guard;
mod lock;
pub mod options;
mod redlock;
mod semaphore;

pub use error::{Error, Result};
pub use guard::{LeaseHandle, LockGuard, Permit};
pub use lock::{Lock, LockBuilder};
pub use options::{AcquireOptions, MIN_TTL, drift, validity};
/// The foundation crate, re-exported for [`redis_core::Redis`] and [`redis_core::KeySpace`].
pub use redis_core;
pub use redlock::{DEFAULT_INSTANCE_TIMEOUT, Redlock, RedlockBuilder};
pub use semaphore::{Semaphore, SemaphoreBuilder};
