//! Redlock: one lock over N independent masters, granted by a majority.

use std::{future::Future, sync::Arc, time::Duration};

use futures_util::future::{BoxFuture, join_all};
use redis_core::{Key, KeySpace, Redis, duration_millis};
use tokio::time::{Instant, timeout};

use crate::{
    acquire::{Acquirer, Attempt, PendingLease, acquire_verbs},
    config::{LeaseConfig, lease_setters, validity},
    error::{Error, Result},
    guard::LockGuard,
    lease::Lease,
    metrics::{DEFAULT_NAME, LeaseKind, Metrics, validate_name},
    scripts::{ACQUIRE, EXTEND, FENCE_SUFFIX, RAISE_FENCE, RELEASE},
};

/// Default time one instance may take to answer: 100 ms.
pub const DEFAULT_INSTANCE_TIMEOUT: Duration = Duration::from_millis(100);

/// A lock over N independent Redis masters (the Redlock algorithm), with the same guard API as
/// [`Lock`](crate::Lock).
///
/// An attempt sends the acquire script to every instance in parallel (each bounded by the
/// instance time-out) and succeeds when a majority (`N/2 + 1`) granted it and the lease is still
/// valid: `ttl - elapsed - drift` with `drift = ttl/100 + 2 ms`. A failed attempt releases
/// everywhere. Fencing tokens take a second round: the largest counter among the granting
/// instances is written back to a majority, so tokens keep increasing across any two majorities.
///
/// ```no_run
/// use redis_core::{KeySpace, Redis};
/// use redis_lock::Redlock;
///
/// # async fn demo() -> redis_lock::Result<()> {
/// let mut masters = Vec::new();
/// for port in [7001, 7002, 7003] {
///     masters.push(Redis::open(&format!("redis://127.0.0.1:{port}")).await?);
/// }
/// let redlock = Redlock::builder(masters, &KeySpace::new("myapp")?).build()?;
/// if let Some(guard) = redlock.try_acquire("report:daily").await? {
///     // ... at most one process runs this while the lease is valid
///     guard.release().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Redlock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    instances: Vec<Redis>,
    keys: KeySpace,
    lease: LeaseConfig,
    instance_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// Builds a [`Redlock`]; see [`Redlock::builder`].
#[derive(Debug)]
#[must_use]
pub struct RedlockBuilder {
    instances: Vec<Redis>,
    keys: KeySpace,
    lease: LeaseConfig,
    instance_timeout: Duration,
    name: String,
}

impl RedlockBuilder {
    lease_setters!();

    /// How long one instance may take to answer before it counts as failed. Keep it small next to
    /// the TTL so a dead master cannot eat the lease. Defaults to 100 ms.
    pub fn instance_timeout(mut self, timeout: Duration) -> Self {
        self.instance_timeout = timeout;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for no instances, a zero instance time-out or one not shorter than
    /// the TTL, and everything [`LockBuilder::build`](crate::LockBuilder::build) rejects.
    pub fn build(self) -> Result<Redlock> {
        self.lease.validate()?;
        validate_name(&self.name)?;
        if self.instances.is_empty() {
            return Err(Error::invalid_config("redlock needs at least one instance"));
        }
        if self.instance_timeout.is_zero() || self.instance_timeout >= self.lease.ttl {
            return Err(Error::invalid_config(format!(
                "instance time-out {:?} must be above zero and below the lease {:?}",
                self.instance_timeout, self.lease.ttl
            )));
        }
        for instance in &self.instances {
            crate::preflight::on_build(instance, &self.keys);
        }
        // Spans name the first instance as their server.
        let first = self.instances.first().cloned();
        Ok(Redlock {
            inner: Arc::new(Inner {
                keys: self.keys.pattern("lock")?,
                metrics: Metrics::register(&self.name, LeaseKind::Redlock, first),
                instances: self.instances,
                lease: self.lease,
                instance_timeout: self.instance_timeout,
            }),
        })
    }
}

impl Redlock {
    /// Starts building a Redlock over `instances` (independent masters, not replicas of each other
    /// and not one cluster), with keys under `keys`.
    pub fn builder(instances: Vec<Redis>, keys: &KeySpace) -> RedlockBuilder {
        RedlockBuilder {
            instances,
            keys: keys.clone(),
            lease: LeaseConfig::default(),
            instance_timeout: DEFAULT_INSTANCE_TIMEOUT,
            name: DEFAULT_NAME.to_owned(),
        }
    }

