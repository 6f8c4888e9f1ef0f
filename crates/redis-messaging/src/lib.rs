#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod backoff;
mod consumer;
mod error;
mod idempotency;
mod producer;
mod pubsub;

pub use backoff::Backoff;
pub use consumer::{
    Consumer, ConsumerBuilder, ConsumerStats, DEAD_LETTER_SUFFIX, DeadLetter, Delivery,
    dead_letter_key, read_dead_letters, remove_idle_consumers,
};
pub use error::{Error, Result};
pub use idempotency::{Claim, Idempotency, Lease};
pub use producer::{PAYLOAD_FIELD, Producer, ProducerBuilder, Retention};
pub use pubsub::{
    DEFAULT_MAX_BACKLOG, Event, Gap, GapKind, Message, Publisher, Subscriber, SubscriberBuilder,
    Subscription, Undecodable,
};
/// The shutdown signal [`Consumer::run`] takes (re-exported from `tokio-util`).
pub use tokio_util::sync::CancellationToken;
