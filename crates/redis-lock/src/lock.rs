//! The single-server lock: `SET NX PX` plus a fencing counter, compare-and-act release and extend.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use redis_core::{Key, KeySpace, Redis, Script};
use tokio::time::Instant;

use crate::{
    error::{Error, Result},
    guard::{Attempt, Lease, LeaseHandle, LockGuard, PendingLease, acquire_loop, run_guarded},
    options::{AcquireOptions, LeaseConfig, millis},
};

pub(crate) static ACQUIRE: Script =
    Script::new("lock_acquire", include_str!("scripts/acquire.lua"));
pub(crate) static RELEASE: Script =
    Script::new("lock_release", include_str!("scripts/release.lua"));
pub(crate) static EXTEND: Script = Script::new("lock_extend", include_str!("scripts/extend.lua"));

/// Suffix of the fencing counter, a companion of the lock key on the same cluster slot.
pub(crate) const FENCE_SUFFIX: &str = "fence";

/// Consuming setters shared by every builder of this crate.
macro_rules! lease_setters {
    () => {
        /// The lease length: how long a crashed holder blocks others. Defaults to 30 s; at least 10 ms.
        pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
            self.lease.ttl = ttl;
            self
        }

        /// How long `acquire` waits for a held resource before [`Error::Timeout`](crate::Error::Timeout).
        /// Defaults to 10 s.
        pub fn wait(mut self, wait: std::time::Duration) -> Self {
            self.lease.wait = wait;
            self
        }

        /// Bounds of the jittered exponential backoff between attempts of `acquire`: the first
        /// pause is about `min`, then it doubles up to `max`. Defaults to 10 ms and 200 ms.
        pub fn retry_delay(mut self, min: std::time::Duration, max: std::time::Duration) -> Self {
            self.lease.retry_min = min;
            self.lease.retry_max = max;
            self
        }

        /// Whether guards renew their lease in the background (about every `ttl / 3`) while they
        /// live. Defaults to `false`; `with_lock` always turns it on.
        pub fn auto_extend(mut self, on: bool) -> Self {
            self.lease.auto_extend = on;
            self
        }

        /// The longest the watchdog keeps a lease alive, counted from acquisition; after that the
        /// lease runs out and the guard reports it lost. Defaults to no cap.
        pub fn max_hold(mut self, max: std::time::Duration) -> Self {
            self.lease.max_hold = Some(max);
            self
        }
    };
}
pub(crate) use lease_setters;

/// A lock on one Redis deployment (a server, a Sentinel-managed master, or a cluster: each
/// resource lives on one slot).
///
/// Cheap to clone. Keys: `<prefix>:lock:{<resource>}` holds the owner's token with a TTL,
/// `<prefix>:lock:{<resource>}:fence` the fencing counter (no TTL).
///
/// ```no_run
/// use std::time::Duration;
/// use redis_core::{KeySpace, Redis};
/// use redis_lock::Lock;
///
/// # async fn demo() -> redis_lock::Result<()> {
/// let redis = Redis::open("redis://127.0.0.1:6379").await?;
/// let lock = Lock::builder(redis, &KeySpace::new("myapp")?)
///     .ttl(Duration::from_secs(10))
///     .build()?;
/// let guard = lock.acquire("invoice:42").await?;
/// println!("fencing token {}", guard.fence());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Lock {
    redis: Redis,
    keys: KeySpace,
    lease: LeaseConfig,
}

/// Builds a [`Lock`]; see [`Lock::builder`].
#[derive(Debug)]
#[must_use]
pub struct LockBuilder {
    redis: Redis,
    keys: KeySpace,
    lease: LeaseConfig,
}

impl LockBuilder {
    lease_setters!();

    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a lease under 10 ms or above `u32::MAX` ms, a zero or inverted
    /// retry delay, or a zero hold cap; [`Error::Core`] when the key space cannot take the `lock` segment.
    pub fn build(self) -> Result<Lock> {
        self.lease.validate()?;
        Ok(Lock {
            keys: self.keys.pattern("lock")?,
            redis: self.redis,
            lease: self.lease,
        })
    }
}

impl Lock {
    /// Starts building a lock whose keys live under `keys` (`<prefix>:lock:{<resource>}`).
    pub fn builder(redis: Redis, keys: &KeySpace) -> LockBuilder {
        LockBuilder {
            redis,
            keys: keys.clone(),
            lease: LeaseConfig::default(),
        }
    }