    /// How many instances must agree: `N/2 + 1`.
    pub fn quorum(&self) -> usize {
        self.inner.quorum()
    }

    acquire_verbs! {
        guard = LockGuard, name = resource;
        /// One attempt: the guard, or `None` when a majority of instances has it held by someone else.
        ///
        /// # Errors
        /// [`Error::NoQuorum`] when failing instances kept the attempt from reaching a majority;
        /// [`Error::Core`] for a bad resource name.
        try_acquire;
        /// Waits for `resource`, retrying after a random delay.
        ///
        /// # Errors
        /// [`Error::Timeout`] when the wait ran out with the resource held; [`Error::NoQuorum`] when
        /// too few instances answered until then.
        acquire;
        /// Runs `work` under the lock with the watchdog on; see [`Lock::with_lock`](crate::Lock::with_lock).
        ///
        /// # Errors
        /// As [`acquire`](Self::acquire); [`Error::Lost`] when the lease was lost while `work` ran.
        with_lock;
    }
}

impl Acquirer for Redlock {
    fn settings(&self) -> &LeaseConfig {
        &self.inner.lease
    }

    fn keys(&self) -> &KeySpace {
        &self.inner.keys
    }

    fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Acquire everywhere in parallel; on a majority, raise the fence on the granting instances;
    /// success needs a majority of raises and validity left, otherwise release everywhere.
    async fn try_once(
        &self,
        resource: &str,
        key: &Key,
        config: &LeaseConfig,
        _waiting: bool,
    ) -> Result<Attempt> {
        let inner = &self.inner;
        // Armed until the outcome is known: a cancelled attempt releases on every instance.
        let pending = PendingLease::new(
            resource,
            Arc::new(RedlockLease {
                inner: Arc::clone(inner),
                key: key.clone(),
            }),
        );
        let token = pending.token();
        let start = Instant::now();
        let votes = inner.ask_everywhere(key, token, config.ttl).await;
        let quorum = inner.quorum();
        if votes.granted.len() >= quorum {
            let fence = votes.highest_fence();
            let raised = inner.raise_fence(&votes, key, token, fence).await;
            if raised >= quorum && validity(config.ttl, start.elapsed()).is_some() {
                let (lease, token) = pending.settle();
                return Ok(Attempt::Acquired(LockGuard::new(
                    resource,
                    token,
                    fence,
                    start,
                    config,
                    lease,
                    Arc::clone(&inner.metrics),
                )));
            }
            if raised < quorum {
                inner.metrics.quorum_failure();
            }
        } else if votes.held < quorum {
            // Neither granted nor held by a majority: failures or a split vote.
            inner.metrics.quorum_failure();
        }

        // Not enough: undo what we got, everywhere (an instance that timed out may have set it).
        release_everywhere(inner, key, token).await;
        drop(pending.settle());
        if votes.granted.len() >= quorum || votes.failed == 0 || votes.held >= quorum {
            // Contention, or a grant that came too late to be useful: try again later.
            return Ok(Attempt::Held(
                votes.shortest_hold.map(Duration::from_millis),
            ));
        }
        Err(Error::NoQuorum {
            granted: votes.granted.len(),
            failed: votes.failed,
            needed: quorum,
        })
    }
}

/// What the instances answered to the first round of an attempt.
#[derive(Debug, Default)]
struct Votes {
    /// `(instance, its fencing counter)` for every instance that granted the lock.
    granted: Vec<(usize, u64)>,
    /// Instances where someone else holds it.
    held: usize,
    /// Instances that failed or did not answer in time.
    failed: usize,
    /// The shortest remaining lease among the holders, in ms.
    shortest_hold: Option<u64>,
}

impl Votes {
    fn highest_fence(&self) -> u64 {
        self.granted.iter().map(|&(_, f)| f).max().unwrap_or(0)
    }
}

impl Inner {
    fn quorum(&self) -> usize {
        self.instances.len() / 2 + 1
    }

