//! [`RateLimiter`]: checks an identity against a [`Limit`] with one script call.

use std::{fmt, sync::Arc, time::Duration};

use redis_core::{KeySpace, Redis};
use tracing::Instrument;

use crate::{
    block_cache::BlockCache,
    config::{FailurePolicy, LOCAL_DENIAL_WAIT},
    decision::{Decision, Outcome, Source},
    engine::{Check, Coalescer},
    error::{Error, Result},
    limit::{Algorithm, Limit},
    local::LocalLimiter,
    metrics::{self, LimiterMetrics},
    scripts::script,
};

/// Checks identities against a [`Limit`] stored in Redis. Cheap to clone.
///
/// ```no_run
/// use std::time::Duration;
/// use redis_ratelimit::{Limit, RateLimiter, redis_core::KeySpace};
///
/// # async fn demo(redis: redis_core::Redis) -> redis_ratelimit::Result<()> {
/// let keys = KeySpace::new("myapp")?;
/// let limiter =
///     RateLimiter::builder(redis, &keys, Limit::gcra(100, Duration::from_secs(60), 10)).build()?;
/// let decision = limiter.check("user:42").await?; // key `myapp:ratelimit:gcra:{user:42}`
/// if !decision.is_allowed() {
///     println!("slow down, retry in {:?}", decision.retry_after());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    keys: KeySpace,
    limit: Limit,
    policy: FailurePolicy,
    fallback: Option<LocalLimiter>,
    block_cache: Option<BlockCache>,
    coalescer: Option<Arc<Coalescer>>,
    name: String,
    record_identity: bool,
    metrics: Arc<LimiterMetrics>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.inner.name)
            .field("keys", &self.inner.keys)
            .field("limit", &self.inner.limit)
            .field("policy", &self.inner.policy)
            .field("block_cache", &self.inner.block_cache.is_some())
            .field("coalesce", &self.inner.coalescer.is_some())
            .finish_non_exhaustive()
    }
}

/// The in-process fallback limiter a policy asks for, if any.
fn fallback(policy: &FailurePolicy) -> Option<LocalLimiter> {
    match policy {
        FailurePolicy::Local(local) => Some(LocalLimiter::new(*local)),
        _ => None,
    }
}

impl RateLimiter {
    /// Starts a limiter of `limit` on `redis`, with keys under `keys`:
    /// `<keys>:ratelimit:<algorithm>:{<identity>}`. Give each limited resource (an API, a login
    /// form) its own key space, e.g. `KeySpace::new("myapp")?.pattern("login")?`.
    pub fn builder(redis: Redis, keys: &KeySpace, limit: Limit) -> RateLimiterBuilder {
        RateLimiterBuilder {
            redis,
            keys: keys.clone(),
            limit,
            policy: FailurePolicy::ReturnError,
            block_cache: 0,
            coalesce: false,
            name: metrics::DEFAULT_NAME.to_owned(),
            record_identity: false,
        }
    }

    /// The name of this limiter in its metrics and spans.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The IETF draft's `RateLimit-Policy` item of this limiter: its limit under its name (see
    /// [`Limit::policy_item`]).
    pub fn policy_item(&self) -> String {
        self.inner.limit.policy_item(&self.inner.name)
    }

    /// The IETF draft's fields (draft-ietf-httpapi-ratelimit-headers-11) for a decision of this
    /// limiter: `RateLimit-Policy`, `RateLimit`, and `Retry-After` on a denial. See
    /// [`Decision::draft_headers`].
    pub fn draft_headers(&self, decision: &Decision) -> Vec<(&'static str, String)> {
        decision.draft_headers(&self.policy_item())
    }

    /// The limit this limiter sends with every check.
    pub fn limit(&self) -> &Limit {
        &self.inner.limit
    }

