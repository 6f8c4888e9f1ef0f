//! [`RateLimiter`]: checks an identity against a [`Limit`] with one script call.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use redis_core::{KeySpace, Redis, Script};

use crate::{
    decision::{Decision, Source},
    error::{Error, Result},
    limit::{Algorithm, Limit},
    local::LocalLimiter,
};

static FIXED_WINDOW: Script = Script::new(
    "ratelimit_fixed_window",
    include_str!("scripts/fixed_window.lua"),
);
static SLIDING_LOG: Script = Script::new(
    "ratelimit_sliding_log",
    include_str!("scripts/sliding_log.lua"),
);
static SLIDING_WINDOW: Script = Script::new(
    "ratelimit_sliding_window",
    include_str!("scripts/sliding_window.lua"),
);
static TOKEN_BUCKET: Script = Script::new(
    "ratelimit_token_bucket",
    include_str!("scripts/token_bucket.lua"),
);
static GCRA: Script = Script::new("ratelimit_gcra", include_str!("scripts/gcra.lua"));

/// The script that implements `algorithm`: one `EVALSHA` per check.
///
/// Its contract: `KEYS[1]` is the identity's key (`KEYS[2]` its `seq` companion for the sliding
/// log); `ARGV` is capacity, period in microseconds, cost, rate; the reply is
/// `{code, remaining, retry_after_us, reset_after_us}` with code 1 allowed, 0 denied, -1 cost
/// above capacity. Exposed for benchmarks and for callers that drive the scripts themselves.
pub fn script(algorithm: Algorithm) -> &'static Script {
    match algorithm {
        Algorithm::FixedWindow => &FIXED_WINDOW,
        Algorithm::SlidingLog => &SLIDING_LOG,
        Algorithm::SlidingWindow => &SLIDING_WINDOW,
        Algorithm::TokenBucket => &TOKEN_BUCKET,
        Algorithm::Gcra => &GCRA,
    }
}

/// What a check does when Redis cannot be reached (connection lost or refused, time-out,
/// `LOADING`, `CLUSTERDOWN`, ...: whatever [`Error::is_retryable`] calls transient).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Return the error. The default: the caller decides.
    ReturnError,
    /// Allow the check (availability over protection). The decision's source is
    /// [`Source::FailOpen`] and it reports the full limit remaining.
    FailOpen,
    /// Deny the check (protection over availability) with a `retry_after` of one second.
    /// The decision's source is [`Source::FailClosed`].
    FailClosed,
    /// Decide with an in-process limiter of this limit, for example the limit divided by the
    /// number of application instances. Its state lives in this process only and starts empty.
    /// A cost within the limit but above this fallback's capacity is denied with a `retry_after`
    /// of one second, not [`Outcome::ExceedsCapacity`](crate::Outcome::ExceedsCapacity).
    Local(Limit),
}

