//! Publishing typed messages.

use redis_core::{Codec, Redis, codec::Json, redis};
use serde::Serialize;

use crate::error::Result;

/// Publishes typed messages on channels (`PUBLISH`) and sharded channels (`SPUBLISH`).
///
/// Cheap to clone; commands go over the shared connection of the [`Redis`] handle.
#[derive(Debug, Clone)]
pub struct Publisher<C: Codec = Json> {
    redis: Redis,
    codec: C,
}

impl Publisher<Json> {
    /// A publisher that encodes messages as JSON.
    pub fn new(redis: Redis) -> Self {
        Self { redis, codec: Json }
    }
}

impl<C: Codec> Publisher<C> {
    /// A publisher with a codec of one's choice (subscribers must use the same one).
    pub fn with_codec(redis: Redis, codec: C) -> Self {
        Self { redis, codec }
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
    /// [`Error::Core`](crate::Error::Core) when encoding or the command fails.
    pub async fn spublish<T: Serialize + ?Sized>(&self, channel: &str, message: &T) -> Result<u64> {
        self.send("SPUBLISH", channel, message).await
    }

    async fn send<T: Serialize + ?Sized>(
        &self,
        command: &str,
        channel: &str,
        message: &T,
    ) -> Result<u64> {
        let payload = self.codec.encode(message)?;
        let receivers = self
            .redis
            .query(redis::cmd(command).arg(channel).arg(payload))
            .await?;
        Ok(receivers)
    }
}