    /// First round: the acquire script on every instance in parallel, each bounded by the
    /// instance time-out.
    async fn ask_everywhere(&self, key: &Key, token: &str, ttl: Duration) -> Votes {
        let fence_key = key.companion(FENCE_SUFFIX);
        let ttl_ms = duration_millis(ttl);
        let replies = join_all(self.instances.iter().map(|redis| {
            bounded(self.instance_timeout, async {
                let reply: (i64, i64) = ACQUIRE
                    .call()
                    .key(key)
                    .key(&fence_key)
                    .arg(token)
                    .arg(ttl_ms)
                    .invoke(redis)
                    .await?;
                Ok(reply)
            })
        }))
        .await;
        let mut votes = Votes::default();
        for (i, reply) in replies.into_iter().enumerate() {
            match reply {
                Ok((1, fence)) => votes.granted.push((i, u64::try_from(fence).unwrap_or(0))),
                Ok((_, pttl)) => {
                    votes.held += 1;
                    if let Ok(pttl) = u64::try_from(pttl) {
                        votes.shortest_hold =
                            Some(votes.shortest_hold.map_or(pttl, |s| s.min(pttl)));
                    }
                }
                Err(e) => {
                    tracing::debug!(instance = i, error = %e, "redlock instance failed");
                    votes.failed += 1;
                }
            }
        }
        votes
    }

    /// Second round: lifts the fencing counter of every granting instance to `fence`, while we
    /// own the lock there. Returns how many did.
    async fn raise_fence(&self, votes: &Votes, key: &Key, token: &str, fence: u64) -> usize {
        let fence_key = &key.companion(FENCE_SUFFIX);
        join_all(votes.granted.iter().map(|&(i, _)| {
            bounded(self.instance_timeout, async move {
                let ok: i64 = RAISE_FENCE
                    .call()
                    .key(key)
                    .key(fence_key)
                    .arg(token)
                    .arg(fence)
                    .invoke(&self.instances[i])
                    .await?;
                Ok(ok == 1)
            })
        }))
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(true)))
        .count()
    }
}

/// Runs `op` with a deadline; a time-out becomes a core time-out error.
async fn bounded<T>(limit: Duration, op: impl Future<Output = Result<T>>) -> Result<T> {
    match timeout(limit, op).await {
        Ok(result) => result,
        Err(_) => Err(Error::Core(redis_core::Error::Timeout(limit))),
    }
}

/// Releases on every instance; returns how many still held our token.
async fn release_everywhere(inner: &Inner, key: &Key, token: &str) -> (usize, Option<Error>) {
    let results = join_all(inner.instances.iter().map(|redis| {
        bounded(inner.instance_timeout, async move {
            let n: i64 = RELEASE.call().key(key).arg(token).invoke(redis).await?;
            Ok(n == 1)
        })
    }))
    .await;
    let mut released = 0;
    let mut first_error = None;
    for result in results {
        match result {
            Ok(true) => released += 1,
            Ok(false) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    (released, first_error)
}

#[derive(Debug)]
struct RedlockLease {
    inner: Arc<Inner>,
    key: Key,
}

impl Lease for RedlockLease {
    fn extend<'a>(&'a self, token: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let inner = &self.inner;
            let ttl_ms = duration_millis(ttl);
            let results = join_all(inner.instances.iter().map(|redis| {
                bounded(inner.instance_timeout, async move {
                    let n: i64 = EXTEND
                        .call()
                        .key(&self.key)
                        .arg(token)
                        .arg(ttl_ms)
                        .invoke(redis)
                        .await?;
                    Ok(n == 1)
                })
            }))
            .await;
            let kept = results.iter().filter(|r| matches!(r, Ok(true))).count();
            let refused = results.iter().filter(|r| matches!(r, Ok(false))).count();
            if kept >= inner.quorum() {
                return Ok(true);
            }
            if refused > inner.instances.len() - inner.quorum() {
                return Ok(false); // a majority no longer knows us: lost for good
            }
            Err(Error::NoQuorum {
                granted: kept,
                failed: inner.instances.len() - kept - refused,
                needed: inner.quorum(),
            })
        })
    }

    fn release<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let (released, error) = release_everywhere(&self.inner, &self.key, token).await;
            match error {
                Some(e) if released < self.inner.quorum() => Err(e),
                _ => Ok(released >= self.inner.quorum()),
            }
        })
    }
}
