//! [`ConcurrencyLimiter`]: at most N in flight per identity, with leases that expire so a crashed
//! holder frees its slot.

use std::{fmt, sync::Arc, time::Duration};

use redis_core::{Key, KeySpace, Redis, Script};

use crate::{
    decision::Decision,
    error::{Error, Result},
    limit::{MAX_LIMIT, MAX_PERIOD},
};

static ACQUIRE: Script = Script::new(
    "ratelimit_concurrency_acquire",
    include_str!("scripts/concurrency_acquire.lua"),
);
static RELEASE: Script = Script::new(
    "ratelimit_concurrency_release",
    include_str!("scripts/concurrency_release.lua"),
);
/// Live leases, by the clock of the node that holds the key (one round trip, right on a cluster).
static IN_FLIGHT: Script = Script::new(
    "ratelimit_concurrency_in_flight",
    "local t = redis.call('TIME')\n\
     local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n\
     return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now), '+inf')",
);

/// The scripts a [`ConcurrencyLimiter`] acquires and releases (or extends) with, for benchmarks
/// and callers that drive them directly. Contracts: `docs/ratelimit.md`.
pub fn concurrency_scripts() -> (&'static Script, &'static Script) {
    (&ACQUIRE, &RELEASE)
}

/// Limits how many operations per identity run at once. Cheap to clone.
///
/// A permit is a lease: it frees its slot when released, when dropped (released in the background
/// on the current Tokio runtime), or at the latest when its lease runs out, so a holder that
/// crashed does not block the slot for ever. Long operations [`extend`](Permit::extend) it.
///
/// ```no_run
/// use std::time::Duration;
/// use redis_ratelimit::{Acquired, ConcurrencyLimiter};
///
/// # async fn demo(redis: redis_core::Redis) -> redis_ratelimit::Result<()> {
/// let exports = ConcurrencyLimiter::builder(redis, 2).lease(Duration::from_secs(60)).build()?;
/// match exports.try_acquire("tenant:7").await? {
///     Acquired::Granted(permit) => {
///         // ... run the export ...
///         permit.release().await?;
///     }
///     Acquired::Denied(decision) => println!("busy, retry in {:?}", decision.retry_after()),
///     _ => {}
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConcurrencyLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    keys: KeySpace,
    max: u64,
    lease: Duration,
}

impl fmt::Debug for ConcurrencyLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimiter")
            .field("keys", &self.inner.keys)
            .field("max", &self.inner.max)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

/// The result of [`ConcurrencyLimiter::try_acquire`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Acquired {
    /// A slot is yours until the permit is released, dropped or its lease runs out.
    Granted(Permit),
    /// Every slot is taken; `retry_after` is when the earliest lease runs out (a release may come sooner).
    Denied(Decision),
}

impl Acquired {
    /// The permit, if one was granted.
    pub fn permit(self) -> Option<Permit> {
        match self {
            Self::Granted(permit) => Some(permit),
            Self::Denied(_) => None,
        }
    }

    /// The decision (limit, remaining slots, retry_after).
    pub fn decision(&self) -> &Decision {
        match self {
            Self::Granted(permit) => &permit.decision,
            Self::Denied(decision) => decision,
        }
    }
}

impl ConcurrencyLimiter {
    /// Starts a limiter of at most `max_in_flight` permits per identity.
    pub fn builder(redis: Redis, max_in_flight: u64) -> ConcurrencyLimiterBuilder {
        ConcurrencyLimiterBuilder {
            redis,
            max: max_in_flight,
            lease: Duration::from_secs(30),
            keys: None,
        }
    }

    /// The most permits per identity.
    pub fn max_in_flight(&self) -> u64 {
        self.inner.max
    }

    /// Takes a slot for `identity` if one is free, in one round trip.
    ///
    /// Cancellation-safe: if this future is dropped, or fails, after the request may have reached
    /// Redis, the lease it may have taken is released in the background (as a dropped
    /// [`Permit`]) instead of holding the slot until it runs out.
    ///
    /// # Errors
    /// [`redis_core::Error::InvalidKey`] for an empty or oversized identity; Redis failures.
    pub async fn try_acquire(&self, identity: &str) -> Result<Acquired> {
        let inner = &*self.inner;
        let key = inner.keys.key(identity)?;
        // The permit exists before the request, so dropping it (this future cancelled, or an
        // error after which the lease may exist) releases whatever the script may have granted.
        let mut permit = Permit {
            redis: inner.redis.clone(),
            key,
            id: format!("{:032x}", rand::random::<u128>()),
            lease: inner.lease,
            decision: Decision::exceeds_capacity(inner.max),
            released: false,
        };
        let reply: Vec<i64> = ACQUIRE
            .call()
            .key(&permit.key)
            .arg(inner.max)
            .arg(micros(inner.lease))
            .arg(&permit.id)
            .invoke(&inner.redis)
            .await?;
        let decision = Decision::from_reply(inner.max, &reply)
            .ok_or_else(|| Error::UnexpectedReply(format!("{reply:?}")))?;
        if !decision.is_allowed() {
            permit.released = true;
            return Ok(Acquired::Denied(decision));
        }
        permit.decision = decision;
        Ok(Acquired::Granted(permit))
    }

