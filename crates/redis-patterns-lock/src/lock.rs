//! The single-server lock: `SET NX PX` plus a fencing counter, compare-and-act release and extend.

use std::{sync::Arc, time::Duration};

use redis_core::{Key, KeySpace, Redis};

use crate::{
    acquire::{Acquirer, Attempt, acquire_verbs},
    config::{LeaseConfig, lease_setters},
    error::Result,
    fencing::Fencing,
    guard::LockGuard,
    lock_lease::LockLease,
    metrics::{DEFAULT_NAME, LeaseKind, Metrics, lease_span, validate_name},
    scripts::FENCE_SUFFIX,
    wake::{HandOver, Waiter, Waiters},
};

/// A lock on one Redis deployment (a server, a Sentinel-managed master, or a cluster: each
/// resource lives on one slot).
///
/// Cheap to clone. Keys: `<prefix>:lock:{<resource>}` holds the owner's token with a TTL,
/// `<prefix>:lock:{<resource>}:fence` the fencing counter (expiring a day after the last grant by default; see [`Fencing`]),
/// `<prefix>:lock:{<resource>}:waiters` marks a lock someone waits for (TTL: the holder's lease
/// plus a second).
///
/// A waiting [`acquire`](Self::acquire) is woken when the lock is released: the release publishes
/// on `<prefix>:lock:released` when someone waits, and the first waiting `acquire` of a `Lock`
/// (and its clones) subscribes to it on a connection of its own. A guard of the same `Lock`
/// wakes a local waiter directly. Without pub/sub (or while the subscription is down) waiters
/// fall back to the retry backoff.
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
    /// Everything behind one `Arc`: a clone is one reference count, not one per part.
    parts: Arc<LockParts>,
}

#[derive(Debug)]
struct LockParts {
    redis: Redis,
    keys: KeySpace,
    lease: LeaseConfig,
    metrics: Arc<Metrics>,
    fencing: Fencing,
    replica_ack: Option<Duration>,
    waiters: Arc<Waiters>,
}

/// Builds a [`Lock`]; see [`Lock::builder`].
#[derive(Debug)]
#[must_use]
pub struct LockBuilder {
    redis: Redis,
    keys: KeySpace,
    lease: LeaseConfig,
    name: String,
    fencing: Fencing,
    replica_ack: Option<Duration>,
}

impl LockBuilder {
    lease_setters!();

    /// How fencing tokens are made: a counter that expires a day after its last grant but never
    /// goes backwards (the default), a counter without TTL (consecutive tokens, one key per name
    /// ever locked), or none (the cheapest acquire). See [`Fencing`].
    pub fn fencing(mut self, fencing: Fencing) -> Self {
        self.fencing = fencing;
        self
    }

