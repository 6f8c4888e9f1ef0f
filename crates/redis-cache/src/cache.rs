//! The cache: cache-aside, write-through, tags and stampede protection.

use std::{
    any::Any,
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use redis_core::{Codec, Key, KeySpace, Redis, Script, codec::Json, redis};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    config::{CacheBuilder, EntryOptions, FailurePolicy, Settings, WriteMode},
    entry::{self, Kind},
    error::{Error, LoadError, Result},
    flight::{self, Flights, Role},
    near::{self, Near, NearCacheStats},
};

static STORE: Script = Script::new("cache_store", include_str!("scripts/store.lua"));
static WRITE: Script = Script::new("cache_write", include_str!("scripts/write.lua"));
static BEGIN: Script = Script::new("cache_begin", include_str!("scripts/begin.lua"));
static RELEASE: Script = Script::new("cache_release", include_str!("scripts/release.lua"));
static REMOVE_CORRUPT: Script = Script::new(
    "cache_remove_corrupt",
    include_str!("scripts/remove_corrupt.lua"),
);

/// Companion suffix of the per-key generation.
const GEN: &str = "gen";
/// Companion suffix of the refresh lease.
const LEASE: &str = "lease";
/// How many times a caller re-joins a load that ended without a usable outcome.
const MAX_JOINS: usize = 3;

/// A typed Redis cache. Cheap to clone; clones share settings and in-flight loads.
///
/// See the [crate docs](crate) for the guarantees.
pub struct Cache<C: Codec = Json> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    redis: Redis,
    entries: KeySpace,
    tags: KeySpace,
    codec: C,
    settings: Settings,
    flights: Flights,
    /// The near cache, when on.
    near: Option<Arc<Near>>,
    /// Dropped with the last clone: stops the near cache's tracking task.
    _stop_tracking: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<C: Codec> Clone for Cache<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Codec> fmt::Debug for Cache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.inner.entries)
            .field("codec", &self.inner.codec)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// An entry read from Redis and decoded.
struct Found<V> {
    value: Option<V>,
    fresh_until_ms: u64,
    delta_ms: u32,
}

enum Lookup<V> {
    Miss,
    Fresh(Found<V>),
    Stale(Found<V>),
}

