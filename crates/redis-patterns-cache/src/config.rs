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

/// The longest TTL (or grace, or window) a cache accepts, in its settings and per entry: 100
/// years. Longer ones are refused with [`Error::InvalidConfig`] before anything is sent, so the
/// `PX` of every write fits what Redis takes.
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The most tags one entry may carry: each costs one `GET` on every read of the entry.
pub const MAX_TAGS: usize = 64;

/// Per-entry options: a TTL other than the default, and tags for group invalidation.
///
/// Checked when a call uses them, before anything is sent, as
/// [`CacheBuilder::build`](crate::CacheBuilder::build) checks the settings: a TTL outside
/// `1 ms ..= `[`MAX_TTL`], more than [`MAX_TAGS`] tags or a tag that cannot be a key is an
/// [`Error::InvalidConfig`] naming the option.
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
    /// TTL of the fresh value; `None` uses the cache's default. Jitter still applies; grace is
    /// added on top. From 1 ms to [`MAX_TTL`].
    pub ttl: Option<Duration>,
    /// Tags the entry depends on; [`Cache::invalidate_tag`](crate::Cache::invalidate_tag) on any
    /// of them turns it into a miss. At most [`MAX_TAGS`], each a valid key name (not empty,
    /// within the key space's length limit).
    pub tags: Vec<String>,
}

impl EntryOptions {
    /// No TTL override, no tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the fresh TTL of this entry. Defaults to the cache's TTL. From 1 ms to [`MAX_TTL`].
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Adds a tag. Defaults to no tags. At most [`MAX_TAGS`].
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Checks the options as [`Settings::validate`] checks the settings (the tags' key names
    /// are checked where their keys are built, also before anything is sent).
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(ttl) = self.ttl {
            check_ttl("entry ttl", ttl)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(Error::invalid_config(format!(
                "an entry carries at most {MAX_TAGS} tags, not {}",
                self.tags.len()
            )));
        }
        Ok(())
    }
}

/// `what` must be at least 1 ms and at most [`MAX_TTL`].
fn check_ttl(what: &str, ttl: Duration) -> Result<()> {
    if ttl < Duration::from_millis(1) {
        return Err(Error::invalid_config(format!(
            "{what} must be at least 1 ms, not {ttl:?}"
        )));
    }
    check_max(what, ttl)
}

/// `what` must be at most [`MAX_TTL`].
fn check_max(what: &str, ttl: Duration) -> Result<()> {
    if ttl > MAX_TTL {
        return Err(Error::invalid_config(format!(
            "{what} must be at most 100 years (MAX_TTL), not {ttl:?}"
        )));
    }
    Ok(())
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
        check_ttl("cache ttl", self.ttl)?;
        check_max("negative ttl", self.negative_ttl)?;
        check_max("grace", self.grace)?;
        if !(0.0..1.0).contains(&self.jitter) {
            return bad("cache jitter must be in [0, 1)");
        }
        if !self.beta.is_finite() || self.beta < 0.0 {
            return bad("early refresh beta must be finite and >= 0");
        }
        check_ttl("lease ttl", self.lease_ttl)?;
        check_ttl("tag ttl", self.tag_ttl)?;
        check_ttl("version ttl", self.version_ttl)?;
        if let Some(near) = &self.near {
            if near.capacity == 0 {
                return bad("near cache capacity must be at least 1");
            }
            check_ttl("near cache ttl", near.ttl)?;
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
    /// safety net should an invalidation be lost. Defaults to 10 seconds; from 1 ms to
    /// [`MAX_TTL`].
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
