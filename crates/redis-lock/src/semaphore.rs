//! A counting semaphore whose permits expire, so a crashed holder cannot keep one forever.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use redis_core::{Key, KeySpace, Redis, Script};
use tokio::time::Instant;

use crate::{
    error::{Error, Result},
    guard::{
        Attempt, Lease, LeaseHandle, LockGuard, PendingLease, Permit, acquire_loop, run_guarded,
    },
    lock::{FENCE_SUFFIX, lease_setters},
    options::{AcquireOptions, LeaseConfig, millis},
};

static SEM_ACQUIRE: Script =
    Script::new("semaphore_acquire", include_str!("scripts/sem_acquire.lua"));
static SEM_RELEASE: Script =
    Script::new("semaphore_release", include_str!("scripts/sem_release.lua"));
static SEM_EXTEND: Script = Script::new("semaphore_extend", include_str!("scripts/sem_extend.lua"));
/// Unexpired permits, by the clock of the node that holds the key (one round trip, right on a
/// cluster).
static SEM_HOLDERS: Script = Script::new(
    "semaphore_holders",
    "local t = redis.call('TIME')\n\
     local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n\
     return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now), '+inf')",
);

/// At most `permits` holders per name at any time; each permit is a lease that expires.
///
/// Holders live in a sorted set `<prefix>:semaphore:{<name>}` scored by expiry on the server's
/// clock; every acquisition first drops expired holders, in the same script, so a crashed holder's
/// permit comes back when its lease runs out. Permits are [`LockGuard`]s: fencing token, "lost"
/// signal, watchdog, release on drop.
///
/// ```no_run
/// use redis_core::{KeySpace, Redis};
/// use redis_lock::Semaphore;
///
/// # async fn demo() -> redis_lock::Result<()> {
/// let redis = Redis::open("redis://127.0.0.1:6379").await?;
/// let exports = Semaphore::builder(redis, &KeySpace::new("myapp")?, 4).build()?;
/// let permit = exports.acquire("pdf-export").await?; // at most 4 exports at once
/// // ... export ...
/// permit.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Semaphore {
    redis: Redis,
    keys: KeySpace,
    permits: u32,
    lease: LeaseConfig,
}

/// Builds a [`Semaphore`]; see [`Semaphore::builder`].
#[derive(Debug)]
#[must_use]
pub struct SemaphoreBuilder {
    redis: Redis,
    keys: KeySpace,
    permits: u32,
    lease: LeaseConfig,
}

impl SemaphoreBuilder {
    lease_setters!();

    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for zero permits and everything
    /// [`LockBuilder::build`](crate::LockBuilder::build) rejects.
    pub fn build(self) -> Result<Semaphore> {
        self.lease.validate()?;
        if self.permits == 0 {
            return Err(Error::InvalidConfig(
                "a semaphore needs at least one permit".into(),
            ));
        }
        Ok(Semaphore {
            keys: self.keys.pattern("semaphore")?,
            redis: self.redis,
            permits: self.permits,
            lease: self.lease,
        })
    }
}

impl Semaphore {
    /// Starts building a semaphore with `permits` permits per name, keys under `keys`. Every
    /// process using a name must agree on `permits`.
    pub fn builder(redis: Redis, keys: &KeySpace, permits: u32) -> SemaphoreBuilder {
        SemaphoreBuilder {
            redis,
            keys: keys.clone(),
            permits,
            lease: LeaseConfig::default(),
        }
    }

    /// The number of permits per name.
    pub fn permits(&self) -> u32 {
        self.permits
    }

    /// The key of the holders' sorted set for `name`.
    ///
    /// # Errors
    /// [`Error::Core`] for an empty or oversized name.
    pub fn key(&self, name: &str) -> Result<Key> {
        Ok(self.keys.key(name)?)
    }

    /// One attempt: a permit, or `None` when all are taken.
    ///
    /// # Errors
    /// [`Error::Core`] for a bad name or a failed command.
    pub async fn try_acquire(&self, name: &str) -> Result<Option<Permit>> {
        self.try_acquire_with_options(name, &AcquireOptions::new())
            .await
    }