    /// How many permits of `identity` are alive now.
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire).
    pub async fn in_flight(&self, identity: &str) -> Result<u64> {
        let key = self.inner.keys.key(identity)?;
        let count: u64 = IN_FLIGHT.call().key(&key).invoke(&self.inner.redis).await?;
        Ok(count)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Builds a [`ConcurrencyLimiter`]; [`build`](Self::build) validates.
#[must_use]
pub struct ConcurrencyLimiterBuilder {
    redis: Redis,
    max: u64,
    lease: Duration,
    keys: Option<KeySpace>,
}

impl fmt::Debug for ConcurrencyLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimiterBuilder")
            .field("max", &self.max)
            .field("lease", &self.lease)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl ConcurrencyLimiterBuilder {
    /// How long a permit lives unless released or extended. Defaults to 30 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Where keys live: `<keys>:concurrency:{<identity>}`. Defaults to `ratelimit`.
    pub fn keys(mut self, keys: KeySpace) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Validates and builds the limiter.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for zero permits, a lease under a millisecond or above ten years.
    pub fn build(self) -> Result<ConcurrencyLimiter> {
        if self.max == 0 || self.max > MAX_LIMIT {
            return Err(Error::config(format!(
                "concurrency: max in flight must be between 1 and {MAX_LIMIT}"
            )));
        }
        if self.lease < Duration::from_millis(1) || self.lease > MAX_PERIOD {
            return Err(Error::config(
                "concurrency: lease must be between 1 ms and ten years",
            ));
        }
        let base = match self.keys {
            Some(keys) => keys,
            None => KeySpace::new("ratelimit")?,
        };
        Ok(ConcurrencyLimiter {
            inner: Arc::new(Inner {
                redis: self.redis,
                keys: base.pattern("concurrency")?,
                max: self.max,
                lease: self.lease,
            }),
        })
    }
}

/// One slot of a [`ConcurrencyLimiter`]. Release it when done; dropping it releases it in the
/// background (on the current Tokio runtime, if any); otherwise the lease runs out.
#[must_use = "a permit holds a slot until released, dropped or expired"]
pub struct Permit {
    redis: Redis,
    key: Key,
    id: String,
    lease: Duration,
    decision: Decision,
    released: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("key", &self.key)
            .field("id", &self.id)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

impl Permit {
    /// The decision that granted this permit (`remaining` = slots still free then).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Pushes the lease's end to a full lease from now.
    ///
    /// # Errors
    /// Redis failures. `Ok(false)` when the lease had already run out (the slot may be someone else's).
    pub async fn extend(&self) -> Result<bool> {
        let alive: i64 = RELEASE
            .call()
            .key(&self.key)
            .arg(micros(self.lease))
            .arg(&self.id)
            .invoke(&self.redis)
            .await?;
        Ok(alive == 1)
    }

    /// Frees the slot now.
    ///
    /// Cancellation-safe: if this future is dropped before Redis answers, the permit is released
    /// in the background as on drop.
    ///
    /// # Errors
    /// Redis failures (one more release is tried in the background, else the lease runs out by
    /// itself). `Ok(false)` when it had already expired.
    pub async fn release(mut self) -> Result<bool> {
        let alive: i64 = RELEASE
            .call()
            .key(&self.key)
            .arg(0)
            .arg(&self.id)
            .invoke(&self.redis)
            .await?;
        // Only once Redis has answered: a release cut short leaves it to `Drop`.
        self.released = true;
        Ok(alive == 1)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let redis = self.redis.clone();
        let key = self.key.clone();
        let id = std::mem::take(&mut self.id);
        redis_core::release_in_background(self.key.as_str(), async move {
            RELEASE
                .call()
                .key(&key)
                .arg(0)
                .arg(&id)
                .invoke::<i64>(&redis)
                .await
        });
    }
}
