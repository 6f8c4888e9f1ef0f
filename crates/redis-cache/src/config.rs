//! Configuration: the builder, the failure policy, per-entry options.

use std::{fmt, sync::Arc, time::Duration};

use redis_core::{Codec, KeySpace, Redis, codec::Json};

use crate::{cache::Cache, error::Result, near::NearCacheConfig};

/// What to do when Redis cannot be reached (connection refused or lost, time-out, failover).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Serve from the source: [`Cache::get_or_load`] calls the loader directly (still one load
    /// per key in the process) and [`Cache::get`] reports a miss. Writes still fail.
    #[default]
    FailOpen,
    /// Return the Redis error, to protect a source of truth that cannot take the full load.
    FailClosed,
}

/// How [`Cache::write_through`] brings the cache in line after writing the source of truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WriteMode {
    /// Delete the entry (and fence off in-flight fills): the next read loads from the source.
    /// Safe against racing writers too. The default.
    #[default]
    Invalidate,
    /// Store the value the writer returned (and fence off in-flight fills). Saves the next
    /// load, but two writers racing on one key can leave the older value cached until its TTL;
    /// see the crate docs.
    Update,
}

/// Per-entry options: a TTL other than the default, and tags for group invalidation.
///
/// ```
/// use std::time::Duration;
/// use redis_cache::EntryOptions;
///
/// let opts = EntryOptions::new()
///     .ttl(Duration::from_secs(30))
///     .tag("category:7")
///     .tag("brand:acme");
/// assert_eq!(opts.tags.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryOptions {
    /// TTL of the fresh value; `None` uses the cache's default. Jitter still applies.
    pub ttl: Option<Duration>,
    /// Tags the entry depends on; [`Cache::invalidate_tag`] on any of them turns it into a miss.
    pub tags: Vec<String>,
}

impl EntryOptions {
    /// No TTL override, no tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the fresh TTL of this entry. Defaults to the cache's TTL.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Adds a tag. Defaults to no tags.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

/// A source of uniform random numbers in `[0, 1)`, used for TTL jitter and early refresh.
pub type RandomSource = Arc<dyn Fn() -> f64 + Send + Sync>;

/// Validated settings shared by a cache's clones.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) ttl: Duration,
    pub(crate) jitter: f64,
    pub(crate) negative_ttl: Duration,
    pub(crate) grace: Duration,
    pub(crate) failure_policy: FailurePolicy,
    pub(crate) lease_ttl: Duration,
    pub(crate) lease_wait: Duration,
    pub(crate) beta: f64,
    pub(crate) tag_ttl: Duration,
    pub(crate) version_ttl: Duration,
    pub(crate) random: RandomSource,
    pub(crate) near: Option<NearCacheConfig>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("ttl", &self.ttl)
            .field("jitter", &self.jitter)
            .field("negative_ttl", &self.negative_ttl)
            .field("grace", &self.grace)
            .field("failure_policy", &self.failure_policy)
            .field("lease_ttl", &self.lease_ttl)
            .field("lease_wait", &self.lease_wait)
            .field("beta", &self.beta)
            .field("tag_ttl", &self.tag_ttl)
            .field("version_ttl", &self.version_ttl)
            .field("near", &self.near)
            .finish_non_exhaustive()
    }
}

fn default_random() -> f64 {
    use rand::RngExt;
    rand::rng().random::<f64>()
}

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
            settings: Settings {
                ttl: Duration::from_secs(300),
                jitter: 0.1,
                negative_ttl: Duration::from_secs(30),
                grace: Duration::from_secs(60),
                failure_policy: FailurePolicy::FailOpen,
                lease_ttl: Duration::from_secs(5),
                lease_wait: Duration::from_secs(2),
                beta: 1.0,
                tag_ttl: Duration::from_secs(7 * 24 * 3600),
                version_ttl: Duration::from_secs(3600),
                random: Arc::new(default_random),
                near: None,
            },
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

    /// Sets how long a value is fresh. Defaults to 5 minutes. Must be at least 1 ms.
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
    /// caching off.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.settings.negative_ttl = ttl;
        self
    }

    /// Sets how long a value is kept after it turns stale, to be served while one caller
    /// refreshes it or when the loader fails. Defaults to 60 seconds; zero turns it off.
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
    /// wait or serve stale. Defaults to 5 seconds; set it above your slowest expected load.
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
    /// version expired reads as a miss. Defaults to 7 days.
    pub fn tag_ttl(mut self, ttl: Duration) -> Self {
        self.settings.tag_ttl = ttl;
        self
    }

    /// Sets the TTL of the per-key generation written by [`Cache::set`], [`Cache::delete`] and
    /// [`Cache::write_through`] to fence off slower fills. Defaults to 1 hour; it must outlast
    /// your slowest load.
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
    /// every master. Needs a Tokio runtime, which runs the tracking task.
    pub fn near_cache(mut self, config: NearCacheConfig) -> Self {
        self.settings.near = Some(config);
        self
    }

    /// Validates the settings and builds the cache.
    ///
    /// # Errors
    /// [`redis_core::Error::InvalidConfig`] (as [`crate::Error::Core`]) for a zero TTL, lease or
    /// version TTL, a jitter outside `[0, 1)`, a negative or non-finite `beta`, a near cache of
    /// no capacity or a zero near TTL, or a near cache built outside a Tokio runtime;
    /// [`redis_core::Error::InvalidKey`] if the key space cannot take the `cache` segment.
    pub fn build(self) -> Result<Cache<C>> {
        let s = &self.settings;
        let bad = |m: &str| Err(redis_core::Error::invalid_config(m).into());
        if s.ttl < Duration::from_millis(1) {
            return bad("cache ttl must be at least 1 ms");
        }
        if !(0.0..1.0).contains(&s.jitter) {
            return bad("cache jitter must be in [0, 1)");
        }
        if !s.beta.is_finite() || s.beta < 0.0 {
            return bad("early refresh beta must be finite and >= 0");
        }
        if s.lease_ttl < Duration::from_millis(1) {
            return bad("lease ttl must be at least 1 ms");
        }
        if s.tag_ttl < Duration::from_millis(1) || s.version_ttl < Duration::from_millis(1) {
            return bad("tag and version ttls must be at least 1 ms");
        }
        if let Some(near) = &s.near {
            if near.capacity == 0 {
                return bad("near cache capacity must be at least 1");
            }
            if near.ttl < Duration::from_millis(1) {
                return bad("near cache ttl must be at least 1 ms");
            }
            if tokio::runtime::Handle::try_current().is_err() {
                return bad("a near cache must be built inside a Tokio runtime");
            }
        }
        Cache::from_parts(self.redis, &self.keys, self.codec, self.settings)
    }
}
