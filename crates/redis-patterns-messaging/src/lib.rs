#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod config;
mod error;
mod metrics;
mod preflight;
mod pubsub;
mod scripts;
mod streams;
mod value;

pub use config::{DEFAULT_MAX_BACKLOG, Retention, RetryPolicy};
pub use error::{Error, Result};
pub use metrics::METRICS;
pub use preflight::{REQUIREMENTS, preflight};
pub use pubsub::{
    Event, Gap, GapKind, Message, Publisher, Subscriber, SubscriberBuilder, Subscription,
    Undecodable,
};
pub use redis_core;
/// Capped exponential backoff with jitter (re-exported from `redis-patterns-core`): what
/// [`ConsumerBuilder::reconnect_backoff`] and [`SubscriberBuilder::reconnect_backoff`] take.
pub use redis_core::Backoff;
pub use redis_core::ErrorPredicates;
pub use streams::{
    Claim, Consumer, ConsumerBuilder, ConsumerStats, DEAD_LETTER_SUFFIX, DeadLetter, Delivery,
    Idempotency, Lease, PAYLOAD_FIELD, Producer, ProducerBuilder, Schedule, Scheduled,
    dead_letter_key, read_dead_letters, remove_idle_consumers, stream_key,
};
/// The shutdown signal [`Consumer::run`] takes (re-exported from `tokio-util`).
pub use tokio_util::sync::CancellationToken;