    /// A limiter sharing everything with this one but `limit`. State is kept: the limit travels
    /// with every call, so raising or lowering it applies to the next check, with what was
    /// already used counting against the new numbers. The new limiter starts with an empty block
    /// cache and fallback state; it keeps the name and records into the same metrics.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `limit` does not validate, or changes the algorithm (whose
    /// keys have another layout).
    pub fn with_limit(&self, limit: Limit) -> Result<Self> {
        limit.validate()?;
        if limit.algorithm() != self.inner.limit.algorithm() {
            return Err(Error::invalid_config(
                "with_limit keeps the algorithm; build a new limiter for another one",
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                redis: self.inner.redis.clone(),
                keys: self.inner.keys.clone(),
                limit,
                policy: self.inner.policy.clone(),
                fallback: fallback(&self.inner.policy),
                block_cache: self
                    .inner
                    .block_cache
                    .as_ref()
                    .map(|c| BlockCache::new(c.capacity())),
                coalescer: self.inner.coalescer.clone(),
                name: self.inner.name.clone(),
                record_identity: self.inner.record_identity,
                metrics: self.inner.metrics.clone(),
            }),
        })
    }

    /// The Redis key that holds `identity`'s state (the sliding log adds a `:seq` companion).
    ///
    /// # Errors
    /// [`redis_core::Error::InvalidKey`] for an empty or oversized identity.
    pub fn key(&self, identity: &str) -> Result<redis_core::Key> {
        Ok(self.inner.keys.key(identity)?)
    }

    /// Checks one unit for `identity`. Same as [`check_n`](Self::check_n) with a cost of 1.
    ///
    /// # Errors
    /// As [`check_n`](Self::check_n).
    pub async fn check(&self, identity: &str) -> Result<Decision> {
        self.check_n(identity, 1).await
    }

    /// Checks and, if allowed, takes `cost` units for `identity`, in one round trip.
    ///
    /// A denial is an `Ok` decision ([`Decision::is_allowed`] is false); a cost above the limit's
    /// capacity is [`Outcome::ExceedsCapacity`], answered without a round trip.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a cost of 0; [`redis_core::Error::InvalidKey`] for an empty
    /// or oversized identity; Redis failures unless the [`FailurePolicy`] answers them.
    pub async fn check_n(&self, identity: &str, cost: u64) -> Result<Decision> {
        let inner = &*self.inner;
        let span = redis_core::operation_span!(
            inner.redis,
            "ratelimit.check",
            name = %inner.name,
            algorithm = inner.limit.algorithm().name(),
            cost,
            identity = tracing::field::Empty,
            outcome = tracing::field::Empty,
            source = tracing::field::Empty,
        );
        if inner.record_identity {
            span.record("identity", identity);
        }
        async {
            let result = self.decide(identity, cost).await;
            match &result {
                Ok(decision) => {
                    inner.metrics.decision(decision);
                    span.record("outcome", metrics::outcome_field(decision.outcome()));
                    span.record("source", metrics::source_field(decision.source()));
                }
                Err(_) => {
                    span.record("outcome", "error");
                }
            }
            result
        }
        .instrument(span.clone())
        .await
    }

    /// The decision of [`check_n`](Self::check_n), without its span and metrics.
    async fn decide(&self, identity: &str, cost: u64) -> Result<Decision> {
        let inner = &*self.inner;
        if cost == 0 {
            return Err(Error::InvalidArgument("cost must be at least 1"));
        }
        let limit = &inner.limit;
        if cost > limit.capacity() {
            return Ok(Decision::exceeds_capacity(limit.capacity()));
        }
        let key = inner.keys.key(identity)?;
        if let Some(cache) = &inner.block_cache
            && let Some(decision) = cache.get(identity, cost)
        {
            return Ok(decision);
        }
        let reply = match &inner.coalescer {
            Some(coalescer) => {
                let check = Check {
                    parts: vec![(key, *limit)],
                    cost,
                };
                match coalescer.check(check).await {
                    Ok(mut replies) => Ok(replies.pop().map(Vec::from).unwrap_or_default()),
                    Err(Error::Core(e)) => Err(e),
                    Err(e) => return Err(e),
                }
            }
            None => {
                {
                    let mut call = script(limit.algorithm()).call().key(&key);
                    if limit.algorithm() == Algorithm::SlidingLog {
                        call = call.companion(&key, "seq");
                    }
                    call.arg(limit.capacity())
                        .arg(limit.period_us())
                        .arg(cost)
                        .arg(limit.rate())
                        .invoke::<Vec<i64>>(&inner.redis)
                }
                .await
            }
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) if e.is_retryable() => return self.unreachable(identity, cost, e),
            Err(e) => return Err(e.into()),
        };
        let decision = Decision::from_reply(limit.capacity(), &reply)
            .ok_or_else(|| Error::unexpected_reply(&reply))?;
        if let Some(cache) = &inner.block_cache
            && decision.outcome() == Outcome::Denied
        {
            cache.insert(identity, cost, decision);
        }
        Ok(decision)
    }

    fn unreachable(&self, identity: &str, cost: u64, e: redis_core::Error) -> Result<Decision> {
        let cap = self.inner.limit.capacity();
        tracing::debug!(error = %e, policy = ?self.inner.policy, "rate limit check without redis");
        let wait = LOCAL_DENIAL_WAIT;
        if !matches!(self.inner.policy, FailurePolicy::ReturnError) {
            self.inner.metrics.fallback();
        }
        match (&self.inner.policy, &self.inner.fallback) {
            (FailurePolicy::FailOpen, _) => Ok(
                Decision::allowed(cap, cap - cost, Duration::ZERO).with_source(Source::FailOpen)
            ),
            (FailurePolicy::FailClosed, _) => {
                Ok(Decision::denied(cap, 0, wait, wait).with_source(Source::FailClosed))
            }
            (FailurePolicy::Local(fallback), Some(local)) => {
                let decision = local.check(identity, cost);
                // The cost fits the real limit (checked before the round trip), only not this
                // process's share of it: that is "not now", never "can never pass".
                let decision = if decision.can_never_pass() {
                    Decision::denied(fallback.capacity(), 0, wait, wait)
                } else {
                    decision
                };
                Ok(decision.with_source(Source::Fallback))
            }
            _ => Err(e.into()),
        }
    }
}

