//! Building a [`SessionStore`].

use std::{fmt, sync::Arc, time::Duration};

use redis_core::{Codec, KeySpace, Redis, codec::Json};

use super::{Parts, SessionStore};
use crate::{
    config::{self, Timeouts},
    error::Result,
    layout::ServerClock,
    metrics::{Metrics, check_name},
};

/// Builds a [`SessionStore`]. Every setter states its default; [`build`](Self::build) validates.
///
/// ```
/// use std::time::Duration;
/// use redis_session::SessionStore;
/// use redis_core::KeySpace;
///
/// # async fn demo(redis: redis_core::Redis) -> redis_session::Result<()> {
/// let store = SessionStore::builder(redis, &KeySpace::new("myapp")?)
///     .idle_timeout(Duration::from_secs(15 * 60))
///     .absolute_timeout(Duration::from_secs(8 * 3600))
///     .touch_interval(Duration::from_secs(60))
///     .secret(std::env::var("SESSION_SECRET").unwrap_or_default().into_bytes())
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct SessionStoreBuilder<C: Codec = Json> {
    redis: Redis,
    keys: KeySpace,
    codec: C,
    idle: Duration,
    absolute: Duration,
    touch_interval: Duration,
    secret: Option<Vec<u8>>,
    name: String,
}

impl<C: Codec> fmt::Debug for SessionStoreBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStoreBuilder")
            .field("name", &self.name)
            .field("keys", &self.keys)
            .field("codec", &self.codec)
            .field("idle", &self.idle)
            .field("absolute", &self.absolute)
            .field("touch_interval", &self.touch_interval)
            .field("secret", &self.secret.as_ref().map(|_| "<secret>"))
            .finish_non_exhaustive()
    }
}

impl SessionStoreBuilder<Json> {
    pub(super) fn new(redis: Redis, keys: &KeySpace) -> Self {
        Self {
            redis,
            keys: keys.clone(),
            codec: Json,
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(8 * 3600),
            touch_interval: Duration::from_secs(60),
            secret: None,
            name: "default".to_owned(),
        }
    }
}

impl<C: Codec> SessionStoreBuilder<C> {
    /// Sets the codec of field values. Defaults to [`Json`] (readable in `redis-cli`); `MsgPack`
    /// with the `msgpack` feature.
    pub fn codec<C2: Codec>(self, codec: C2) -> SessionStoreBuilder<C2> {
        SessionStoreBuilder {
            redis: self.redis,
            keys: self.keys,
            codec,
            idle: self.idle,
            absolute: self.absolute,
            touch_interval: self.touch_interval,
            secret: self.secret,
            name: self.name,
        }
    }

    /// Names the store in metrics (the `name` label) and spans (the `name` field), to tell
    /// stores apart. Defaults to `"default"`. Must be 1 to 64 characters of `[A-Za-z0-9_.-]`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the idle (inactivity) timeout: a session not accessed for this long is gone.
    /// Defaults to 30 minutes. Must be at least 1 ms and at most the absolute timeout.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// Sets the absolute timeout: a session is gone this long after it was created, however
    /// active it is. Defaults to 8 hours. Must be at least 1 ms.
    pub fn absolute_timeout(mut self, absolute: Duration) -> Self {
        self.absolute = absolute;
        self
    }

    /// Sets how often a read records an access: a load within this long of the last recorded one
    /// writes nothing and runs no script (a plain `GET`), so the idle deadline moves
    /// at most once per interval and the effective idle timeout lies between `idle - interval`
    /// and `idle`. Defaults to 60 seconds. Must be shorter than the idle timeout; zero records
    /// every access (every read runs the store's script).
    pub fn touch_interval(mut self, interval: Duration) -> Self {
        self.touch_interval = interval;
        self
    }

    /// Keys the id digests with HMAC-SHA-256 and this secret (at least
    /// [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN) = 32 bytes), so that even someone who can read
    /// Redis and guess ids cannot check them offline. Defaults to none: plain SHA-256, which
    /// already keeps usable ids out of Redis. Changing the secret ends every session.
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Validates the settings and finishes the store. Nothing is sent to Redis.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a zero or out-of-order timeout,
    /// a short secret or an invalid name; [`Error::Core`](crate::Error::Core) when the key space cannot take the
    /// `session` pattern.
    pub fn build(self) -> Result<SessionStore<C>> {
        crate::preflight::on_build(&self.redis, &self.keys);
        let timeouts = Timeouts::new(self.idle, self.absolute, self.touch_interval)?;
        let hasher = config::hasher(self.secret.as_deref())?;
        check_name(&self.name)?;
        Ok(SessionStore {
            parts: Arc::new(Parts {
                metrics: Metrics::new(&self.name),
                name: self.name.into(),
                redis: self.redis,
                keys: self.keys.pattern("session")?,
                hasher,
                codec: self.codec,
                timeouts,
                clock: ServerClock::new(),
            }),
        })
    }
}
