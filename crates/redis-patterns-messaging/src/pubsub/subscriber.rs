//! Building and starting a subscription.

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use redis_core::{Backoff, Codec, Redis, codec::Json};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{
    outbox::Outbox,
    subscription::Subscription,
    worker::{Worker, connect},
};
use crate::{
    config::SubscriberSettings,
    error::Result,
    metrics::{DEFAULT_NAME, SubscriptionMetrics, validate_name},
};

/// Builds a [`Subscription`]: what to listen to and how to come back after a disconnect.
///
/// ```
/// # async fn demo(redis: redis_core::Redis) -> redis_messaging::Result<()> {
/// use std::time::Duration;
/// use redis_messaging::{Backoff, Event, Subscriber};
///
/// let mut subscription = Subscriber::builder(redis)
///     .channel("orders:created")
///     .pattern("orders:*:cancelled")
///     .reconnect_backoff(Backoff::new(Duration::from_millis(50), Duration::from_secs(2))?)
///     .subscribe::<serde_json::Value>()
///     .await?;
/// while let Some(event) = subscription.next().await {
///     match event {
///         Event::Message(m) => println!("{}: {:?}", m.channel, m.payload),
///         Event::Gap(gap) => println!("may have missed messages: {gap}"),
///         Event::Undecodable(bad) => println!("skipped a bad payload on {}", bad.channel),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct SubscriberBuilder<C: Codec = Json> {
    redis: Redis,
    codec: C,
    settings: SubscriberSettings,
    name: String,
}

/// Entry point for subscriptions; see [`Subscriber::builder`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Subscriber;

impl Subscriber {
    /// Starts building a subscription on `redis` (standalone, Sentinel or cluster).
    pub fn builder(redis: Redis) -> SubscriberBuilder<Json> {
        SubscriberBuilder {
            redis,
            codec: Json,
            settings: SubscriberSettings::default(),
            name: DEFAULT_NAME.to_owned(),
        }
    }
}

impl<C: Codec> SubscriberBuilder<C> {
    /// The name this subscription reports in metrics (the `name` label) and spans: 1 to 64
    /// characters of `[A-Za-z0-9_.-]`, checked by [`subscribe`](Self::subscribe). Defaults to
    /// `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Listens to a channel (`SUBSCRIBE`). Call once per channel.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.settings.channels.channels.push(channel.into());
        self
    }

    /// Listens to every channel matching a glob pattern (`PSUBSCRIBE`).
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.settings.channels.patterns.push(pattern.into());
        self
    }

    /// Listens to a sharded channel (`SSUBSCRIBE`, Redis 7+). Needs a cluster endpoint: on a
    /// cluster a sharded message stays within the shard that owns the channel's slot instead of
    /// being broadcast to every node.
    pub fn sharded_channel(mut self, channel: impl Into<String>) -> Self {
        self.settings.channels.sharded.push(channel.into());
        self
    }

    /// Decodes payloads with `codec` (publishers must use the same). Defaults to JSON.
    pub fn codec<C2: Codec>(self, codec: C2) -> SubscriberBuilder<C2> {
        SubscriberBuilder {
            redis: self.redis,
            codec,
            settings: self.settings,
            name: self.name,
        }
    }

    /// Waits between reconnect attempts. Defaults to [`Backoff::default`] (100 ms doubling up
    /// to 5 s, jittered).
    pub fn reconnect_backoff(mut self, backoff: Backoff) -> Self {
        self.settings.backoff = backoff;
        self
    }

    /// Sends a `PING` on the subscription connection this often and reconnects when the answer
    /// does not come within the same time, which catches connections that died silently (a
    /// dropped network path sends no reset). Defaults to 5 s.
    pub fn health_check_interval(mut self, every: Duration) -> Self {
        self.settings.health_check = every;
        self
    }

    /// The most events (messages and gaps) that may wait for [`Subscription::next`]. The
    /// background task keeps reading the connection whatever the reader does; once this many
    /// events wait, further messages are **dropped** until the reader catches up, and the next
    /// event after the waiting ones is an [`Event::Gap`](crate::Event::Gap) of kind
    /// [`GapKind::Overflow`](crate::GapKind::Overflow) that says how many were dropped. So a
    /// subscriber slower than its publishers holds at most this many events in memory instead of
    /// growing without limit. Defaults to [`DEFAULT_MAX_BACKLOG`](crate::DEFAULT_MAX_BACKLOG)
    /// (10 000); [`Subscription::backlog`] and [`Subscription::dropped`] show where a
    /// subscription stands.
    pub fn max_backlog(mut self, events: usize) -> Self {
        self.settings.max_backlog = events;
        self
    }

    /// The former name of [`max_backlog`](Self::max_backlog), which it sets.
    pub fn buffer(self, events: usize) -> Self {
        self.max_backlog(events)
    }

    /// Connects, subscribes, and returns the subscription. Reconnects after this happen in the
    /// background.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for an empty subscription, an empty
    /// channel name, bad timings or a [`name`](Self::name) that breaks its rule;
    /// [`Error::Core`](crate::Error::Core) with [`redis_core::Error::Unsupported`] for sharded
    /// channels without a cluster, and when the first connection or subscription fails (so a
    /// wrong address fails loudly, not in a loop).
    pub async fn subscribe<T: DeserializeOwned>(self) -> Result<Subscription<T, C>> {
        validate_name(&self.name)?;
        let SubscriberSettings {
            channels,
            backoff,
            health_check,
            max_backlog,
        } = self.settings.validate()?;
        // How many channels and patterns, never which: a channel may name a user or a session.
        let span = redis_core::operation_span!(
            self.redis,
            "messaging.subscribe",
            name = %self.name,
            subscriptions = channels.channels.len() + channels.patterns.len() + channels.sharded.len(),
        );
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let conn = connect(&self.redis, &channels, push_tx)
            .instrument(span)
            .await?;
        let (tx, rx) = mpsc::channel(max_backlog);
        let dropped = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        let worker = Worker {
            redis: self.redis,
            channels,
            backoff,
            health_check,
            cancel: cancel.clone(),
        };
        let outbox = Outbox::new(tx, max_backlog, Arc::clone(&dropped))
            .with_metrics(SubscriptionMetrics::new(&self.name));
        tokio::spawn(worker.run(conn, push_rx, outbox));
        Ok(Subscription::new(
            rx,
            dropped,
            self.codec,
            cancel.drop_guard(),
        ))
    }
}