/// Checks identities against a [`Limit`] stored in Redis. Cheap to clone.
///
/// ```no_run
/// use std::time::Duration;
/// use redis_ratelimit::{Limit, RateLimiter};
///
/// # async fn demo(redis: redis_core::Redis) -> redis_ratelimit::Result<()> {
/// let limiter = RateLimiter::builder(redis, Limit::gcra(100, Duration::from_secs(60), 10)).build()?;
/// let decision = limiter.check("user:42").await?;
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
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("keys", &self.inner.keys)
            .field("limit", &self.inner.limit)
            .field("policy", &self.inner.policy)
            .field("block_cache", &self.inner.block_cache.is_some())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Starts a limiter of `limit` on `redis`.
    pub fn builder(redis: Redis, limit: Limit) -> RateLimiterBuilder {
        RateLimiterBuilder {
            redis,
            limit,
            keys: None,
            policy: FailurePolicy::ReturnError,
            block_cache: 0,
        }
    }

    /// The limit this limiter sends with every check.
    pub fn limit(&self) -> &Limit {
        &self.inner.limit
    }

    /// A limiter sharing everything with this one but `limit`. State is kept: the limit travels
    /// with every call, so raising or lowering it applies to the next check, with what was
    /// already used counting against the new numbers. The new limiter starts with an empty block
    /// cache and fallback state.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `limit` does not validate, or changes the algorithm (whose
    /// keys have another layout).
    pub fn with_limit(&self, limit: Limit) -> Result<Self> {
        limit.validate()?;
        if limit.algorithm() != self.inner.limit.algorithm() {
            return Err(Error::config(
                "with_limit keeps the algorithm; build a new limiter for another one",
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                redis: self.inner.redis.clone(),
                keys: self.inner.keys.clone(),
                limit,
                policy: self.inner.policy.clone(),
                fallback: match &self.inner.policy {
                    FailurePolicy::Local(local) => Some(LocalLimiter::new(*local)),
                    _ => None,
                },
                block_cache: self
                    .inner
                    .block_cache
                    .as_ref()
                    .map(|c| BlockCache::new(c.capacity)),
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
    /// capacity is [`crate::Outcome::ExceedsCapacity`], answered without a round trip.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a cost of 0; [`redis_core::Error::InvalidKey`] for an empty
    /// or oversized identity; Redis failures unless the [`FailurePolicy`] answers them.
    pub async fn check_n(&self, identity: &str, cost: u64) -> Result<Decision> {
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
        let mut call = script(limit.algorithm()).call().key(&key);
        if limit.algorithm() == Algorithm::SlidingLog {
            call = call.key(key.companion("seq"));
        }
        let reply = call
            .arg(limit.capacity())
            .arg(limit.period_us())
            .arg(cost)
            .arg(limit.rate())
            .invoke::<Vec<i64>>(&inner.redis)
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) if e.is_retryable() => return self.unreachable(identity, cost, e),
            Err(e) => return Err(e.into()),
        };
        let decision = Decision::from_reply(limit.capacity(), &reply)
            .ok_or_else(|| Error::UnexpectedReply(format!("{reply:?}")))?;
        if let Some(cache) = &inner.block_cache
            && decision.outcome() == crate::Outcome::Denied
        {
            cache.insert(identity, cost, decision);
        }
        Ok(decision)
    }

    fn unreachable(&self, identity: &str, cost: u64, e: redis_core::Error) -> Result<Decision> {
        let cap = self.inner.limit.capacity();
        tracing::debug!(error = %e, policy = ?self.inner.policy, "rate limit check without redis");
        match (&self.inner.policy, &self.inner.fallback) {
            (FailurePolicy::FailOpen, _) => Ok(
                Decision::allowed(cap, cap - cost, Duration::ZERO).with_source(Source::FailOpen)
            ),
            (FailurePolicy::FailClosed, _) => {
                Ok(
                    Decision::denied(cap, 0, Duration::from_secs(1), Duration::from_secs(1))
                        .with_source(Source::FailClosed),
                )
            }
            (FailurePolicy::Local(fallback), Some(local)) => {
                let decision = local.check(identity, cost);
                // The cost fits the real limit (checked before the round trip), only not this
                // process's share of it: that is "not now", never "can never pass".
                let decision = if decision.can_never_pass() {
                    let cap = fallback.capacity();
                    Decision::denied(cap, 0, Duration::from_secs(1), Duration::from_secs(1))
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
    limit: Limit,
    keys: Option<KeySpace>,
    policy: FailurePolicy,
    block_cache: usize,
}

impl fmt::Debug for RateLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterBuilder")
            .field("limit", &self.limit)
            .field("keys", &self.keys)
            .field("policy", &self.policy)
            .field("block_cache", &self.block_cache)
            .finish_non_exhaustive()
    }
}

impl RateLimiterBuilder {
    /// Where keys live: `<keys>:<algorithm>:{<identity>}`. Give each limited resource (an API,
    /// a login form) its own key space. Defaults to `ratelimit`, so keys are
    /// `ratelimit:gcra:{user:42}`.
    pub fn keys(mut self, keys: KeySpace) -> Self {
        self.keys = Some(keys);
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

    /// Validates and builds the limiter. Nothing is sent to Redis.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the limit (or the fallback limit) does not validate.
    pub fn build(self) -> Result<RateLimiter> {
        self.limit.validate()?;
        let fallback = match &self.policy {
            FailurePolicy::Local(local) => {
                local.validate()?;
                Some(LocalLimiter::new(*local))
            }
            _ => None,
        };
        let base = match self.keys {
            Some(keys) => keys,
            None => KeySpace::new("ratelimit")?,
        };
        let keys = base.pattern(self.limit.algorithm().name())?;
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                redis: self.redis,
                keys,
                limit: self.limit,
                policy: self.policy,
                fallback,
                block_cache: (self.block_cache > 0).then(|| BlockCache::new(self.block_cache)),
            }),
        })
    }
}

