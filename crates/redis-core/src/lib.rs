//! The shared foundation of the `redis-patterns` crates.
//!
//! Depend on it directly only to build a pattern of your own or to share one connection between
//! several pattern crates; the pattern crates re-export what their users need. It changes rarely.
//!
//! - [`Redis`]: the handle every pattern takes. One shared multiplexed connection for the hot
//!   path, a bounded pool of [`DedicatedConnection`]s for blocking work, over one server, a
//!   Redis Cluster or a Sentinel-managed master ([`Config`]), or a [`Backend`] of your own.
//! - [`KeySpace`] and [`Key`]: `<prefix>:<pattern>:{<name>}` keys whose hash tag keeps a key and
//!   its companions on one cluster slot, with typed errors for empty and oversized keys.
//! - [`Script`]: Lua with `EVALSHA` and load-on-`NOSCRIPT`, routed by key on a cluster, with a
//!   client-side cross-slot check.
//! - [`codec`]: serde codecs ([`codec::Json`] by default, `MsgPack` with the `msgpack` feature).
//! - [`server_time`]: the server's clock.
//! - [`enum@Error`]: one error type with predicates ([`Error::is_retryable`], ...).
//!
//! # Quick start
//!
//! ```no_run
//! use redis_core::{Config, KeySpace, Redis};
//!
//! # async fn demo() -> redis_core::Result<()> {
//! let redis = Redis::connect(&Config::from_url("redis://127.0.0.1:6379")?).await?;
//! let keys = KeySpace::new("myapp")?.pattern("visits")?;
//! let key = keys.key("home")?;
//! let visits: i64 = redis.query(redis::cmd("INCR").arg(&key)).await?;
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! | feature   | what it adds |
//! |-----------|--------------|
//! | `msgpack` | the [`codec::MsgPack`] codec (rmp-serde) |
//! | `tls`     | `rediss://` URLs over rustls (ring provider) |
//!
//! # Guarantees and caveats
//!
//! - Commands on the shared connection are pipelined; a command that blocks the server (`BLPOP`,
//!   `XREADGROUP BLOCK`) must use [`Redis::dedicated`] or it stalls every other caller.
//! - Nothing is retried behind your back: a failed command is an error, and the connection
//!   reconnects in the background (standalone, cluster) or re-asks the sentinels (Sentinel).
//!   [`Error::is_retryable`] says when trying again makes sense.
//! - Scripts refuse keys on different slots on every topology, so code that passes on one
//!   server also passes on a cluster.
//!
//! MSRV: 1.89.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod codec;
pub mod config;
mod connection;
pub mod error;
pub mod keys;
pub mod script;
mod time;

pub use codec::Codec;
pub use config::{Config, ConfigBuilder, PoolConfig, Topology, TopologyKind};
pub use connection::{Backend, DedicatedConnection, Endpoint, Redis};
pub use error::{BoxError, Error, KeyError, Result};
pub use keys::{Key, KeySpace};
/// The redis-rs crate this workspace is built on, re-exported so users never juggle two versions.
pub use redis;
pub use script::{Script, ScriptCall};
pub use time::server_time;
