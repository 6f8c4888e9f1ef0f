//! A counting semaphore whose permits expire, so a crashed holder cannot keep one forever.

use std::sync::Arc;

use redis_core::{Key, KeySpace, Redis};

use crate::{
    acquire::{Acquirer, Attempt, acquire_verbs},
    config::{LeaseConfig, lease_setters},
    error::{Error, Result},
    guard::Permit,
    lease::{SEMAPHORE, ScriptLease},
    metrics::{DEFAULT_NAME, LeaseKind, Metrics, lease_span, validate_name},
    scripts::SEM_HOLDERS,
};

/// At most `permits` holders per name at any time; each permit is a lease that expires.
///
/// Holders live in a sorted set `<prefix>:lock:semaphore:{<name>}` scored by expiry on the
/// server's clock; every acquisition first drops expired holders, in the same script, so a crashed
/// holder's permit comes back when its lease runs out. Permits are [`LockGuard`](crate::LockGuard)s:
/// fencing token, "lost" signal, watchdog, release on drop.
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
    metrics: Arc<Metrics>,
}

/// Builds a [`Semaphore`]; see [`Semaphore::builder`].
#[derive(Debug)]
#[must_use]
pub struct SemaphoreBuilder {
    redis: Redis,
    keys: KeySpace,
    permits: u32,
    lease: LeaseConfig,
    name: String,
}

impl SemaphoreBuilder {
    lease_setters!();

    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for zero permits and everything
    /// [`LockBuilder::build`](crate::LockBuilder::build) rejects.
    pub fn build(self) -> Result<Semaphore> {
        crate::preflight::on_build(&self.redis, &self.keys);
        self.lease.validate()?;
        validate_name(&self.name)?;
        if self.permits == 0 {
            return Err(Error::invalid_config(
                "a semaphore needs at least one permit",
            ));
        }
        Ok(Semaphore {
            keys: self.keys.pattern("lock")?.pattern("semaphore")?,
            metrics: Metrics::register(&self.name, LeaseKind::Semaphore, Some(self.redis.clone())),
            redis: self.redis,
            permits: self.permits,
            lease: self.lease,
        })
    }
}

impl Semaphore {
    /// Starts building a semaphore with `permits` permits per name, keys under `keys`
    /// (`<prefix>:lock:semaphore:{<name>}`). Every process using a name must agree on `permits`.
    pub fn builder(redis: Redis, keys: &KeySpace, permits: u32) -> SemaphoreBuilder {
        SemaphoreBuilder {
            redis,
            keys: keys.clone(),
            permits,
            lease: LeaseConfig::default(),
            name: DEFAULT_NAME.to_owned(),
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

    acquire_verbs! {
        guard = Permit, name = name;
        /// One attempt: a permit, or `None` when all are taken.
        ///
        /// # Errors
        /// [`Error::Core`] for a bad name or a failed command.
        try_acquire;
        /// Waits for a permit (jittered backoff, woken early when the first permit is due to expire).
        ///
        /// # Errors
        /// [`Error::Timeout`] when none became free within the wait.
        acquire;
        /// Runs `work` holding a permit, with the watchdog on; see [`Lock::with_lock`](crate::Lock::with_lock).
        ///
        /// # Errors
        /// As [`acquire`](Self::acquire); [`Error::Lost`] when the permit was lost while `work` ran.
        with_permit;
    }

    /// How many unexpired permits of `name` are out now, by the clock of the node holding the key.
    ///
    /// # Errors
    /// [`Error::Core`] for a bad name or a failed command.
    pub async fn holders(&self, name: &str) -> Result<u64> {
        let span = lease_span!(
            self.metrics,
            "lock.holders",
            holders = tracing::field::Empty
        );
        let operation = async || {
            let key = self.key(name)?;
            let count: u64 = SEM_HOLDERS.call().key(&key).invoke(&self.redis).await?;
            span.record("holders", count);
            Ok(count)
        };
        redis_core::in_span!(span, operation())
    }
}

impl Acquirer for Semaphore {
    fn settings(&self) -> &LeaseConfig {
        &self.lease
    }

    fn keys(&self) -> &KeySpace {
        &self.keys
    }

    fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    async fn try_once(
        &self,
        name: &str,
        key: &Key,
        config: &LeaseConfig,
        _waiting: bool,
    ) -> Result<Attempt> {
        ScriptLease::new(self.redis.clone(), key.clone(), &SEMAPHORE)
            .try_once(name, config, Some(self.permits), &self.metrics)
            .await
    }
}
