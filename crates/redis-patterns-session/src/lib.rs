#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod config;
mod error;
mod fields;
mod id;
mod layout;
mod metrics;
mod preflight;
mod scripts;
mod session;
mod store;
#[cfg(feature = "tower-sessions")]
mod tower_store;

pub use config::MIN_SECRET_LEN;
pub use error::{Error, Result};
pub use id::{ID_LEN, SessionId};
pub use metrics::METRICS;
pub use preflight::{REQUIREMENTS, preflight};
/// redis-patterns-core, re-exported so users build the [`Redis`](redis_core::Redis) handle and
/// [`KeySpace`](redis_core::KeySpace) from the same version.
pub use redis_core;
/// The error predicates (`is_timeout`, `is_connection_error`, `is_retryable`, ...) of [`Error`].
pub use redis_core::ErrorPredicates;
pub use session::{RESERVED_PREFIX, Session, SessionInfo};
pub use store::{SessionStore, SessionStoreBuilder};
#[cfg(feature = "tower-sessions")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-sessions")))]
pub use tower_store::TowerSessionStore;