/// Builds a [`RateLimiter`]; [`build`](Self::build) validates.
#[must_use]
pub struct RateLimiterBuilder {
    redis: Redis,
    keys: KeySpace,
    limit: Limit,
    policy: FailurePolicy,
    block_cache: usize,
    coalesce: bool,
    name: String,
    record_identity: bool,
}

impl fmt::Debug for RateLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterBuilder")
            .field("name", &self.name)
            .field("keys", &self.keys)
            .field("limit", &self.limit)
            .field("policy", &self.policy)
            .field("block_cache", &self.block_cache)
            .field("coalesce", &self.coalesce)
            .field("record_identity", &self.record_identity)
            .finish_non_exhaustive()
    }
}

impl RateLimiterBuilder {
    /// The limiter's name: the `name` label of its metrics and the `name` field of its spans.
    /// 1 to 64 characters of `A-Z a-z 0-9 _ . -`, checked by [`build`](Self::build). Defaults
    /// to `"default"`. Give each limiter of a process its own.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Records the checked identity in the `identity` field of the `ratelimit.check` span.
    /// Defaults to false: identities (user ids, API keys, addresses) often are personal data or
    /// secrets. Never a metric label either way.
    pub fn record_identity(mut self, record: bool) -> Self {
        self.record_identity = record;
        self
    }

    /// What to do when Redis is unreachable. Defaults to [`FailurePolicy::ReturnError`].
    pub fn on_redis_error(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Keeps up to `capacity` recently denied identities in process memory and answers their
    /// checks locally, without a round trip, until their `retry_after` has passed. Only checks
    /// costing at least as much as the denied one are answered from the cache. Defaults to 0 (off).
    ///
    /// The cache trades exactness for load: a limit raised, or units given back, on Redis in the
    /// meantime are noticed only when the cached denial runs out.
    pub fn block_cache(mut self, capacity: usize) -> Self {
        self.block_cache = capacity;
        self
    }

    /// Coalesces concurrent checks: checks made while an earlier call of this limiter (or a
    /// clone) is in flight queue up and go out together, as one script call per cluster slot
    /// (one call on a single server), as soon as that call returns. No timer: a lone check is
    /// sent at once. Each check keeps its identity, cost and limit, and is decided exactly as
    /// it would be alone, in the order the checks were made. Defaults to false.
    ///
    /// Worth it for many concurrent checks from one process (an HTTP server under load): fewer,
    /// larger calls spare the server most of a script call's fixed cost. A lone check takes a
    /// task hand-off more than without coalescing.
    pub fn coalesce(mut self, coalesce: bool) -> Self {
        self.coalesce = coalesce;
        self
    }

    /// Validates and builds the limiter. Nothing is sent to Redis.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the limit (or the fallback limit) or the name does not
    /// validate.
    pub fn build(self) -> Result<RateLimiter> {
        crate::preflight::on_build(&self.redis, &self.keys);
        metrics::validate_name(&self.name)?;
        self.limit.validate()?;
        if let FailurePolicy::Local(local) = &self.policy {
            local.validate()?;
        }
        let keys = self
            .keys
            .pattern("ratelimit")?
            .pattern(self.limit.algorithm().name())?;
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                coalescer: self.coalesce.then(|| Coalescer::new(self.redis.clone())),
                redis: self.redis,
                keys,
                limit: self.limit,
                fallback: fallback(&self.policy),
                policy: self.policy,
                block_cache: (self.block_cache > 0).then(|| BlockCache::new(self.block_cache)),
                metrics: LimiterMetrics::new(&self.name, self.limit.algorithm().name()),
                name: self.name,
                record_identity: self.record_identity,
            }),
        })
    }
}