/// Versions read before a load; the fill is refused if they changed.
struct Versions {
    /// Empty when the key has no generation.
    generation: Vec<u8>,
    tags: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Outcome of waiting for another process's load.
enum Waited<V> {
    Value(Option<V>),
    Lease(Begun),
    GiveUp,
}

/// What `begin.lua` found.
struct Begun {
    /// The refresh lease, when this caller took it.
    lease: Option<Lease>,
    /// The key's generation, empty when it has none.
    generation: Vec<u8>,
    /// Whether the entry key exists (it may still read as a miss: tag-invalidated or corrupt).
    entry_exists: bool,
}

/// A refresh lease this caller holds.
///
/// Released by the fill script, or explicitly with [`release`](Lease::release). Dropped while
/// still held (the caller was cancelled or the loader panicked), it releases itself in a
/// background task, so that other callers need not wait out `lease_ttl`.
struct Lease {
    redis: Redis,
    key: Key,
    token: String,
    armed: bool,
}

impl Lease {
    async fn release(mut self) {
        if let Err(e) = release(&self.redis, &self.key, &self.token).await {
            tracing::debug!(key = %self.key, error = %e, "could not release refresh lease");
        }
        self.armed = false;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Outside a runtime (or while it shuts down) the lease simply expires.
        let (redis, key, token) = (
            self.redis.clone(),
            self.key.clone(),
            std::mem::take(&mut self.token),
        );
        redis_core::release_in_background(self.key.as_str(), async move {
            release(&redis, &key, &token).await
        });
    }
}

/// Releases a refresh lease if `token` still holds it (1 when it did).
async fn release(redis: &Redis, lease_key: &Key, token: &str) -> redis_core::Result<i64> {
    RELEASE.call().key(lease_key).arg(token).invoke(redis).await
}

impl Cache<Json> {
    /// Starts a builder for a cache whose keys live under `<keys>:cache`.
    ///
    /// Entries are `<keys>:cache:{<name>}` (with companions `:gen` and `:lease` on the same
    /// slot), tag versions `<keys>:cache:tag:{<tag>}`.
    pub fn builder(redis: Redis, keys: &KeySpace) -> CacheBuilder<Json> {
        CacheBuilder::new(redis, keys)
    }
}

impl<C: Codec> Cache<C> {
    pub(crate) fn from_parts(
        redis: Redis,
        keys: &KeySpace,
        codec: C,
        settings: Settings,
    ) -> Result<Self> {
        let entries = keys.pattern("cache")?;
        let tags = entries.pattern("tag")?;
        let (near, stop) = match settings.near {
            Some(config) => {
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                    redis_core::Error::invalid_config(
                        "a near cache must be built inside a Tokio runtime",
                    )
                })?;
                let near = Arc::new(Near::new(
                    config,
                    format!("{}:", entries.prefix()),
                    format!("{}:", tags.prefix()),
                ));
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
                near::spawn(&runtime, near.clone(), redis.clone(), stop_rx);
                (Some(near), Some(stop_tx))
            }
            None => (None, None),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                redis,
                entries,
                tags,
                codec,
                settings,
                flights: Flights::default(),
                near,
                _stop_tracking: stop,
            }),
        })
    }

    /// The key an entry named `name` is stored under.
    ///
    /// # Errors
    /// [`redis_core::Error::InvalidKey`] for an empty or oversized name.
    pub fn key(&self, name: &str) -> Result<Key> {
        Ok(self.inner.entries.key(name)?)
    }

    /// The key holding the version of `tag`.
    ///
    /// # Errors
    /// [`redis_core::Error::InvalidKey`] for an empty or oversized tag.
    pub fn tag_key(&self, tag: &str) -> Result<Key> {
        Ok(self.inner.tags.key(tag)?)
    }

    /// The underlying handle.
    pub fn redis(&self) -> &Redis {
        &self.inner.redis
    }

    /// Loads in flight in this process right now (not counting loads a write detached, which
    /// still run but are no longer joined).
    pub fn loads_in_flight(&self) -> usize {
        self.inner.flights.len()
    }

    /// Counters of the near cache; `None` when it is off.
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        self.inner.near.as_ref().map(|near| near.stats())
    }

    fn random(&self) -> f64 {
        (self.inner.settings.random)()
    }

    fn redis_down(&self, e: &redis_core::Error) -> bool {
        e.is_retryable() || e.is_connection_error() || e.is_timeout()
    }

    /// Applies the failure policy to a Redis error: `Ok(())` means "carry on without Redis".
    fn tolerate(&self, e: redis_core::Error, what: &str) -> Result<()> {
        if self.inner.settings.failure_policy == FailurePolicy::FailOpen && self.redis_down(&e) {
            tracing::warn!(error = %e, "redis unavailable during cache {what}; failing open");
            Ok(())
        } else {
            Err(e.into())
        }
    }

    // ----- cache-aside -------------------------------------------------------------------------

    /// Reads a fresh value. `None` for a miss, a "not found" entry, a stale entry (kept for
    /// [`get_or_load`](Self::get_or_load)), an entry whose tag was invalidated, or a corrupt
    /// payload (which is deleted and logged).
    ///
    /// One `GET`, plus one `GET` per tag when the entry has tags.
    ///
    /// # Errors
    /// Redis errors under [`FailurePolicy::FailClosed`] (under `FailOpen` they read as a miss);
    /// invalid names.
    pub async fn get<V: DeserializeOwned>(&self, name: &str) -> Result<Option<V>> {
        let key = self.key(name)?;
        match self.lookup::<V>(&key).await {
            Ok(Lookup::Fresh(found)) => Ok(found.value),
            Ok(Lookup::Stale(_) | Lookup::Miss) => Ok(None),
            Err(e) => self.tolerate(e, "read").map(|()| None),
        }
    }

    /// Stores `value` with the default TTL (jittered), fencing off fills of older loads.
    ///
    /// # Errors
    /// Redis and encoding errors; invalid names.
    pub async fn set<V: Serialize + ?Sized>(&self, name: &str, value: &V) -> Result<()> {
        self.set_with(name, value, &EntryOptions::default()).await
    }

    /// As [`set`](Self::set), with a TTL or tags.
    ///
    /// # Errors
    /// As [`set`](Self::set); invalid tags.
    pub async fn set_with<V: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &V,
        opts: &EntryOptions,
    ) -> Result<()> {
        let key = self.key(name)?;
        let tags = self.tag_versions(opts).await?;
        let (bytes, px) = self.envelope(Some(value), Duration::ZERO, opts, &tags)?;
        self.write(&key, Some((&bytes, px))).await?;
        Ok(())
    }

    /// Deletes an entry and fences off fills of loads that started before. True if it existed.
    ///
    /// # Errors
    /// Redis errors; invalid names.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        let key = self.key(name)?;
        self.write(&key, None).await
    }

    /// Returns the cached value or loads it, with stampede protection (see the crate docs).
    ///
    /// The loader returns `Ok(None)` for "not found", which is cached for the negative TTL.
    ///
    /// # Errors
    /// [`Error::Load`] when the loader fails and no stale value is available; Redis errors under
    /// [`FailurePolicy::FailClosed`]; invalid names.
    pub async fn get_or_load<V, F, Fut, E>(&self, name: &str, loader: F) -> Result<Option<V>>
    where
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Option<V>, E>>,
        E: Into<redis_core::BoxError>,
    {
        self.get_or_load_with(name, &EntryOptions::default(), loader)
            .await
    }

    /// As [`get_or_load`](Self::get_or_load), with a TTL or tags for the loaded entry.
    ///
    /// # Errors
    /// As [`get_or_load`](Self::get_or_load); invalid tags.
    pub async fn get_or_load_with<V, F, Fut, E>(
        &self,
        name: &str,
        opts: &EntryOptions,
        loader: F,
    ) -> Result<Option<V>>
    where
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Option<V>, E>>,
        E: Into<redis_core::BoxError>,
    {
        let key = self.key(name)?;
        let mut lead = None;
        let mut fallback = None;
        let mut redis_ok = true;
        for _ in 0..MAX_JOINS {
            redis_ok = true;
            fallback = match self.lookup::<V>(&key).await {
                Ok(Lookup::Fresh(found)) => {
                    if !self.early_refresh_due(&found) {
                        return Ok(found.value);
                    }
                    tracing::debug!(key = %key, "early refresh (xfetch)");
                    Some(found)
                }
                Ok(Lookup::Stale(found)) => Some(found),
                Ok(Lookup::Miss) => None,
                Err(e) => {
                    self.tolerate(e, "read")?;
                    redis_ok = false;
                    None
                }
            };
            match self.inner.flights.join(key.as_str()) {
                Role::Leader(l) => {
                    lead = Some(l);
                    break;
                }
                Role::Follower(rx) => {
                    if let Some(found) = fallback {
                        // Someone in this process is refreshing: serve what we have.
                        return Ok(found.value);
                    }
                    match flight::wait(rx).await {
                        Some(Ok(None)) => return Ok(None),
                        Some(Ok(Some(any))) => {
                            if let Some(v) = any.downcast_ref::<V>() {
                                return Ok(Some(v.clone()));
                            }
                        }
                        Some(Err(shared)) => {
                            if let Some(e) = shared.duplicate() {
                                return Err(e);
                            }
                        }
                        None => {}
                    }
                    fallback = None;
                }
            }
        }
        // Leader (or, after repeated unusable outcomes, on our own).
        let result = self.refresh(&key, opts, fallback, redis_ok, loader).await;
        if let Some(lead) = lead {
            let outcome = match &result {
                Ok(v) => Ok(v.clone().map(|v| Arc::new(v) as Arc<dyn Any + Send + Sync>)),
                Err(e) => Err(Arc::new(e.duplicate().unwrap_or_else(|| {
                    Error::Load(Arc::new(SharedFailure(e.to_string())))
                }))),
            };
            lead.finish(outcome);
        }
        result
    }

    // ----- write-through -----------------------------------------------------------------------

    /// Writes the source of truth with `writer`, then invalidates or updates the entry.
    ///
    /// The cache is touched only after `writer` succeeds, and always through a generation bump,
    /// so a reader that loaded the old value before the write cannot store it afterwards.
    ///
    /// # Errors
    /// [`Error::Write`] when `writer` fails (the cache is untouched); Redis errors after a
    /// successful write (the source holds the new value; the entry may be stale until its TTL).
    pub async fn write_through<V, F, Fut, E>(
        &self,
        name: &str,
        mode: WriteMode,
        writer: F,
    ) -> Result<V>
    where
        V: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<redis_core::BoxError>,
    {
        self.write_through_with(name, mode, &EntryOptions::default(), writer)
            .await
    }

    /// As [`write_through`](Self::write_through), with a TTL or tags for [`WriteMode::Update`].
    ///
    /// # Errors
    /// As [`write_through`](Self::write_through).
    pub async fn write_through_with<V, F, Fut, E>(
        &self,
        name: &str,
        mode: WriteMode,
        opts: &EntryOptions,
        writer: F,
    ) -> Result<V>
    where
        V: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<redis_core::BoxError>,
    {
        let key = self.key(name)?;
        let value = writer().await.map_err(|e| Error::Write(e.into()))?;
        match mode {
            WriteMode::Update => {
                let tags = self.tag_versions(opts).await?;
                let (bytes, px) = self.envelope(Some(&value), Duration::ZERO, opts, &tags)?;
                self.write(&key, Some((&bytes, px))).await?;
            }
            _ => {
                self.write(&key, None).await?;
            }
        }
        Ok(value)
    }

    // ----- tags --------------------------------------------------------------------------------

    /// Invalidates every entry tagged `tag`, in one command (`SET` of a new version), whatever
    /// the number of entries and on whichever cluster slots they live.
    ///
    /// # Errors
    /// Redis errors; an invalid tag.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        let key = self.tag_key(tag)?;
        let px = entry::millis(self.inner.settings.tag_ttl);
        let set = self
            .inner
            .redis
            .query::<()>(redis::cmd("SET").arg(&key).arg(token()).arg("PX").arg(px))
            .await;
        // Even a failed reply may hide an applied write: evict locally either way.
        if let Some(near) = &self.inner.near {
            near.invalidate(key.as_str().as_bytes());
        }
        set?;
        Ok(())
    }

    // ----- internals ---------------------------------------------------------------------------

    fn early_refresh_due<V>(&self, found: &Found<V>) -> bool {
        let beta = self.inner.settings.beta;
        beta > 0.0
            && entry::xfetch_due(
                entry::now_ms(),
                found.fresh_until_ms,
                found.delta_ms,
                beta,
                self.random(),
            )
    }

    /// One `GET`, decode, tag check. Corrupt payloads are removed and read as a miss.
    async fn lookup<V: DeserializeOwned>(
        &self,
        key: &Key,
    ) -> std::result::Result<Lookup<V>, redis_core::Error> {
        let ticket = match &self.inner.near {
            Some(near) => {
                if let Some(found) = self.near_lookup(near, key) {
                    return Ok(Lookup::Fresh(found));
                }
                near.ticket(key.as_str())
            }
            None => None,
        };
        let raw: Option<Vec<u8>> = self.inner.redis.query(redis::cmd("GET").arg(key)).await?;
        let Some(raw) = raw else {
            return Ok(Lookup::Miss);
        };
        let env = match entry::decode(&raw) {
            Ok(env) => env,
            Err(e) => {
                self.remove_corrupt(key, &raw, &e.to_string()).await;
                return Ok(Lookup::Miss);
            }
        };
        let value = match env.kind {
            Kind::Negative => None,
            Kind::Value => match self.inner.codec.decode::<V>(env.payload) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.remove_corrupt(key, &raw, &e.to_string()).await;
                    return Ok(Lookup::Miss);
                }
            },
        };
        if !env.tags.is_empty() {
            let reads = env.tags.iter().map(|(tag_key, _)| async move {
                let cmd = redis::cmd("GET").arg(*tag_key).clone();
                self.inner.redis.query::<Option<Vec<u8>>>(&cmd).await
            });
            let current = join_all(reads).await;
            for ((tag_key, version), now) in env.tags.iter().zip(current) {
                if now?.as_deref() != Some(*version) {
                    tracing::debug!(
                        key = %key,
                        tag = %String::from_utf8_lossy(tag_key),
                        "entry invalidated by its tag"
                    );
                    return Ok(Lookup::Miss);
                }
            }
        }
        let found = Found {
            value,
            fresh_until_ms: env.fresh_until_ms,
            delta_ms: env.delta_ms,
        };
        let now = entry::now_ms();
        if now >= found.fresh_until_ms {
            return Ok(Lookup::Stale(found));
        }
        if let (Some(near), Some(ticket)) = (&self.inner.near, ticket) {
            let tags = env.tags.iter().map(|(k, _)| Box::from(*k)).collect();
            let fresh_for = Duration::from_millis(found.fresh_until_ms - now);
            near.insert(key.as_str(), ticket, &raw, tags, fresh_for);
        }
        Ok(Lookup::Fresh(found))
    }

    /// A fresh entry from the near cache. Entries that turned stale or do not decode (as `V`)
    /// are dropped from it and read from Redis instead.
    fn near_lookup<V: DeserializeOwned>(&self, near: &Near, key: &Key) -> Option<Found<V>> {
        let raw = near.get(key.as_str())?;
        let found = entry::decode(&raw).ok().and_then(|env| {
            if entry::now_ms() >= env.fresh_until_ms {
                return None;
            }
            let value = match env.kind {
                Kind::Negative => None,
                Kind::Value => Some(self.inner.codec.decode::<V>(env.payload).ok()?),
            };
            Some(Found {
                value,
                fresh_until_ms: env.fresh_until_ms,
                delta_ms: env.delta_ms,
            })
        });
        if found.is_none() {
            near.remove(key.as_str());
        }
        found
    }

    async fn remove_corrupt(&self, key: &Key, raw: &[u8], error: &str) {
        tracing::warn!(key = %key, error = %error, len = raw.len(), "corrupt cache entry removed");
        let removed = REMOVE_CORRUPT
            .call()
            .key(key)
            .arg(raw)
            .invoke::<i64>(&self.inner.redis)
            .await;
        if let Err(e) = removed {
            tracing::warn!(key = %key, error = %e, "could not remove corrupt cache entry");
        }
    }

    /// The leader's path: lease, versions, load, conditional fill.
    async fn refresh<V, F, Fut, E>(
        &self,
        key: &Key,
        opts: &EntryOptions,
        mut fallback: Option<Found<V>>,
        redis_ok: bool,
        loader: F,
    ) -> Result<Option<V>>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Option<V>, E>>,
        E: Into<redis_core::BoxError>,
    {
        if !redis_ok {
            return run(loader).await.map(|(v, _)| v).map_err(Error::Load);
        }
        let lease_key = key.companion(LEASE);
        let begun = match self.begin(key, &lease_key).await {
            Ok(begun) if begun.lease.is_some() => Some(begun),
            Ok(_) => match fallback {
                // Another process refreshes; serve the stale (or early) value meanwhile.
                Some(found) => return Ok(found.value),
                None => match self.wait_for_holder::<V>(key, &lease_key).await {
                    Waited::Value(v) => return Ok(v),
                    Waited::Lease(begun) => Some(begun),
                    Waited::GiveUp => None,
                },
            },
            Err(e) => {
                if let Some(found) = fallback {
                    return Ok(found.value);
                }
                self.tolerate(e, "lease")?;
                None
            }
        };
        let (mut lease, generation) = match begun {
            Some(Begun {
                lease,
                generation,
                entry_exists,
            }) => {
                if fallback.is_none() && entry_exists {
                    // The lease was free but the entry exists: another process filled it (and
                    // released the lease) after our miss. Read it instead of loading again.
                    match self.lookup::<V>(key).await {
                        Ok(Lookup::Fresh(found)) => {
                            if let Some(lease) = lease {
                                lease.release().await;
                            }
                            return Ok(found.value);
                        }
                        Ok(Lookup::Stale(found)) => fallback = Some(found),
                        Ok(Lookup::Miss) | Err(_) => {}
                    }
                }
                (lease, Some(generation))
            }
            None => (None, None),
        };
        let versions = match self.versions(key, generation, opts).await {
            Ok(v) => Some(v),
            Err(e) => {
                if let Some(lease) = lease.take() {
                    lease.release().await;
                }
                match e {
                    Error::Core(e) => self.tolerate(e, "version read")?,
                    e => return Err(e),
                }
                None
            }
        };
        // From here until the fill, a cancelled or panicking load drops `lease`, whose guard
        // releases it in the background.
        match run(loader).await {
            Ok((value, took)) => {
                if let Some(versions) = versions {
                    self.fill(key, opts, value.as_ref(), took, versions, lease)
                        .await;
                } else if let Some(lease) = lease {
                    lease.release().await;
                }
                Ok(value)
            }
            Err(e) => {
                if let Some(lease) = lease {
                    lease.release().await;
                }
                match fallback {
                    Some(found) => {
                        tracing::warn!(key = %key, error = %e, "loader failed; serving the stale value");
                        Ok(found.value)
                    }
                    None => Err(Error::Load(e)),
                }
            }
        }
    }

    /// Takes the lease if free, reads the generation and whether the entry exists (one script,
    /// one round trip).
    async fn begin(
        &self,
        key: &Key,
        lease_key: &Key,
    ) -> std::result::Result<Begun, redis_core::Error> {
        let token = token();
        let px = entry::millis(self.inner.settings.lease_ttl);
        let (taken, generation, exists): (i64, Vec<u8>, i64) = BEGIN
            .call()
            .key(lease_key)
            .key(key.companion(GEN))
            .key(key)
            .arg(&token)
            .arg(px)
            .invoke(&self.inner.redis)
            .await?;
        Ok(Begun {
            lease: (taken == 1).then(|| Lease {
                redis: self.inner.redis.clone(),
                key: lease_key.clone(),
                token,
                armed: true,
            }),
            generation,
            entry_exists: exists == 1,
        })
    }

    /// Polls (5 ms doubling to 100 ms) until the lease frees up, the value appears, or
    /// `lease_wait` passes.
    ///
    /// The lease is tried before the entry is read: the holder's fill stores the entry and
    /// releases the lease in one script, so a lease found taken means the entry read next still
    /// shows any fill that happened before, and a lease won means the caller re-checks the
    /// entry ([`Begun::entry_exists`]).
    async fn wait_for_holder<V: DeserializeOwned>(&self, key: &Key, lease_key: &Key) -> Waited<V> {
        let deadline = Instant::now() + self.inner.settings.lease_wait;
        let mut pause = Duration::from_millis(5);
        while Instant::now() < deadline {
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_millis(100));
            match self.begin(key, lease_key).await {
                Ok(begun) if begun.lease.is_some() => return Waited::Lease(begun),
                Ok(_) => {}
                Err(_) => return Waited::GiveUp,
            }
            match self.lookup::<V>(key).await {
                Ok(Lookup::Fresh(found) | Lookup::Stale(found)) => {
                    return Waited::Value(found.value);
                }
                Ok(Lookup::Miss) => {}
                Err(_) => return Waited::GiveUp,
            }
        }
        tracing::warn!(key = %key, "gave up waiting for another process's load; loading here");
        Waited::GiveUp
    }

    /// The generation (unless [`begin`](Self::begin) read it) and tag versions, read before
    /// the load.
    async fn versions(
        &self,
        key: &Key,
        generation: Option<Vec<u8>>,
        opts: &EntryOptions,
    ) -> Result<Versions> {
        let tags = self.tag_versions(opts);
        let generation = match generation {
            Some(generation) => generation,
            None => {
                let gen_key = key.companion(GEN);
                let generation: Option<Vec<u8>> = self
                    .inner
                    .redis
                    .query(redis::cmd("GET").arg(&gen_key))
                    .await?;
                generation.unwrap_or_default()
            }
        };
        Ok(Versions {
            generation,
            tags: tags.await?,
        })
    }

    /// The current version of each tag, creating missing ones (`SET NX GET`, one per tag).
    async fn tag_versions(&self, opts: &EntryOptions) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if opts.tags.is_empty() {
            return Ok(Vec::new());
        }
        if opts.tags.len() > usize::from(u16::MAX) {
            return Err(redis_core::Error::invalid_config("too many tags on one entry").into());
        }
        let px = entry::millis(self.inner.settings.tag_ttl);
        let keys = opts
            .tags
            .iter()
            .map(|t| self.tag_key(t))
            .collect::<Result<Vec<_>>>()?;
        let reads = keys.iter().map(|k| async move {
            let fresh = token();
            let old: Option<Vec<u8>> = self
                .inner
                .redis
                .query(
                    redis::cmd("SET")
                        .arg(k)
                        .arg(&fresh)
                        .arg("NX")
                        .arg("GET")
                        .arg("PX")
                        .arg(px),
                )
                .await?;
            Ok::<_, Error>((
                k.as_str().as_bytes().to_vec(),
                old.unwrap_or_else(|| fresh.into_bytes()),
            ))
        });
        join_all(reads).await.into_iter().collect()
    }

    /// Encodes an entry; returns the bytes and the Redis TTL in ms (`None` = do not store).
    fn envelope<V: Serialize + ?Sized>(
        &self,
        value: Option<&V>,
        took: Duration,
        opts: &EntryOptions,
        tags: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(Vec<u8>, u64)> {
        let s = &self.inner.settings;
        let (kind, payload, fresh, grace) = match value {
            Some(v) => (
                Kind::Value,
                self.inner.codec.encode(v)?,
                opts.ttl.unwrap_or(s.ttl),
                s.grace,
            ),
            None => (Kind::Negative, Vec::new(), s.negative_ttl, Duration::ZERO),
        };
        if tags
            .iter()
            .any(|(k, v)| k.len() > 0xFFFF || v.len() > 0xFFFF)
        {
            return Err(redis_core::Error::invalid_config("tag key or version too long").into());
        }
        let fresh = entry::jittered_ttl(fresh, s.jitter, self.random());
        let fresh_ms = entry::millis(fresh);
        let delta_ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
        let bytes = entry::encode(
            kind,
            entry::now_ms().saturating_add(fresh_ms),
            delta_ms,
            tags,
            &payload,
        );
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        Ok((bytes, fresh_ms.saturating_add(grace_ms)))
    }

    /// Conditional fill after a load; failures are logged, never returned (the caller has its value).
    async fn fill<V: Serialize>(
        &self,
        key: &Key,
        opts: &EntryOptions,
        value: Option<&V>,
        took: Duration,
        versions: Versions,
        mut lease: Option<Lease>,
    ) {
        // Nothing to cache: the entry is deleted instead (still fenced by the generation), so a
        // stale value the load superseded is not served out of its grace period.
        let (bytes, px) = if value.is_none() && self.inner.settings.negative_ttl.is_zero() {
            (Vec::new(), 1)
        } else {
            match self.envelope(value, took, opts, &versions.tags) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "loaded value not cached");
                    (Vec::new(), 1)
                }
            }
        };
        let stored = STORE
            .call()
            .key(key)
            .key(key.companion(GEN))
            .key(key.companion(LEASE))
            .arg(versions.generation)
            .arg(bytes)
            .arg(px)
            .arg(lease.as_ref().map_or("", |l| l.token.as_str()))
            .invoke::<i64>(&self.inner.redis)
            .await;
        if stored.is_ok() {
            // The script released the lease if it still held our token.
            if let Some(lease) = &mut lease {
                lease.armed = false;
            }
        }
        match stored {
            Ok(1) => {}
            Ok(_) => {
                tracing::debug!(key = %key, "fill refused: the key was written during the load")
            }
            Err(e) => tracing::warn!(key = %key, error = %e, "could not store loaded value"),
        }
    }

    /// Bumps the generation, frees the refresh lease and stores (`Some`) or deletes (`None`)
    /// the entry; loads in flight in this process are detached from later callers.
    async fn write(&self, key: &Key, entry: Option<(&[u8], u64)>) -> Result<bool> {
        let call = WRITE
            .call()
            .key(key)
            .key(key.companion(GEN))
            .key(key.companion(LEASE))
            .arg(token())
            .arg(entry::millis(self.inner.settings.version_ttl));
        let call = match entry {
            Some((bytes, px)) => call.arg("set").arg(bytes).arg(px),
            None => call.arg("del").arg("").arg(1),
        };
        let written = call.invoke::<i64>(&self.inner.redis).await;
        // Evict at once rather than wait for the push (even a failed reply may hide an
        // applied write); readers that sent their GET before the write cannot store it now.
        if let Some(near) = &self.inner.near {
            near.invalidate(key.as_str().as_bytes());
        }
        // A load in flight in this process may have read the source before this write; callers
        // arriving from now on must not be handed its value.
        self.inner.flights.forget(key.as_str());
        Ok(written? > 0)
    }
}

