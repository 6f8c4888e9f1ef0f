//! The consumer-group runner's type: what a handler receives, the counters, and the accessors.
//! Building it is in `builder.rs`, the run loop in `run.rs`, handling entries in `handle.rs`.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use redis_core::{Codec, Key, Redis, codec::Json};
use tracing::Instrument as _;

use super::group::ensure_group;
use crate::{config::ConsumerSettings, error::Result, metrics::ConsumerMetrics};

/// One message handed to a handler.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery<T> {
    /// The stream entry id.
    pub id: String,
    /// The decoded payload.
    pub payload: T,
    /// How many times the entry has been delivered, this time included (1 on the first try),
    /// counted across the consumers of the group.
    pub attempt: u64,
    /// When the entry was first delivered: when this consumer read it, for an entry it read
    /// and retries itself; for an entry taken over from another consumer (claimed after
    /// `min_idle` or handed back), when it was added to the stream (its id's time), which is
    /// at or before its first delivery.
    pub first_delivered: SystemTime,
    /// The job id of an entry that was scheduled ([`Producer::schedule`](crate::Producer::schedule)).
    pub job_id: Option<String>,
    /// The consumer that received it.
    pub consumer: Arc<str>,
}

/// Counters of one [`Consumer`], cumulative over its runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Entries handed to the handler (new and reclaimed).
    pub delivered: u64,
    /// Entries acknowledged after the handler succeeded.
    pub acked: u64,
    /// Handler failures (errors and panics); the entry stays pending and is retried.
    pub failed: u64,
    /// Entries this consumer moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Entries this consumer reclaimed from stalled consumers.
    pub claimed: u64,
    /// Entries handed back on shutdown (read but not started, or waiting for a retry).
    pub handed_back: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) delivered: AtomicU64,
    pub(super) acked: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) dead_lettered: AtomicU64,
    pub(super) claimed: AtomicU64,
    pub(super) handed_back: AtomicU64,
}

/// Runs a handler over a stream as one consumer of a consumer group.
///
/// At-least-once: an entry is acknowledged (`XACK`) only after its handler returned `Ok`. A failed
/// entry is run again after the [`retry`](crate::ConsumerBuilder::retry) policy's wait; after
/// [`max_deliveries`](crate::ConsumerBuilder::max_deliveries) it goes to the dead-letter stream
/// `<stream>:dead` with its id, the reason and the number of attempts. Entries held by a
/// consumer get heartbeats while it lives; an entry whose consumer died is reclaimed by another
/// consumer after [`min_idle`](crate::ConsumerBuilder::min_idle). The run also moves the
/// stream's due [delayed entries](crate::Producer::schedule) into it.
///
/// ```
/// use std::time::Duration;
/// use redis_messaging::{CancellationToken, Consumer, Delivery};
///
/// # async fn demo(redis: redis_core::Redis) -> redis_messaging::Result<()> {
/// let keys = redis_core::KeySpace::new("shop")?;
/// // Reads the stream `shop:messaging:{orders}` as consumer "billing-1" of group "billing".
/// let consumer = Consumer::builder(redis, &keys, "orders", "billing", "billing-1")
///     .batch_size(50)
///     .concurrency(8)
///     .min_idle(Duration::from_secs(60))
///     .max_deliveries(5)
///     .build()?;
/// let shutdown = CancellationToken::new();
/// consumer
///     .run(shutdown.clone(), |order: Delivery<serde_json::Value>| async move {
///         println!("billing order {} (attempt {})", order.payload, order.attempt);
///         Ok::<_, std::io::Error>(())
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Consumer<C: Codec = Json> {
    pub(super) inner: Arc<Inner<C>>,
}

pub(super) struct Inner<C> {
    pub(super) redis: Redis,
    pub(super) stream: Key,
    pub(super) dead: Key,
    /// The delayed set, its values, and this group's hand-back mark.
    pub(super) delayed: Key,
    pub(super) delayed_jobs: Key,
    pub(super) hand_back_mark: Key,
    pub(super) group: String,
    pub(super) name: Arc<str>,
    /// The `name` of metrics and spans.
    pub(super) label: String,
    pub(super) metrics: ConsumerMetrics,
    pub(super) codec: C,
    pub(super) settings: ConsumerSettings,
    pub(super) counters: Counters,
}

impl<C: Codec> fmt::Debug for Consumer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("stream", &self.inner.stream)
            .field("group", &self.inner.group)
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl<C: Codec> Consumer<C> {
    /// The stream consumed.
    pub fn stream(&self) -> &Key {
        &self.inner.stream
    }

    /// The dead-letter stream (`<stream>:dead`).
    pub fn dead_letter_stream(&self) -> &Key {
        &self.inner.dead
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// This consumer's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Counters so far.
    pub fn stats(&self) -> ConsumerStats {
        let c = &self.inner.counters;
        ConsumerStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            acked: c.acked.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            claimed: c.claimed.load(Ordering::Relaxed),
            handed_back: c.handed_back.load(Ordering::Relaxed),
        }
    }

    /// Creates the group (and the stream) if missing: `XGROUP CREATE .. MKSTREAM`, where an
    /// existing group (`BUSYGROUP`) is success. [`run`](Self::run) calls it.
    ///
    /// # Errors
    /// [`Error::Core`](crate::Error::Core) when the command fails.
    pub async fn ensure_group(&self) -> Result<()> {
        let span = redis_core::operation_span!(
            self.inner.redis,
            "messaging.ensure_group",
            name = %self.inner.label,
        );
        ensure_group(
            &self.inner.redis,
            &self.inner.stream,
            &self.inner.group,
            &self.inner.settings.start_id,
        )
        .instrument(span)
        .await
    }
}