    /// [`try_acquire`](Self::try_acquire) with per-call overrides.
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire), plus [`Error::InvalidConfig`] for bad options.
    pub async fn try_acquire_with_options(
        &self,
        name: &str,
        options: &AcquireOptions,
    ) -> Result<Option<Permit>> {
        let config = self.lease.with(options)?;
        let key = self.key(name)?;
        match self.attempt(name, &key, &config).await? {
            Attempt::Acquired(guard) => Ok(Some(guard)),
            Attempt::Held(_) => Ok(None),
        }
    }

    /// Waits for a permit (jittered backoff, woken early when the first permit is due to expire).
    ///
    /// # Errors
    /// [`Error::Timeout`] when none became free within the wait.
    pub async fn acquire(&self, name: &str) -> Result<Permit> {
        self.acquire_with_options(name, &AcquireOptions::new())
            .await
    }

    /// [`acquire`](Self::acquire) with per-call overrides.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), plus [`Error::InvalidConfig`] for bad options.
    pub async fn acquire_with_options(
        &self,
        name: &str,
        options: &AcquireOptions,
    ) -> Result<Permit> {
        let config = self.lease.with(options)?;
        let key = self.key(name)?;
        acquire_loop(&config, || self.attempt(name, &key, &config)).await
    }

    /// Runs `work` holding a permit, with the watchdog on; see [`Lock::with_lock`](crate::Lock::with_lock).
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire); [`Error::Lost`] when the permit was lost while `work` ran.
    pub async fn with_permit<F, Fut, T>(&self, name: &str, work: F) -> Result<T>
    where
        F: FnOnce(LeaseHandle) -> Fut,
        Fut: Future<Output = T>,
    {
        let options = AcquireOptions::new().auto_extend(true);
        let permit = self.acquire_with_options(name, &options).await?;
        run_guarded(permit, work).await
    }

    /// How many unexpired permits of `name` are out now.
    ///
    /// # Errors
    /// [`Error::Core`] for a bad name or a failed command.
    pub async fn holders(&self, name: &str) -> Result<u64> {
        let key = self.key(name)?;
        let count: u64 = SEM_HOLDERS.call().key(&key).invoke(&self.redis).await?;
        Ok(count)
    }

    async fn attempt(&self, name: &str, key: &Key, config: &LeaseConfig) -> Result<Attempt> {
        // Armed until the reply is in: a cancelled or failed request gives its permit back.
        let pending = PendingLease::new(
            name,
            Arc::new(SemaphoreLease {
                redis: self.redis.clone(),
                key: key.clone(),
            }),
        );
        let start = Instant::now();
        let (taken, value): (i64, i64) = SEM_ACQUIRE
            .call()
            .key(key)
            .key(key.companion(FENCE_SUFFIX))
            .arg(pending.token())
            .arg(millis(config.ttl))
            .arg(self.permits)
            .invoke(&self.redis)
            .await?;
        if taken != 1 {
            drop(pending.settle());
            let hint = u64::try_from(value).ok().map(Duration::from_millis);
            return Ok(Attempt::Held(hint));
        }
        let fence = u64::try_from(value)
            .map_err(|_| Error::UnexpectedReply(format!("fencing counter {value}")))?;
        let (lease, token) = pending.settle();
        Ok(Attempt::Acquired(LockGuard::new(
            name, token, fence, start, config, lease,
        )))
    }
}

#[derive(Debug)]
struct SemaphoreLease {
    redis: Redis,
    key: Key,
}

impl Lease for SemaphoreLease {
    fn extend<'a>(&'a self, token: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let n: i64 = SEM_EXTEND
                .call()
                .key(&self.key)
                .arg(token)
                .arg(millis(ttl))
                .invoke(&self.redis)
                .await?;
            Ok(n == 1)
        })
    }

    fn release<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let n: i64 = SEM_RELEASE
                .call()
                .key(&self.key)
                .arg(token)
                .invoke(&self.redis)
                .await?;
            Ok(n == 1)
        })
    }
}