/// Recently denied identities, answered locally until their `retry_after` passes.
struct BlockCache {
    capacity: usize,
    entries: Mutex<Blocked>,
}

struct Blocked {
    map: HashMap<String, (Instant, u64, Decision)>,
    /// When full: the earliest time an entry runs out, before which sweeping frees nothing.
    /// Keeps a full cache of live entries from scanning all of them on every denial.
    next_sweep: Option<Instant>,
}

/// When a cached denial runs out.
fn runs_out(since: Instant, decision: &Decision) -> Instant {
    // A wait past the end of `Instant` (not a real one) counts as run out at once.
    since
        .checked_add(decision.retry_after().unwrap_or(Duration::ZERO))
        .unwrap_or(since)
}

impl BlockCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(Blocked {
                map: HashMap::new(),
                next_sweep: None,
            }),
        }
    }

    fn get(&self, identity: &str, cost: u64) -> Option<Decision> {
        let mut entries = self.entries.lock().ok()?;
        let &(since, denied_cost, decision) = entries.map.get(identity)?;
        let elapsed = since.elapsed();
        if decision.retry_after().is_none_or(|retry| elapsed >= retry) {
            entries.map.remove(identity);
            return None;
        }
        (cost >= denied_cost).then(|| decision.aged(elapsed).with_source(Source::BlockCache))
    }

    fn insert(&self, identity: &str, cost: u64, decision: Decision) {
        self.insert_at(identity, cost, decision, Instant::now());
    }

    fn insert_at(&self, identity: &str, cost: u64, decision: Decision, now: Instant) {
        if decision.retry_after().is_none() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let entries = &mut *entries;
        if entries.map.len() >= self.capacity && !entries.map.contains_key(identity) {
            if entries.next_sweep.is_some_and(|at| now < at) {
                return;
            }
            entries
                .map
                .retain(|_, (since, _, d)| runs_out(*since, d) > now);
            entries.next_sweep = entries
                .map
                .values()
                .map(|(since, _, d)| runs_out(*since, d))
                .min();
            if entries.map.len() >= self.capacity {
                return;
            }
        }
        // Keep `next_sweep` at or before the earliest run-out of any entry.
        let out = runs_out(now, &decision);
        entries.next_sweep = Some(entries.next_sweep.map_or(out, |at| at.min(out)));
        entries
            .map
            .insert(identity.to_owned(), (now, cost, decision));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(retry: Duration) -> Decision {
        Decision::denied(1, 0, retry, retry)
    }

    #[test]
    fn a_full_block_cache_stays_bounded_and_sweeps_only_when_an_entry_can_have_run_out() {
        let cache = BlockCache::new(2);
        let t0 = Instant::now();
        let sec = Duration::from_secs(1);
        cache.insert_at("a", 1, denied(sec), t0);
        cache.insert_at("b", 1, denied(10 * sec), t0);
        // Full of live entries: not cached, and no sweep before `a` runs out.
        cache.insert_at("c", 1, denied(sec), t0);
        let next = |cache: &BlockCache| cache.entries.lock().unwrap().next_sweep;
        assert_eq!(next(&cache), Some(t0 + sec));
        cache.insert_at("d", 1, denied(sec), t0 + sec / 2);
        assert_eq!(next(&cache), Some(t0 + sec));
        let keys = |cache: &BlockCache| {
            let mut keys: Vec<_> = cache.entries.lock().unwrap().map.keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(&cache), ["a", "b"]);
        // Once `a` has run out, the next denial takes its place.
        cache.insert_at("e", 1, denied(sec), t0 + sec);
        assert_eq!(keys(&cache), ["b", "e"]);
        // A shorter denial cached after a sweep moves the next sweep forward.
        cache.entries.lock().unwrap().map.remove("e");
        cache.insert_at("f", 1, denied(sec / 10), t0 + sec);
        assert_eq!(next(&cache), Some(t0 + sec + sec / 10));
        cache.insert_at("g", 1, denied(sec), t0 + sec + sec / 10);
        assert_eq!(keys(&cache), ["b", "g"]);
        // An identity already cached is updated even when full.
        cache.insert_at("b", 2, denied(sec), t0 + sec);
        assert_eq!(cache.entries.lock().unwrap().map["b"].1, 2);
    }
}
