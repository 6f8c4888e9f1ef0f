#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod config;
mod error;
mod id;
mod store;
#[cfg(feature = "tower-sessions")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-sessions")))]
pub mod tower_store;

pub use config::{MIN_SECRET_LEN, SessionStoreBuilder};
pub use error::{Error, Result};
pub use id::{ID_LEN, SessionId};
/// redis-core, re-exported so users build the [`Redis`](redis_core::Redis) handle and
/// [`KeySpace`](redis_core::KeySpace) from the same version.
pub use redis_core;
pub use store::{RESERVED_PREFIX, Session, SessionInfo, SessionStore};
#[cfg(feature = "tower-sessions")]
pub use tower_store::TowerSessionStore;
