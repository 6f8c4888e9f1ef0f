//! The load path of `get_or_load`: in-process single flight, then the leader's path (refresh
//! lease, versions read before the load, the load, a fill fenced by those versions).

use std::{
    any::Any,
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use redis_core::{Backoff, Codec, Key, duration_millis, random_token, redis};
use serde::{Serialize, de::DeserializeOwned};

use super::{
    Engine, GEN,
    read::{Found, Lookup},
    write::TagVersions,
};
use crate::{
    config::EntryOptions,
    error::{Error, LoadError, Result},
    flight::{self, Role},
    lease::{LEASE, Lease},
    metrics::{Metrics, Read},
    scripts::{BEGIN, STORE},
};

/// How many times a caller re-joins a load that ended without a usable outcome.
const MAX_JOINS: usize = 3;
/// How a caller with nothing to serve polls for another process's lease or value.
const LEASE_POLL: Backoff = Backoff::clamped(Duration::from_millis(5), Duration::from_millis(100));

/// Versions read before a load; the fill is refused if they changed.
struct Versions {
    /// Empty when the key has no generation.
    generation: Vec<u8>,
    tags: TagVersions,
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

impl<C: Codec> Engine<C> {
    /// Cache-aside with stampede protection (see
    /// [`Cache::get_or_load`](crate::Cache::get_or_load)); counts the read by what it served,
    /// which is recorded on `span`.
    pub(crate) async fn get_or_load<V, F, Fut, E>(
        &self,
        key: &Key,
        opts: &EntryOptions,
        loader: F,
        span: &tracing::Span,
    ) -> Result<Option<V>>
    where
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Option<V>, E>>,
        E: Into<redis_core::BoxError>,
    {
        let mut read = Read::Miss;
        let result = self.serve_or_load(key, opts, loader, &mut read).await;
        self.metrics.read(read, span);
        result
    }

    /// The cached value, or the value of a load (this caller's, or one it joined); `read` is
    /// set to what was served from the cache, and stays [`Read::Miss`] for a load.
    async fn serve_or_load<V, F, Fut, E>(
        &self,
        key: &Key,
        opts: &EntryOptions,
        loader: F,
        read: &mut Read,
    ) -> Result<Option<V>>
    where
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Option<V>, E>>,
        E: Into<redis_core::BoxError>,
    {
        let mut lead = None;
        let mut fallback = None;
        let mut redis_ok = true;
        let mut joined = false;
        for _ in 0..MAX_JOINS {
            redis_ok = true;
            fallback = match self.lookup::<V>(key).await {
                Ok(Lookup::Fresh(found)) => {
                    if !self.early_refresh_due(&found) {
                        *read = self.served(&found);
                        return Ok(found.value);
                    }
                    tracing::debug!(key = %key, "early refresh (xfetch)");
                    self.metrics.early_refreshes.increment(1);
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
            match self.flights.join(key.as_str()) {
                Role::Leader(l) => {
                    lead = Some(l);
                    break;
                }
                Role::Follower(rx) => {
                    // A caller counts once, however many loads it ends up joining.
                    if !std::mem::replace(&mut joined, true) {
                        self.metrics.coalesced.increment(1);
                    }
                    if let Some(found) = fallback {
                        // Someone in this process is refreshing: serve what we have.
                        *read = self.served(&found);
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
        let result = self
            .refresh(key, opts, fallback, redis_ok, loader, read)
            .await;
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

    /// The leader's path: lease, versions, load, conditional fill. `read` is set when a cached
    /// value is served instead of a load.
    async fn refresh<V, F, Fut, E>(
        &self,
        key: &Key,
        opts: &EntryOptions,
        mut fallback: Option<Found<V>>,
        redis_ok: bool,
        loader: F,
        read: &mut Read,
    ) -> Result<Option<V>>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Option<V>, E>>,
        E: Into<redis_core::BoxError>,
    {
        if !redis_ok {
            return run(&self.metrics, loader)
                .await
                .map(|(v, _)| v)
                .map_err(Error::Load);
        }
        let lease_key = key.companion(LEASE);
        let begun = match self.begin(key, &lease_key).await {
            Ok(begun) if begun.lease.is_some() => Some(begun),
            Ok(_) => match fallback {
                // Another process refreshes; serve the stale (or early) value meanwhile.
                Some(found) => {
                    *read = self.served(&found);
                    return Ok(found.value);
                }
                None => {
                    self.metrics.lease_waits.increment(1);
                    match self.wait_for_holder::<V>(key, &lease_key).await {
                        Waited::Value(v) => return Ok(v),
                        Waited::Lease(begun) => Some(begun),
                        Waited::GiveUp => None,
                    }
                }
            },
            Err(e) => {
                if let Some(found) = fallback {
                    *read = self.served(&found);
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
                            *read = self.served(&found);
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
        match run(&self.metrics, loader).await {
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
                        *read = self.served(&found);
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
        let token = random_token();
        let generation_key = key.companion(GEN);
        let (taken, generation, exists): (i64, Vec<u8>, i64) = BEGIN
            .call()
            .key(lease_key)
            .key(&generation_key)
            .key(key)
            .arg(&token)
            .arg(duration_millis(self.settings.lease_ttl))
            .invoke(&self.redis)
            .await?;
        Ok(Begun {
            lease: (taken == 1).then(|| Lease::held(self.redis.clone(), lease_key.clone(), token)),
            generation,
            entry_exists: exists == 1,
        })
    }

    /// Polls ([`LEASE_POLL`]: 5 ms doubling to 100 ms, jittered) until the lease frees up, the
    /// value appears, or `lease_wait` passes.
    ///
    /// The lease is tried before the entry is read: the holder's fill stores the entry and
    /// releases the lease in one script, so a lease found taken means the entry read next still
    /// shows any fill that happened before, and a lease won means the caller re-checks the
    /// entry ([`Begun::entry_exists`]).
    async fn wait_for_holder<V: DeserializeOwned>(&self, key: &Key, lease_key: &Key) -> Waited<V> {
        // `lease_wait` may be set to anything: a far deadline instead of an overflow.
        let deadline = Instant::now()
            .checked_add(self.settings.lease_wait)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        let mut attempt = 0;
        while Instant::now() < deadline {
            let pause = LEASE_POLL.delay(attempt);
            attempt = attempt.saturating_add(1);
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
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
                let generation: Option<Vec<u8>> = self
                    .redis
                    .query(redis::cmd("GET").arg(key.companion(GEN)))
                    .await?;
                generation.unwrap_or_default()
            }
        };
        Ok(Versions {
            generation,
            tags: tags.await?,
        })
    }

    /// Conditional fill after a load; failures are logged, never returned (the caller has its
    /// value).
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
        let (bytes, px) = if value.is_none() && self.settings.negative_ttl.is_zero() {
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
        let (generation_key, lease_key) = (key.companion(GEN), key.companion(LEASE));
        let stored = STORE
            .call()
            .key(key)
            .key(&generation_key)
            .key(&lease_key)
            .arg(&versions.generation)
            .arg(&bytes)
            .arg(px)
            .arg(lease.as_ref().map_or("", Lease::token))
            .invoke::<i64>(&self.redis)
            .await;
        if stored.is_ok() {
            // The script released the lease if it still held our token.
            if let Some(lease) = &mut lease {
                lease.disarm();
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
}

/// Runs a loader, measures it and counts it.
async fn run<V, F, Fut, E>(
    metrics: &Metrics,
    loader: F,
) -> std::result::Result<(Option<V>, Duration), LoadError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = std::result::Result<Option<V>, E>>,
    E: Into<redis_core::BoxError>,
{
    let started = Instant::now();
    let result = loader().await;
    let took = started.elapsed();
    metrics.load_duration.record_duration(took);
    metrics.load(result.is_ok());
    match result {
        Ok(v) => Ok((v, took)),
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
    use std::time::Duration;

    use redis_core::redis;

    use crate::{Cache, entry};

    /// XFetch's inputs: the stored delta is the measured load time, the logical expiry is the
    /// jittered TTL from the fill, and the Redis TTL adds the grace period.
    #[tokio::test]
    async fn a_fill_stores_the_load_time_and_the_logical_expiry() {
        let (redis, keys) = crate::engine::unit_test_server().await;
        let cache = Cache::builder(redis.clone(), &keys)
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
        let raw: Vec<u8> = redis.query(redis::cmd("GET").arg(&key)).await.unwrap();
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
        let pttl: i64 = redis.query(redis::cmd("PTTL").arg(&key)).await.unwrap();
        assert!((90_000..=95_000).contains(&pttl), "{pttl}");
    }
}