/// A random 128-bit token, hex: lease owners, generations and tag versions.
fn token() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

/// Runs a loader and measures it.
async fn run<V, F, Fut, E>(loader: F) -> std::result::Result<(Option<V>, Duration), LoadError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = std::result::Result<Option<V>, E>>,
    E: Into<redis_core::BoxError>,
{
    let started = Instant::now();
    match loader().await {
        Ok(v) => Ok((v, started.elapsed())),
        Err(e) => {
            let e: redis_core::BoxError = e.into();
            Err(Arc::from(e))
        }
    }
}

/// The message of a leader's error that could not be handed to followers as is.
#[derive(Debug)]
struct SharedFailure(String);

impl fmt::Display for SharedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the load this call waited for failed: {}", self.0)
    }
}

impl std::error::Error for SharedFailure {}

#[cfg(test)]
mod tests {
    use redis_test_support::TestContext;

    use super::*;

    /// A reader decodes garbage, then a writer stores a good value before the reader's removal
    /// reaches Redis: the removal must leave the good value alone.
    #[tokio::test]
    async fn removing_a_corrupt_entry_spares_a_value_written_meanwhile() {
        let ctx = TestContext::new().await;
        let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
            .build()
            .unwrap();
        let key = cache.key("p").unwrap();
        // What the reader saw; by now a writer has replaced it.
        let seen = b"\xff\x00garbage".to_vec();
        cache.set("p", &7u32).await.unwrap();
        cache.remove_corrupt(&key, &seen, "test").await;
        assert_eq!(cache.get::<u32>("p").await.unwrap(), Some(7));

        // Bytes that are still there are removed.
        let _: () = ctx
            .redis()
            .query(redis::cmd("SET").arg(&key).arg(&seen).arg("EX").arg(60))
            .await
            .unwrap();
        cache.remove_corrupt(&key, &seen, "test").await;
        let exists: i64 = ctx
            .redis()
            .query(redis::cmd("EXISTS").arg(&key))
            .await
            .unwrap();
        assert_eq!(exists, 0);
    }

