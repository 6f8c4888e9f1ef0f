//! The public face: [`Cache`] and what a user can do with it. Every call names its key and hands
//! over to the engine (`crate::engine`); [`CacheBuilder`] sits next to it.

mod builder;

use std::{fmt, sync::Arc};

use redis_core::{Codec, Key, KeySpace, Redis, codec::Json, operation_span};
use serde::{Serialize, de::DeserializeOwned};
use tracing::field::Empty;

pub use builder::CacheBuilder;

use crate::{
    config::{EntryOptions, Settings, WriteMode},
    engine::Engine,
    error::{Error, Result},
    near::NearCacheStats,
};

/// A typed Redis cache. Cheap to clone; clones share settings and in-flight loads.
///
/// See the [crate docs](crate) for the guarantees.
pub struct Cache<C: Codec = Json> {
    engine: Arc<Engine<C>>,
}

impl<C: Codec> Clone for Cache<C> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
        }
    }
}

impl<C: Codec> fmt::Debug for Cache<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.engine.entries)
            .field("codec", &self.engine.codec)
            .field("settings", &self.engine.settings)
            .finish_non_exhaustive()
    }
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
    fn from_parts(redis: Redis, keys: &KeySpace, codec: C, settings: Settings) -> Result<Self> {
        Ok(Self {
            engine: Arc::new(Engine::new(redis, keys, codec, settings)?),
        })
    }

    #[cfg(test)]
    pub(crate) fn engine(&self) -> &Engine<C> {
        &self.engine
    }

    /// The key an entry named `name` is stored under.
    ///
    /// # Errors
    /// [`redis_core::Error::InvalidKey`] for an empty or oversized name.
    pub fn key(&self, name: &str) -> Result<Key> {
        Ok(self.engine.entries.key(name)?)
    }

    /// The key holding the version of `tag`.
    ///
    /// # Errors
    /// [`redis_core::Error::InvalidKey`] for an empty or oversized tag.
    pub fn tag_key(&self, tag: &str) -> Result<Key> {
        Ok(self.engine.tags.key(tag)?)
    }

    /// The underlying handle.
    pub fn redis(&self) -> &Redis {
        &self.engine.redis
    }

    /// Loads in flight in this process right now (not counting loads a write detached, which
    /// still run but are no longer joined).
    pub fn loads_in_flight(&self) -> usize {
        self.engine.flights.len()
    }

    /// Counters of the near cache; `None` when it is off.
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        self.engine.near.as_ref().map(|near| near.stats())
    }

    // ----- cache-aside -------------------------------------------------------------------------

    /// Reads a fresh value. `None` for a miss, a "not found" entry, a stale entry (kept for
    /// [`get_or_load`](Self::get_or_load)), an entry whose tag was invalidated, or a corrupt
    /// payload (which is deleted and logged).
    ///
    /// One `GET`, plus one `GET` per tag when the entry has tags.
    ///
    /// # Errors
    /// Redis errors under [`FailurePolicy::FailClosed`](crate::FailurePolicy::FailClosed) (under
    /// `FailOpen` they read as a miss); invalid names.
    pub async fn get<V: DeserializeOwned>(&self, name: &str) -> Result<Option<V>> {
        let span = operation_span!(
            self.engine.redis,
            "cache.get",
            name = %self.engine.settings.name,
            result = Empty,
        );
        redis_core::in_span!(span, self.engine.get(name, &span))
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
    /// As [`set`](Self::set); [`Error::InvalidConfig`] for options that cannot be stored (see
    /// [`EntryOptions`]), before anything is sent.
    pub async fn set_with<V: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &V,
        opts: &EntryOptions,
    ) -> Result<()> {
        let span =
            operation_span!(self.engine.redis, "cache.set", name = %self.engine.settings.name);
        let put = async || {
            let key = self.key(name)?;
            self.engine.check(opts)?;
            self.engine.put(&key, value, opts).await
        };
        redis_core::in_span!(span, put())
    }

    /// Deletes an entry and fences off fills of loads that started before. True if it existed.
    ///
    /// # Errors
    /// Redis errors; invalid names.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        let span = operation_span!(
            self.engine.redis,
            "cache.delete",
            name = %self.engine.settings.name,
            existed = Empty,
        );
        let delete = async || {
            let existed = self.engine.write(&self.key(name)?, None).await?;
            span.record("existed", existed);
            Ok(existed)
        };
        redis_core::in_span!(span, delete())
    }

    /// Returns the cached value or loads it, with stampede protection (see the crate docs).
    ///
    /// The loader returns `Ok(None)` for "not found", which is cached for the negative TTL.
    ///
    /// # Errors
    /// [`Error::Load`] when the loader fails and no stale value is available; Redis errors under
    /// [`FailurePolicy::FailClosed`](crate::FailurePolicy::FailClosed); invalid names.
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
    /// As [`get_or_load`](Self::get_or_load); [`Error::InvalidConfig`] for options that cannot be
    /// stored (see [`EntryOptions`]), before anything is sent, hit or miss.
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
        let span = operation_span!(
            self.engine.redis,
            "cache.get_or_load",
            name = %self.engine.settings.name,
            result = Empty,
        );
        let serve = async || {
            let key = self.key(name)?;
            self.engine.check(opts)?;
            self.engine.get_or_load(&key, opts, loader, &span).await
        };
        redis_core::in_span!(span, serve())
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
    /// As [`write_through`](Self::write_through); [`Error::InvalidConfig`] for options that
    /// cannot be stored (see [`EntryOptions`]), before `writer` runs.
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
        let span = operation_span!(
            self.engine.redis,
            "cache.write_through",
            name = %self.engine.settings.name,
            mode = ?mode,
        );
        let write = async || {
            let key = self.key(name)?;
            // Bad options must fail before the source is written, not after.
            self.engine.check(opts)?;
            let value = writer().await.map_err(|e| Error::Write(e.into()))?;
            match mode {
                WriteMode::Update => self.engine.put(&key, &value, opts).await?,
                _ => {
                    self.engine.write(&key, None).await?;
                }
            }
            Ok(value)
        };
        redis_core::in_span!(span, write())
    }

    // ----- tags --------------------------------------------------------------------------------

    /// Invalidates every entry tagged `tag`, in one command (`SET` of a new version), whatever
    /// the number of entries and on whichever cluster slots they live.
    ///
    /// # Errors
    /// Redis errors; an invalid tag.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        let span = operation_span!(
            self.engine.redis,
            "cache.invalidate_tag",
            name = %self.engine.settings.name,
        );
        let invalidate = async || self.engine.invalidate_tag(&self.tag_key(tag)?).await;
        redis_core::in_span!(span, invalidate())
    }
}
