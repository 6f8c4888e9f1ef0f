//! The Streams producer: typed `XADD` with retention.

use std::time::Duration;

use redis_core::{Codec, Key, Redis, Script, codec::Json};
use serde::Serialize;

use crate::error::{Error, Result};

static XADD_MINID: Script = Script::new(
    "messaging_xadd_minid",
    include_str!("scripts/xadd_minid.lua"),
);

/// The field every entry written by a [`Producer`] carries its encoded payload in.
pub const PAYLOAD_FIELD: &str = "p";

/// How much history a stream keeps. Trimming is approximate (`~`), which lets Redis drop whole
/// radix-tree nodes: cheap, and it keeps at least what was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retention {
    /// Keep about the newest `n` entries (`XADD .. MAXLEN ~ n`).
    MaxLen(u64),
    /// Keep about the entries younger than this, by the server's clock (`XADD .. MINID ~ now-age`).
    MaxAge(Duration),
    /// Never trim. The stream grows until something else trims it; not a default for a reason.
    Unbounded,
}

impl Default for Retention {
    /// `MaxLen(1_000_000)`.
    fn default() -> Self {
        Self::MaxLen(1_000_000)
    }
}

/// Appends typed entries to one stream.
///
/// Cheap to clone. Entries are `{ p: <encoded payload> }`; the id is the server's `*` id.
///
/// ```
/// use redis_messaging::{Producer, Retention};
/// # async fn demo(redis: redis_core::Redis) -> redis_messaging::Result<()> {
/// let stream = redis_core::KeySpace::new("shop")?.pattern("stream")?.key("orders")?;
/// let producer = Producer::builder(redis, stream)
///     .retention(Retention::MaxAge(std::time::Duration::from_secs(24 * 3600)))
///     .build()?;
/// let id = producer.send(&serde_json::json!({"order": 42})).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Producer<C: Codec = Json> {
    redis: Redis,
    stream: Key,
    retention: Retention,
    codec: C,
}

/// Builds a [`Producer`].
#[must_use]
#[derive(Debug, Clone)]
pub struct ProducerBuilder<C: Codec = Json> {
    redis: Redis,
    stream: Key,
    retention: Retention,
    codec: C,
}

impl Producer<Json> {
    /// Starts building a producer for `stream` (build the key with a [`redis_core::KeySpace`]).
    pub fn builder(redis: Redis, stream: Key) -> ProducerBuilder<Json> {
        ProducerBuilder {
            redis,
            stream,
            retention: Retention::default(),
            codec: Json,
        }
    }
}

impl<C: Codec> ProducerBuilder<C> {
    /// How much history to keep. Defaults to [`Retention::MaxLen`]`(1_000_000)`.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Encodes payloads with `codec` (consumers must use the same). Defaults to JSON.
    pub fn codec<C2: Codec>(self, codec: C2) -> ProducerBuilder<C2> {
        ProducerBuilder {
            redis: self.redis,
            stream: self.stream,
            retention: self.retention,
            codec,
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `MaxLen(0)` or a zero `MaxAge`.
    pub fn build(self) -> Result<Producer<C>> {
        match self.retention {
            Retention::MaxLen(0) => return Err(Error::config("retention MaxLen(0) keeps nothing")),
            Retention::MaxAge(age) if age.as_millis() == 0 => {
                return Err(Error::config("retention MaxAge below one millisecond"));
            }
            _ => {}
        }
        Ok(Producer {
            redis: self.redis,
            stream: self.stream,
            retention: self.retention,
            codec: self.codec,
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
        let payload = self.codec.encode(message)?;
        match self.retention {
            Retention::MaxAge(age) => {
                let mut ids: Vec<String> = XADD_MINID
                    .call()
                    .key(&self.stream)
                    .arg(millis(age))
                    .arg(payload)
                    .invoke(&self.redis)
                    .await?;
                ids.pop().ok_or_else(|| {
                    Error::Core(redis_core::Error::UnexpectedReply("no id from XADD".into()))
                })
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
        let payloads = messages
            .iter()
            .map(|m| self.codec.encode(m))
            .collect::<redis_core::Result<Vec<_>>>()?;
        match self.retention {
            Retention::MaxAge(age) => {
                let mut call = XADD_MINID.call().key(&self.stream).arg(millis(age));
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

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