    /// XFetch's inputs: the stored delta is the measured load time, the logical expiry is the
    /// jittered TTL from the fill, and the Redis TTL adds the grace period.
    #[tokio::test]
    async fn a_fill_stores_the_load_time_and_the_logical_expiry() {
        let ctx = TestContext::new().await;
        let cache = Cache::builder(ctx.redis().clone(), &ctx.keyspace())
            .ttl(Duration::from_secs(100))
            .jitter(0.5)
            .grace(Duration::from_secs(20))
            .random_source(|| 0.5)
            .build()
            .unwrap();
        let before = entry::now_ms();
        let got = cache
            .get_or_load("p", || async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, std::io::Error>(Some(1u8))
            })
            .await
            .unwrap();
        let after = entry::now_ms();
        assert_eq!(got, Some(1));
        let key = cache.key("p").unwrap();
        let raw: Vec<u8> = ctx
            .redis()
            .query(redis::cmd("GET").arg(&key))
            .await
            .unwrap();
        let env = entry::decode(&raw).unwrap();
        assert!(env.delta_ms >= 50, "delta {}", env.delta_ms);
        assert!(
            u64::from(env.delta_ms) <= after - before,
            "delta {}",
            env.delta_ms
        );
        // 100 s shortened by jitter 0.5 * u 0.5: 75 s of freshness.
        assert!(
            env.fresh_until_ms >= before + 75_000 && env.fresh_until_ms <= after + 75_000,
            "fresh until {} (load from {before} to {after})",
            env.fresh_until_ms
        );
        let pttl: i64 = ctx
            .redis()
            .query(redis::cmd("PTTL").arg(&key))
            .await
            .unwrap();
        assert!((90_000..=95_000).contains(&pttl), "{pttl}");
    }
}
