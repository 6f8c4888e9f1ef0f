//! Settings, per-call options and policies: plain data, validated when a cache is built.

use std::{fmt, sync::Arc, time::Duration};

use crate::error::{Error, Result};

/// What to do when Redis cannot be reached (connection refused or lost, time-out, failover).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Serve from the source: [`Cache::get_or_load`](crate::Cache::get_or_load) calls the loader
    /// directly (still one load per key in the process) and [`Cache::get`](crate::Cache::get)
    /// reports a miss. Writes still fail.
    #[default]
    FailOpen,
    /// Return the Redis error, to protect a source of truth that cannot take the full load.
    FailClosed,
}

/// How [`Cache::write_through`](crate::Cache::write_through) brings the cache in line after
/// writing the source of truth.
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
    /// Tags the entry depends on; [`Cache::invalidate_tag`](crate::Cache::invalidate_tag) on any
    /// of them turns it into a miss.
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
    /// The `name` label of metrics and field of spans.
    pub(crate) name: String,
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
            .field("name", &self.name)
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

impl Default for Settings {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
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
        }
    }
}

impl Settings {
    /// Checks every setting; the message names the one at fault.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid_config(m));
        crate::metrics::validate_name(&self.name)?;
        if self.ttl < Duration::from_millis(1) {
            return bad("cache ttl must be at least 1 ms");
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return bad("cache jitter must be in [0, 1)");
        }
        if !self.beta.is_finite() || self.beta < 0.0 {
            return bad("early refresh beta must be finite and >= 0");
        }
        if self.lease_ttl < Duration::from_millis(1) {
            return bad("lease ttl must be at least 1 ms");
        }
        if self.tag_ttl < Duration::from_millis(1) || self.version_ttl < Duration::from_millis(1) {
            return bad("tag and version ttls must be at least 1 ms");
        }
        if let Some(near) = &self.near {
            if near.capacity == 0 {
                return bad("near cache capacity must be at least 1");
            }
            if near.ttl < Duration::from_millis(1) {
                return bad("near cache ttl must be at least 1 ms");
            }
        }
        Ok(())
    }
}

/// Settings of the optional near cache (see
/// [`CacheBuilder::near_cache`](crate::CacheBuilder::near_cache)).
///
/// ```
/// use std::time::Duration;
/// use redis_cache::NearCacheConfig;
///
/// let near = NearCacheConfig::new(10_000).ttl(Duration::from_secs(5));
/// assert_eq!(near.capacity, 10_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearCacheConfig {
    /// Most entries kept in process; the least recently used (CLOCK) go first. At least 1.
    pub capacity: usize,
    /// Longest time an entry is served from process memory, whatever its Redis freshness: a
    /// safety net should an invalidation be lost. Defaults to 10 seconds; at least 1 ms.
    pub ttl: Duration,
}

impl NearCacheConfig {
    /// At most `capacity` entries, each served for at most 10 seconds.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ttl: Duration::from_secs(10),
        }
    }

    /// Sets the longest time an entry is served from process memory. Defaults to 10 seconds.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}
