//! The Streams producer: typed `XADD` with retention.

use std::{sync::Arc, time::Duration};

use redis_core::{
    Codec, Key, KeySpace, Redis, codec::Json, duration_millis, metrics::Counter, redis,
};
use serde::Serialize;
use tracing::Instrument as _;

use super::{
    PAYLOAD_FIELD,
    delayed::{DEFAULT_DELAYED_HORIZON, MAX_DELAY},
    stream_key,
};
use crate::{
    config::Retention,
    error::{Error, Result},
    metrics::{DEFAULT_NAME, published, validate_name},
    scripts::XADD_MINID,
};

/// Appends typed entries to one stream.
///
/// Cheap to clone. Entries are `{ p: <encoded payload> }`; the id is the server's `*` id.
///
/// ```
/// use redis_messaging::{Producer, Retention};
/// # async fn demo(redis: redis_core::Redis) -> redis_messaging::Result<()> {
/// let keys = redis_core::KeySpace::new("shop")?;
/// // Writes the stream `shop:messaging:{orders}`.
/// let producer = Producer::builder(redis, &keys, "orders")
///     .retention(Retention::MaxAge(std::time::Duration::from_secs(24 * 3600)))
///     .build()?;
/// let id = producer.send(&serde_json::json!({"order": 42})).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Producer<C: Codec = Json> {
    pub(super) redis: Redis,
    pub(super) stream: Key,
    pub(super) retention: Retention,
    pub(super) codec: C,
    pub(super) name: Arc<str>,
    pub(super) published: Counter,
    /// How long delayed entries outlive their due time (the delayed keys' TTL beyond it).
    pub(super) horizon: Duration,
}

/// Builds a [`Producer`].
#[must_use]
#[derive(Debug, Clone)]
pub struct ProducerBuilder<C: Codec = Json> {
    redis: Redis,
    keys: KeySpace,
    stream: String,
    retention: Retention,
    codec: C,
    name: String,
    horizon: Duration,
}

impl Producer<Json> {
    /// Starts building a producer for the stream named `stream`, whose key is
    /// `<keys>:messaging:{<stream>}` (see [`stream_key`](crate::stream_key)).
    pub fn builder(
        redis: Redis,
        keys: &KeySpace,
        stream: impl Into<String>,
    ) -> ProducerBuilder<Json> {
        ProducerBuilder {
            redis,
            keys: keys.clone(),
            stream: stream.into(),
            retention: Retention::default(),
            codec: Json,
            name: DEFAULT_NAME.to_owned(),
            horizon: DEFAULT_DELAYED_HORIZON,
        }
    }
}

impl<C: Codec> ProducerBuilder<C> {
    /// The name this producer reports in metrics (the `name` label) and spans: 1 to 64
    /// characters of `[A-Za-z0-9_.-]`, checked by [`build`](Self::build). Defaults to
    /// `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How much history to keep. Defaults to [`Retention::MaxLen`]`(1_000_000)`.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How long a delayed entry ([`Producer::send_after`]) may wait past its due time for a
    /// consumer to move it into the stream: the delayed keys expire this long after the latest
    /// due time among them. Defaults to 7 days.
    pub fn delayed_horizon(mut self, horizon: Duration) -> Self {
        self.horizon = horizon;
        self
    }

    /// Encodes payloads with `codec` (consumers must use the same). Defaults to JSON.
    pub fn codec<C2: Codec>(self, codec: C2) -> ProducerBuilder<C2> {
        ProducerBuilder {
            redis: self.redis,
            keys: self.keys,
            stream: self.stream,
            retention: self.retention,
            codec,
            name: self.name,
            horizon: self.horizon,
        }
    }

    /// Checks the settings and builds the stream's key.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `MaxLen(0)`, a zero `MaxAge`, a delayed horizon below one
    /// second or above ten years, or a [`name`](Self::name) that breaks its rule; [`Error::Core`] for a stream name that makes no valid key (empty, too
    /// long).
    pub fn build(self) -> Result<Producer<C>> {
        crate::preflight::on_build(&self.redis, &self.keys);
        validate_name(&self.name)?;
        if self.horizon < Duration::from_secs(1) || self.horizon > MAX_DELAY {
            return Err(Error::invalid_config(
                "delayed horizon must be between one second and ten years",
            ));
        }
        Ok(Producer {
            horizon: self.horizon,
            retention: self.retention.validate()?,
            stream: stream_key(&self.keys, &self.stream)?,
            redis: self.redis,
            codec: self.codec,
            published: published(&self.name),
            name: self.name.into(),
        })
    }
}

impl<C: Codec> Producer<C> {
    /// The stream this producer writes.
    pub fn stream(&self) -> &Key {
        &self.stream
    }

    /// Appends one entry and returns its id.
    ///
    /// # Errors
    /// [`Error::Core`] when encoding or the command fails.
    pub async fn send<T: Serialize + ?Sized>(&self, message: &T) -> Result<String> {
        let span = self.span(1);
        let id = self.send_one(message).instrument(span).await?;
        self.published.increment(1);
        Ok(id)
    }

    /// A `messaging.send` span for `count` entries.
    fn span(&self, count: usize) -> tracing::Span {
        redis_core::operation_span!(
            self.redis,
            "messaging.send",
            name = %self.name,
            messaging.batch.message_count = count,
        )
    }

    async fn send_one<T: Serialize + ?Sized>(&self, message: &T) -> Result<String> {
        let payload = self.codec.encode(message)?;
        match self.retention {
            Retention::MaxAge(age) => {
                let mut ids: Vec<String> = XADD_MINID
                    .call()
                    .key(&self.stream)
                    .arg(duration_millis(age))
                    .arg(payload)
                    .invoke(&self.redis)
                    .await?;
                ids.pop()
                    .ok_or_else(|| Error::unexpected_reply("no id from XADD"))
            }
            _ => Ok(self.redis.query(&self.xadd(payload)).await?),
        }
    }

    /// Appends several entries in one round trip (a pipeline, or one script for
    /// [`Retention::MaxAge`]) and returns their ids in order. Not atomic as a whole: on a failure
    /// some may have been written.
    ///
    /// # Errors
    /// [`Error::Core`] when encoding or the commands fail.
    pub async fn send_batch<T: Serialize>(&self, messages: &[T]) -> Result<Vec<String>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let span = self.span(messages.len());
        let ids = self.send_many(messages).instrument(span).await?;
        self.published.increment(ids.len() as u64);
        Ok(ids)
    }

    async fn send_many<T: Serialize>(&self, messages: &[T]) -> Result<Vec<String>> {
        let payloads = messages
            .iter()
            .map(|m| self.codec.encode(m))
            .collect::<redis_core::Result<Vec<_>>>()?;
        match self.retention {
            Retention::MaxAge(age) => {
                let mut call = XADD_MINID
                    .call()
                    .key(&self.stream)
                    .arg(duration_millis(age));
                for payload in payloads {
                    call = call.arg(payload);
                }
                Ok(call.invoke(&self.redis).await?)
            }
            _ => {
                let mut pipe = redis::pipe();
                for payload in payloads {
                    pipe.add_command(self.xadd(payload));
                }
                Ok(self.redis.query_pipeline(&pipe).await?)
            }
        }
    }

    fn xadd(&self, payload: Vec<u8>) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream);
        if let Retention::MaxLen(n) = self.retention {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*").arg(PAYLOAD_FIELD).arg(payload);
        cmd
    }
}