    /// A safer grant: after taking the lock, wait up to `timeout` for at least one replica to
    /// acknowledge it (`WAIT 1 <timeout>`, one more round trip), so the grant survives a
    /// failover of its master. Without an acknowledgement the grant is given back and the
    /// attempt fails with [`Error::NotReplicated`](crate::Error::NotReplicated) (retryable:
    /// `acquire` tries again until its wait runs out). On a cluster `WAIT` goes to every master
    /// and the smallest count is taken, so every master needs a replica. Off by default.
    pub fn replica_ack(mut self, timeout: Duration) -> Self {
        self.replica_ack = Some(timeout);
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a lease under 10 ms or above
    /// `u32::MAX` ms, a zero hold cap, a bad [`name`](Self::name) or fence horizon, a zero
    /// [`replica_ack`](Self::replica_ack) time-out;
    /// [`Error::Core`](crate::Error::Core) when the key space cannot take the `lock` segment.
    pub fn build(self) -> Result<Lock> {
        crate::preflight::on_build(&self.redis, &self.keys);
        self.lease.validate()?;
        self.fencing.validate()?;
        if self.replica_ack.is_some_and(|t| t.is_zero()) {
            // `WAIT 1 0` would block until a replica answers, however long that takes.
            return Err(crate::Error::invalid_config("replica_ack time-out is zero"));
        }
        validate_name(&self.name)?;
        let keys = self.keys.pattern("lock")?;
        let channel = format!("{}:released", keys.prefix());
        let metrics = Metrics::register(&self.name, LeaseKind::Lock, Some(self.redis.clone()));
        // A hand-over cannot wait for a replica's acknowledgement: off with `replica_ack`.
        let handover = self.replica_ack.is_none().then(|| HandOver {
            fencing: self.fencing,
            metrics: Arc::clone(&metrics),
        });
        Ok(Lock {
            parts: Arc::new(LockParts {
                keys,
                metrics,
                waiters: Waiters::new(self.redis.clone(), channel, handover),
                redis: self.redis,
                lease: self.lease,
                fencing: self.fencing,
                replica_ack: self.replica_ack,
            }),
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
            name: DEFAULT_NAME.to_owned(),
            fencing: Fencing::default(),
            replica_ack: None,
        }
    }

    /// How this lock makes fencing tokens.
    pub fn fencing(&self) -> Fencing {
        self.parts.fencing
    }

    /// The key holding `resource`'s owner token (its fencing counter is `<key>:fence`).
    ///
    /// # Errors
    /// [`Error::Core`](crate::Error::Core) for an empty or oversized resource name.
    pub fn key(&self, resource: &str) -> Result<Key> {
        Ok(self.parts.keys.key(resource)?)
    }

    acquire_verbs! {
        guard = LockGuard, name = resource;
        /// One attempt: the guard, or `None` when someone else holds `resource`.
        ///
        /// # Errors
        /// [`Error::Core`](crate::Error::Core) for a bad resource name or a failed command.
        try_acquire;
        /// Waits for `resource`: woken when it is released (see above), retrying on the jittered
        /// exponential backoff and at the end of the holder's lease. Returns within the configured
        /// wait plus [`WAIT_MARGIN`](crate::WAIT_MARGIN), even with an attempt still in flight.
        ///
        /// # Errors
        /// [`Error::Timeout`](crate::Error::Timeout) when the wait ran out with the resource still
        /// held; the last error when a failing server kept every attempt from deciding;
        /// [`Error::Core`](crate::Error::Core) for a bad name.
        acquire;
        /// Runs `work` while holding `resource`, with the watchdog on, and releases afterwards.
        /// `work` gets a [`LeaseHandle`](crate::LeaseHandle) (fence, "lost" signal). If the lease is lost first, `work`'s
        /// future is dropped (cancelled at its next `.await`) and [`Error::Lost`](crate::Error::Lost)
        /// is returned.
        ///
        /// # Errors
        /// As [`acquire`](Self::acquire); [`Error::Lost`](crate::Error::Lost) when the lease was lost
        /// while `work` ran or before it could be released.
        with_lock;
    }

    /// The last fencing token handed out for `resource` (0 if never locked, if its
    /// [`Fencing::Expiring`] counter has expired, or with [`Fencing::Off`]).
    ///
    /// # Errors
    /// [`Error::Core`](crate::Error::Core) for a bad name or a failed command.
    pub async fn last_fence(&self, resource: &str) -> Result<u64> {
        let span = lease_span!(
            self.parts.metrics,
            "lock.last_fence",
            fence = tracing::field::Empty
        );
        let operation = async || {
            let key = self.key(resource)?;
            let value: Option<u64> = self
                .parts
                .redis
                .query(redis_core::redis::cmd("GET").arg(key.companion(FENCE_SUFFIX)))
                .await?;
            let fence = value.unwrap_or(0);
            span.record("fence", fence);
            Ok(fence)
        };
        redis_core::in_span!(span, operation())
    }
}

impl Acquirer for Lock {
    fn settings(&self) -> &LeaseConfig {
        &self.parts.lease
    }

    fn keys(&self) -> &KeySpace {
        &self.parts.keys
    }

    fn metrics(&self) -> &Arc<Metrics> {
        &self.parts.metrics
    }

    async fn try_once(
        &self,
        resource: &str,
        key: &Key,
        config: &LeaseConfig,
        waiting: bool,
    ) -> Result<Attempt> {
        LockLease::new(
            self.parts.redis.clone(),
            key.clone(),
            Arc::clone(&self.parts.waiters),
        )
        .try_once(
            resource,
            config,
            self.parts.fencing,
            self.parts.replica_ack,
            waiting,
            &self.parts.metrics,
        )
        .await
    }

    fn waiter(&self, resource: &str, key: &Key) -> Option<Waiter> {
        Some(self.parts.waiters.enter(resource, key.as_str()))
    }
}