    /// The key holding `resource`'s owner token (its fencing counter is `<key>:fence`).
    ///
    /// # Errors
    /// [`Error::Core`] for an empty or oversized resource name.
    pub fn key(&self, resource: &str) -> Result<Key> {
        Ok(self.keys.key(resource)?)
    }

    /// One attempt: the guard, or `None` when someone else holds `resource`.
    ///
    /// # Errors
    /// [`Error::Core`] for a bad resource name or a failed command.
    pub async fn try_acquire(&self, resource: &str) -> Result<Option<LockGuard>> {
        self.try_acquire_with_options(resource, &AcquireOptions::new())
            .await
    }

    /// [`try_acquire`](Self::try_acquire) with per-call overrides.
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire), plus [`Error::InvalidConfig`] for bad options.
    pub async fn try_acquire_with_options(
        &self,
        resource: &str,
        options: &AcquireOptions,
    ) -> Result<Option<LockGuard>> {
        let config = self.lease.with(options)?;
        let key = self.key(resource)?;
        match self.attempt(resource, &key, &config).await? {
            Attempt::Acquired(guard) => Ok(Some(guard)),
            Attempt::Held(_) => Ok(None),
        }
    }

    /// Waits for `resource` (jittered exponential backoff, no longer than the configured wait).
    ///
    /// # Errors
    /// [`Error::Timeout`] when the wait ran out with the resource still held; the last error
    /// when a failing server kept every attempt from deciding; [`Error::Core`] for a bad name.
    pub async fn acquire(&self, resource: &str) -> Result<LockGuard> {
        self.acquire_with_options(resource, &AcquireOptions::new())
            .await
    }

    /// [`acquire`](Self::acquire) with per-call overrides.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), plus [`Error::InvalidConfig`] for bad options.
    pub async fn acquire_with_options(
        &self,
        resource: &str,
        options: &AcquireOptions,
    ) -> Result<LockGuard> {
        let config = self.lease.with(options)?;
        let key = self.key(resource)?;
        acquire_loop(&config, || self.attempt(resource, &key, &config)).await
    }

    /// Runs `work` while holding `resource`, with the watchdog on, and releases afterwards.
    /// `work` gets a [`LeaseHandle`] (fence, "lost" signal). If the lease is lost first, `work`'s
    /// future is dropped (cancelled at its next `.await`) and [`Error::Lost`] is returned.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire); [`Error::Lost`] when the lease was lost while `work` ran or
    /// before it could be released.
    pub async fn with_lock<F, Fut, T>(&self, resource: &str, work: F) -> Result<T>
    where
        F: FnOnce(LeaseHandle) -> Fut,
        Fut: Future<Output = T>,
    {
        let options = AcquireOptions::new().auto_extend(true);
        let guard = self.acquire_with_options(resource, &options).await?;
        run_guarded(guard, work).await
    }

    /// The last fencing token handed out for `resource` (0 if never locked).
    ///
    /// # Errors
    /// [`Error::Core`] for a bad name or a failed command.
    pub async fn last_fence(&self, resource: &str) -> Result<u64> {
        let key = self.key(resource)?;
        let value: Option<u64> = self
            .redis
            .query(redis_core::redis::cmd("GET").arg(key.companion(FENCE_SUFFIX)))
            .await?;
        Ok(value.unwrap_or(0))
    }

    async fn attempt(&self, resource: &str, key: &Key, config: &LeaseConfig) -> Result<Attempt> {
        // Armed until the reply is in: a cancelled or failed request gives its token back.
        let pending = PendingLease::new(
            resource,
            Arc::new(SingleLease {
                redis: self.redis.clone(),
                key: key.clone(),
            }),
        );
        let start = Instant::now();
        let (taken, value): (i64, i64) = ACQUIRE
            .call()
            .key(key)
            .key(key.companion(FENCE_SUFFIX))
            .arg(pending.token())
            .arg(millis(config.ttl))
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
            resource, token, fence, start, config, lease,
        )))
    }
}

#[derive(Debug)]
struct SingleLease {
    redis: Redis,
    key: Key,
}

impl Lease for SingleLease {
    fn extend<'a>(&'a self, token: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let n: i64 = EXTEND
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
            let n: i64 = RELEASE
                .call()
                .key(&self.key)
                .arg(token)
                .invoke(&self.redis)
                .await?;
            Ok(n == 1)
        })
    }
}
