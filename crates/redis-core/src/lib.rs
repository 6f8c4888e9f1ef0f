#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod background;
mod backoff;
pub mod codec;
pub mod config;
mod connection;
pub mod error;
pub mod keys;
pub mod script;
mod time;
mod token;

pub use background::release_in_background;
pub use backoff::Backoff;
pub use codec::Codec;
pub use config::{Config, ConfigBuilder, PoolConfig, Topology, TopologyKind};
pub use connection::{
    Backend, DedicatedConnection, Endpoint, NodeAddr, Redis, cluster_masters, connect_with_pushes,
    parse_cluster_masters,
};
pub use error::{BoxError, Error, ErrorPredicates, KeyError, Result};
pub use keys::{Key, KeySpace};
/// The redis-rs crate this workspace is built on, re-exported so users never juggle two versions.
pub use redis;
pub use script::{Script, ScriptCall};
pub use time::{duration_millis, server_time};
pub use token::random_token;
