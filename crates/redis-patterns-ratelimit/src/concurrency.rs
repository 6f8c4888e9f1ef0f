//! [`ConcurrencyLimiter`]: at most N in flight per identity, with leases that expire so a crashed
//! holder frees its slot.

use std::{fmt, sync::Arc, time::Duration};

use redis_core::{KeySpace, Redis};
use tracing::Instrument;

use crate::{
    config::DEFAULT_LEASE,
    decision::Decision,
    error::{Error, Result},
    limit::{MAX_LIMIT, MAX_PERIOD, micros},
    metrics::{self, ConcurrencyMetrics},
    permit::Permit,
    scripts::{CONCURRENCY_ACQUIRE, CONCURRENCY_IN_FLIGHT},
};

/// Limits how many operations per identity run at once. Cheap to clone.
///
/// A permit is a lease: it frees its slot when released, when dropped (released in the background
/// on the current Tokio runtime), or at the latest when its lease runs out, so a holder that
/// crashed does not block the slot for ever. Long operations [`extend`](Permit::extend) it.
///
/// ```no_run
/// use std::time::Duration;
/// use redis_ratelimit::{Acquired, ConcurrencyLimiter, redis_core::KeySpace};
///
/// # async fn demo(redis: redis_core::Redis) -> redis_ratelimit::Result<()> {
/// let keys = KeySpace::new("myapp")?; // keys `myapp:ratelimit:concurrency:{<identity>}`
/// let exports = ConcurrencyLimiter::builder(redis, &keys, 2)
///     .lease(Duration::from_secs(60))
///     .build()?;
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
    name: Arc<str>,
    record_identity: bool,
    metrics: Arc<ConcurrencyMetrics>,
}

impl fmt::Debug for ConcurrencyLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimiter")
            .field("name", &self.inner.name)
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
            Self::Granted(permit) => permit.decision(),
            Self::Denied(decision) => decision,
        }
    }
}

impl ConcurrencyLimiter {
    /// Starts a limiter of at most `max_in_flight` permits per identity, with keys under `keys`:
    /// `<keys>:ratelimit:concurrency:{<identity>}`.
    pub fn builder(redis: Redis, keys: &KeySpace, max_in_flight: u64) -> ConcurrencyLimiterBuilder {
        ConcurrencyLimiterBuilder {
            redis,
            keys: keys.clone(),
            max: max_in_flight,
            lease: DEFAULT_LEASE,
            name: metrics::DEFAULT_NAME.to_owned(),
            record_identity: false,
        }
    }

    /// The name of this limiter in its metrics and spans.
    pub fn name(&self) -> &str {
        &self.inner.name
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
        let span = redis_core::operation_span!(
            inner.redis,
            "ratelimit.acquire",
            name = %inner.name,
            identity = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        if inner.record_identity {
            span.record("identity", identity);
        }
        async {
            let acquired = self.acquire(identity).await;
            let outcome = match &acquired {
                Ok(acquired) => {
                    let granted = matches!(acquired, Acquired::Granted(_));
                    inner.metrics.acquisition(granted);
                    if granted { "acquired" } else { "rejected" }
                }
                Err(_) => "error",
            };
            span.record("outcome", outcome);
            acquired
        }
        .instrument(span.clone())
        .await
    }

    /// The acquisition of [`try_acquire`](Self::try_acquire), without its span and metrics.
    async fn acquire(&self, identity: &str) -> Result<Acquired> {
        let inner = &*self.inner;
        let key = inner.keys.key(identity)?;
        // The permit exists before the request, so dropping it (this future cancelled, or an
        // error after which the lease may exist) releases whatever the script may have granted.
        let mut permit = Permit::armed(
            inner.redis.clone(),
            inner.name.clone(),
            key,
            redis_core::random_token(),
            inner.lease,
            Decision::exceeds_capacity(inner.max),
        );
        let reply: Vec<i64> = CONCURRENCY_ACQUIRE
            .call()
            .key(permit.key())
            .arg(inner.max)
            .arg(micros(inner.lease))
            .arg(permit.id())
            .invoke(&inner.redis)
            .await?;
        let decision = Decision::from_reply(inner.max, &reply)
            .ok_or_else(|| Error::unexpected_reply(&reply))?;
        if !decision.is_allowed() {
            permit.disarm();
            return Ok(Acquired::Denied(decision));
        }
        permit.granted(decision, inner.metrics.clone());
        Ok(Acquired::Granted(permit))
    }

    /// How many permits of `identity` are alive now.
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire).
    pub async fn in_flight(&self, identity: &str) -> Result<u64> {
        let inner = &*self.inner;
        let span = redis_core::operation_span!(
            inner.redis,
            "ratelimit.in_flight",
            name = %inner.name,
            identity = tracing::field::Empty,
            in_flight = tracing::field::Empty,
        );
        if inner.record_identity {
            span.record("identity", identity);
        }
        async {
            let key = inner.keys.key(identity)?;
            let count: u64 = CONCURRENCY_IN_FLIGHT
                .call()
                .key(&key)
                .invoke(&inner.redis)
                .await?;
            span.record("in_flight", count);
            Ok(count)
        }
        .instrument(span.clone())
        .await
    }
}

/// Builds a [`ConcurrencyLimiter`]; [`build`](Self::build) validates.
#[must_use]
pub struct ConcurrencyLimiterBuilder {
    redis: Redis,
    keys: KeySpace,
    max: u64,
    lease: Duration,
    name: String,
    record_identity: bool,
}

impl fmt::Debug for ConcurrencyLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimiterBuilder")
            .field("name", &self.name)
            .field("keys", &self.keys)
            .field("max", &self.max)
            .field("lease", &self.lease)
            .field("record_identity", &self.record_identity)
            .finish_non_exhaustive()
    }
}

impl ConcurrencyLimiterBuilder {
    /// The limiter's name: the `name` label of its metrics and the `name` field of its spans
    /// (its permits' included). 1 to 64 characters of `A-Z a-z 0-9 _ . -`, checked by
    /// [`build`](Self::build). Defaults to `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Records the identity in the `identity` field of the `ratelimit.acquire` and
    /// `ratelimit.in_flight` spans. Defaults to false (identities are often personal data).
    /// Never a metric label either way.
    pub fn record_identity(mut self, record: bool) -> Self {
        self.record_identity = record;
        self
    }

    /// How long a permit lives unless released or extended. Defaults to 30 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Validates and builds the limiter.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for zero permits, a lease under a millisecond or above ten
    /// years, or an invalid name.
    pub fn build(self) -> Result<ConcurrencyLimiter> {
        crate::preflight::on_build(&self.redis, &self.keys);
        metrics::validate_name(&self.name)?;
        if self.max == 0 || self.max > MAX_LIMIT {
            return Err(Error::invalid_config(format!(
                "concurrency: max in flight must be between 1 and {MAX_LIMIT}"
            )));
        }
        if self.lease < Duration::from_millis(1) || self.lease > MAX_PERIOD {
            return Err(Error::invalid_config(
                "concurrency: lease must be between 1 ms and ten years",
            ));
        }
        Ok(ConcurrencyLimiter {
            inner: Arc::new(Inner {
                redis: self.redis,
                keys: self.keys.pattern("ratelimit")?.pattern("concurrency")?,
                max: self.max,
                lease: self.lease,
                metrics: ConcurrencyMetrics::new(&self.name),
                name: self.name.into(),
                record_identity: self.record_identity,
            }),
        })
    }
}
