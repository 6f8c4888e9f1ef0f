//! Publishing typed messages.

use std::sync::Arc;

use redis_core::{Codec, Redis, codec::Json, metrics::Counter, redis};
use serde::Serialize;
use tracing::Instrument as _;

use crate::{
    error::Result,
    metrics::{DEFAULT_NAME, published, validate_name},
};

/// Publishes typed messages on channels (`PUBLISH`) and sharded channels (`SPUBLISH`).
///
/// Cheap to clone; commands go over the shared connection of the [`Redis`] handle.
#[derive(Debug, Clone)]
pub struct Publisher<C: Codec = Json> {
    redis: Redis,
    codec: C,
    name: Arc<str>,
    published: Counter,
}

impl Publisher<Json> {
    /// A publisher that encodes messages as JSON.
    pub fn new(redis: Redis) -> Self {
        Self::with_codec(redis, Json)
    }
}

impl<C: Codec> Publisher<C> {
    /// A publisher with a codec of one's choice (subscribers must use the same one).
    pub fn with_codec(redis: Redis, codec: C) -> Self {
        Self {
            redis,
            codec,
            name: DEFAULT_NAME.into(),
            published: published(DEFAULT_NAME),
        }
    }

    /// Names this publisher in metrics (the `name` label) and spans. Defaults to `"default"`.
    ///
    /// ```
    /// # async fn demo(redis: redis_core::Redis) -> redis_messaging::Result<()> {
    /// let publisher = redis_messaging::Publisher::new(redis).name("prices")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) unless `name` is 1 to 64 characters
    /// of `[A-Za-z0-9_.-]`.
    pub fn name(mut self, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        validate_name(&name)?;
        self.published = published(&name);
        self.name = name.into();
        Ok(self)
    }

    /// Publishes `message` on `channel` and returns how many subscribers received it (on a
    /// cluster: how many on the node that took the command).
    ///
    /// # Errors
    /// [`Error::Core`](crate::Error::Core) when encoding or the command fails.
    pub async fn publish<T: Serialize + ?Sized>(&self, channel: &str, message: &T) -> Result<u64> {
        self.send("PUBLISH", channel, message).await
    }

    /// Publishes `message` on the sharded channel `channel` (`SPUBLISH`, Redis 7+): on a cluster
    /// it only travels within the shard that owns the channel's slot.
    ///
    /// # Errors
    /// [`Error::Core`](crate::Error::Core) when encoding or the command fails, or with
    /// `redis_core::Error::ServerTooOld` on a server older than 7.0.
    pub async fn spublish<T: Serialize + ?Sized>(&self, channel: &str, message: &T) -> Result<u64> {
        self.redis
            .require(redis_core::Feature::ShardedPubSub)
            .await?;
        self.send("SPUBLISH", channel, message).await
    }

    async fn send<T: Serialize + ?Sized>(
        &self,
        command: &str,
        channel: &str,
        message: &T,
    ) -> Result<u64> {
        // The channel stays out of the span: it may name a user or a session.
        let span = redis_core::operation_span!(
            self.redis,
            "messaging.publish",
            name = %self.name,
            receivers = tracing::field::Empty,
        );
        async {
            let payload = self.codec.encode(message)?;
            let receivers: u64 = self
                .redis
                .query(redis::cmd(command).arg(channel).arg(payload))
                .await?;
            self.published.increment(1);
            tracing::Span::current().record("receivers", receivers);
            Ok(receivers)
        }
        .instrument(span)
        .await
    }
}
