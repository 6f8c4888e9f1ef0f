//! [`CacheBuilder`]: every setting of a [`Cache`], validated by [`build`](CacheBuilder::build).

use std::{fmt, sync::Arc, time::Duration};

use redis_core::{Codec, KeySpace, Redis, codec::Json};

use super::Cache;
use crate::{
    config::{FailurePolicy, NearCacheConfig, Settings},
    error::Result,
};

/// Builds a [`Cache`]. Every setter states its default; [`build`](Self::build) validates.
///
/// ```
/// use std::time::Duration;
/// use redis_cache::{Cache, FailurePolicy};
/// use redis_core::KeySpace;
///
/// # async fn demo(redis: redis_core::Redis) -> redis_cache::Result<()> {
/// let cache = Cache::builder(redis, &KeySpace::new("shop")?)
///     .ttl(Duration::from_secs(600))
///     .jitter(0.1)
///     .negative_ttl(Duration::from_secs(30))
///     .grace(Duration::from_secs(120))
///     .failure_policy(FailurePolicy::FailClosed)
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct CacheBuilder<C: Codec = Json> {
    redis: Redis,
    keys: KeySpace,
    codec: C,
    settings: Settings,
}

impl<C: Codec> fmt::Debug for CacheBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("keys", &self.keys)
            .field("codec", &self.codec)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl CacheBuilder<Json> {
    pub(crate) fn new(redis: Redis, keys: &KeySpace) -> Self {
        Self {
            redis,
            keys: keys.clone(),
            codec: Json,
            settings: Settings::default(),
        }
    }
}

impl<C: Codec> CacheBuilder<C> {
    /// Sets the codec of values. Defaults to [`Json`]; `MsgPack` with the `msgpack` feature.
    pub fn codec<C2: Codec>(self, codec: C2) -> CacheBuilder<C2> {
        CacheBuilder {
            redis: self.redis,
            keys: self.keys,
            codec,
            settings: self.settings,
        }
    }

    /// Sets the cache's name: the `name` label of its metrics and field of its spans, to tell
    /// caches apart. Defaults to `"default"`; 1 to 64 characters of `[A-Za-z0-9_.-]`. Never put
    /// a key or a user's data in it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// Sets how long a value is fresh. Defaults to 5 minutes. From 1 ms to
    /// [`MAX_TTL`](crate::MAX_TTL).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// Sets the jitter: each TTL written is shortened by a random fraction in `[0, jitter)`, so
    /// entries written together do not expire together. Defaults to 0.1. Must be in `[0, 1)`.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.settings.jitter = jitter;
        self
    }

    /// Sets how long "not found" is remembered. Defaults to 30 seconds; zero turns negative
    /// caching off. At most [`MAX_TTL`](crate::MAX_TTL).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.settings.negative_ttl = ttl;
        self
    }

    /// Sets how long a value is kept after it turns stale, to be served while one caller
    /// refreshes it or when the loader fails. Defaults to 60 seconds; zero turns it off. At most
    /// [`MAX_TTL`](crate::MAX_TTL).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.settings.grace = grace;
        self
    }

    /// Sets what happens when Redis is unreachable. Defaults to [`FailurePolicy::FailOpen`].
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.settings.failure_policy = policy;
        self
    }

    /// Sets the life of the refresh lease that lets one process load a key while the others
    /// wait or serve stale. Defaults to 5 seconds; set it above your slowest expected load. From
    /// 1 ms to [`MAX_TTL`](crate::MAX_TTL).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.settings.lease_ttl = ttl;
        self
    }

    /// Sets how long a caller with nothing to serve waits for another process's load before
    /// loading itself. Defaults to 2 seconds; zero loads at once.
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.settings.lease_wait = wait;
        self
    }

    /// Sets XFetch's `beta` (eagerness of probabilistic early refresh). Defaults to 1.0, the
    /// value the paper shows optimal; 0 turns early refresh off. Must be finite and `>= 0`.
    pub fn early_refresh_beta(mut self, beta: f64) -> Self {
        self.settings.beta = beta;
        self
    }

    /// Sets the TTL of tag version keys, renewed by every invalidation. An entry whose tag
    /// version expired reads as a miss. Defaults to 7 days. From 1 ms to
    /// [`MAX_TTL`](crate::MAX_TTL).
    pub fn tag_ttl(mut self, ttl: Duration) -> Self {
        self.settings.tag_ttl = ttl;
        self
    }

    /// Sets the TTL of the per-key generation written by [`Cache::set`], [`Cache::delete`] and
    /// [`Cache::write_through`] to fence off slower fills. Defaults to 1 hour; it must outlast
    /// your slowest load. From 1 ms to [`MAX_TTL`](crate::MAX_TTL).
    pub fn version_ttl(mut self, ttl: Duration) -> Self {
        self.settings.version_ttl = ttl;
        self
    }

    /// Sets the source of uniform numbers in `[0, 1)` for jitter and early refresh. Defaults to
    /// the thread-local generator of `rand`; tests inject a fixed value.
    pub fn random_source(mut self, source: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.settings.random = Arc::new(source);
        self
    }

    /// Turns on the near cache: a bounded in-process copy of fresh entries, invalidated per key
    /// by Redis client tracking on a dedicated RESP3 connection. Defaults to off.
    ///
    /// A hit costs no round trip. A write by any client (another process, `redis-cli`) evicts
    /// the copy when its invalidation push arrives, typically well under a millisecond later;
    /// until then the old value can still be served. Writes of this cache evict at once. While
    /// the tracking connection is down every read goes to Redis. On a cluster, tracking runs on
    /// every master. A failover or a slot move flushes the copies and tracking resumes on the
    /// new master(s), typically within a second. Needs a Tokio runtime, which runs the tracking
    /// task.
    pub fn near_cache(mut self, config: NearCacheConfig) -> Self {
        self.settings.near = Some(config);
        self
    }

    /// Validates the settings and builds the cache.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for an invalid name, a zero TTL,
    /// lease, tag or version TTL, any TTL or grace above [`MAX_TTL`](crate::MAX_TTL), a jitter
    /// outside `[0, 1)`, a negative or non-finite `beta`, a near cache of no capacity or a near
    /// TTL outside `1 ms ..= MAX_TTL`, or a near cache built outside a Tokio runtime;
    /// [`redis_core::Error::InvalidKey`] (as [`Error::Core`](crate::Error::Core)) if the key space
    /// cannot take the `cache` segment.
    pub fn build(self) -> Result<Cache<C>> {
        crate::preflight::on_build(&self.redis, &self.keys);
        self.settings.validate()?;
        Cache::from_parts(self.redis, &self.keys, self.codec, self.settings)
    }
}
