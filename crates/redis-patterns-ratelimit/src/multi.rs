//! [`MultiLimiter`]: one identity against several limits in one atomic script, all or nothing.

use std::{fmt, sync::Arc, time::Duration};

use redis_core::{KeySpace, Redis};
use tracing::Instrument;

use crate::{
    config::{FailurePolicy, LOCAL_DENIAL_WAIT},
    decision::{Decision, Outcome, Source},
    engine::{self, Check, Coalescer},
    error::{Error, Result},
    limit::Limit,
    metrics::{self, LimiterMetrics},
};

/// Checks an identity against several limits at once, for instance 10 per second, 1 000 per
/// hour and 10 000 per day, any algorithms mixed. Cheap to clone.
///
/// A check is one script over keys on one slot (the identity is their hash tag), **all or
/// nothing**: when one limit denies, nothing is taken from the others. The cost applies to every
/// limit. The [`MultiDecision`] names the *binding* limit: on a denial the one that makes the
/// caller wait longest, so `retry_after` is when every limit would pass; on an admission the one
/// with the fewest units left. Its headers describe the binding limit.
///
/// ```no_run
/// use std::time::Duration;
/// use redis_ratelimit::{Limit, MultiLimiter, redis_core::KeySpace};
///
/// # async fn demo(redis: redis_core::Redis) -> redis_ratelimit::Result<()> {
/// let keys = KeySpace::new("myapp")?;
/// let limiter = MultiLimiter::builder(redis, &keys)
///     .limit("second", Limit::gcra(10, Duration::from_secs(1), 10))
///     .limit("hour", Limit::fixed_window(1_000, Duration::from_secs(3600)))
///     .limit("day", Limit::sliding_window(10_000, Duration::from_secs(86_400)))
///     .build()?;
/// let decision = limiter.check("user:42").await?;
/// if !decision.is_allowed() {
///     println!("{} limit reached, retry in {:?}", decision.binding_name(), decision.retry_after());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MultiLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    keys: KeySpace,
    names: Arc<[String]>,
    /// Each limit's `RateLimit-Policy` item.
    policies: Arc<[String]>,
    limits: Vec<Limit>,
    /// Each limit's key suffix: `<name>:<algorithm>`.
    suffixes: Vec<String>,
    policy: FailurePolicy,
    coalescer: Option<Arc<Coalescer>>,
    name: String,
    record_identity: bool,
    metrics: Arc<LimiterMetrics>,
}

impl fmt::Debug for MultiLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiLimiter")
            .field("name", &self.inner.name)
            .field("keys", &self.inner.keys)
            .field("names", &self.inner.names)
            .field("limits", &self.inner.limits)
            .field("policy", &self.inner.policy)
            .field("coalesce", &self.inner.coalescer.is_some())
            .finish_non_exhaustive()
    }
}

impl MultiLimiter {
    /// Starts a limiter with keys under `keys`: `<keys>:ratelimit:multi:{<identity>}:<limit
    /// name>:<algorithm>`. Add limits with [`MultiLimiterBuilder::limit`].
    pub fn builder(redis: Redis, keys: &KeySpace) -> MultiLimiterBuilder {
        MultiLimiterBuilder {
            redis,
            keys: keys.clone(),
            limits: Vec::new(),
            policy: FailurePolicy::ReturnError,
            coalesce: false,
            name: metrics::DEFAULT_NAME.to_owned(),
            record_identity: false,
        }
    }

    /// The name of this limiter in its metrics and spans.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The limits, with their names, in the order they were added.
    pub fn limits(&self) -> impl Iterator<Item = (&str, &Limit)> {
        self.inner
            .names
            .iter()
            .map(String::as_str)
            .zip(&self.inner.limits)
    }

    /// The Redis keys that hold `identity`'s state, one per limit (a sliding log adds a `:seq`
    /// companion), all on one cluster slot.
    ///
    /// # Errors
    /// [`redis_core::Error::InvalidKey`] for an empty or oversized identity.
    pub fn keys(&self, identity: &str) -> Result<Vec<redis_core::Key>> {
        let base = self.inner.keys.key(identity)?;
        Ok(self
            .inner
            .suffixes
            .iter()
            .map(|suffix| base.companion(suffix))
            .collect())
    }

    /// Checks one unit for `identity` against every limit. Same as [`check_n`](Self::check_n)
    /// with a cost of 1.
    ///
    /// # Errors
    /// As [`check_n`](Self::check_n).
    pub async fn check(&self, identity: &str) -> Result<MultiDecision> {
        self.check_n(identity, 1).await
    }

    /// Checks and, if every limit allows it, takes `cost` units from each, in one round trip.
    ///
    /// A cost above any limit's capacity is [`Outcome::ExceedsCapacity`] (that limit binds),
    /// answered without a round trip.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a cost of 0; [`redis_core::Error::InvalidKey`] for an empty
    /// or oversized identity; Redis failures unless the [`FailurePolicy`] answers them.
    pub async fn check_n(&self, identity: &str, cost: u64) -> Result<MultiDecision> {
        let inner = &*self.inner;
        let span = redis_core::operation_span!(
            inner.redis,
            "ratelimit.check",
            name = %inner.name,
            algorithm = "multi",
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
                    inner.metrics.decision(decision.decision());
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

    async fn decide(&self, identity: &str, cost: u64) -> Result<MultiDecision> {
        let inner = &*self.inner;
        if cost == 0 {
            return Err(Error::InvalidArgument("cost must be at least 1"));
        }
        if let Some(i) = inner.limits.iter().position(|l| cost > l.capacity()) {
            let mut decisions: Vec<Decision> = inner
                .limits
                .iter()
                .map(|l| Decision::allowed(l.capacity(), l.capacity(), Duration::ZERO))
                .collect();
            decisions[i] = Decision::exceeds_capacity(inner.limits[i].capacity());
            return Ok(self.decision(decisions, i));
        }
        let base = inner.keys.key(identity)?;
        let check = Check {
            parts: inner
                .suffixes
                .iter()
                .zip(&inner.limits)
                .map(|(suffix, limit)| (base.companion(suffix), *limit))
                .collect(),
            cost,
        };
        let replies = match &inner.coalescer {
            Some(coalescer) => coalescer.check(check).await,
            None => engine::run(&inner.redis, &[&check], true).await,
        };
        let replies = match replies {
            Ok(replies) => replies,
            Err(Error::Core(e)) if e.is_retryable() => return self.unreachable(cost, e),
            Err(e) => return Err(e),
        };
        let decisions = inner
            .limits
            .iter()
            .zip(&replies)
            .map(|(limit, reply)| {
                Decision::from_reply(limit.capacity(), reply)
                    .ok_or_else(|| Error::unexpected_reply(reply))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.combine(decisions, cost))
    }

    /// The binding limit of a decided check.
    fn combine(&self, mut decisions: Vec<Decision>, cost: u64) -> MultiDecision {
        let denied = decisions.iter().any(|d| d.outcome() != Outcome::Allowed);
        let binding = if denied {
            // The longest wait is when every limit would pass.
            let mut binding = 0;
            let mut wait = None;
            for (i, d) in decisions.iter().enumerate() {
                if let Some(retry) = d.retry_after()
                    && wait.is_none_or(|w| retry > w)
                {
                    (binding, wait) = (i, Some(retry));
                }
            }
            // Nothing was taken from the limits that would have passed: report what they hold.
            for d in &mut decisions {
                if d.is_allowed() {
                    *d = Decision::allowed(
                        d.limit(),
                        d.remaining().saturating_add(cost).min(d.limit()),
                        d.reset_after(),
                    )
                    .with_source(Source::Redis);
                }
            }
            binding
        } else {
            // The fewest units left; on a tie, the one that takes longest to come back.
            let mut binding = 0;
            for (i, d) in decisions.iter().enumerate() {
                let best = &decisions[binding];
                if (d.remaining(), std::cmp::Reverse(d.reset_after()))
                    < (best.remaining(), std::cmp::Reverse(best.reset_after()))
                {
                    binding = i;
                }
            }
            binding
        };
        self.decision(decisions, binding)
    }

    fn decision(&self, decisions: Vec<Decision>, binding: usize) -> MultiDecision {
        MultiDecision {
            decisions,
            binding,
            names: self.inner.names.clone(),
            policies: self.inner.policies.clone(),
        }
    }

    fn unreachable(&self, cost: u64, e: redis_core::Error) -> Result<MultiDecision> {
        tracing::debug!(error = %e, policy = ?self.inner.policy, "rate limit check without redis");
        let wait = LOCAL_DENIAL_WAIT;
        let limits = &self.inner.limits;
        let decisions = match self.inner.policy {
            FailurePolicy::FailOpen => limits
                .iter()
                .map(|l| {
                    Decision::allowed(l.capacity(), l.capacity() - cost, Duration::ZERO)
                        .with_source(Source::FailOpen)
                })
                .collect(),
            FailurePolicy::FailClosed => limits
                .iter()
                .map(|l| {
                    Decision::denied(l.capacity(), 0, wait, wait).with_source(Source::FailClosed)
                })
                .collect(),
            _ => return Err(e.into()),
        };
        self.inner.metrics.fallback();
        let binding = limits
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| l.capacity())
            .map_or(0, |(i, _)| i);
        Ok(self.decision(decisions, binding))
    }
}

/// The answer to a [`MultiLimiter`] check: the binding limit's [`Decision`], and every limit's.
#[derive(Debug, Clone)]
pub struct MultiDecision {
    decisions: Vec<Decision>,
    binding: usize,
    names: Arc<[String]>,
    policies: Arc<[String]>,
}

impl MultiDecision {
    /// The binding limit's decision: on a denial, the limit that makes the caller wait longest
    /// (its `retry_after` is when every limit would pass); on an admission, the limit with the
    /// fewest units left (on a tie, the one slowest to come back); on a cost above a capacity,
    /// that limit.
    pub fn decision(&self) -> &Decision {
        &self.decisions[self.binding]
    }

    /// The binding limit's index, in the order the limits were added.
    pub fn binding(&self) -> usize {
        self.binding
    }

    /// The binding limit's name.
    pub fn binding_name(&self) -> &str {
        &self.names[self.binding]
    }

    /// Every limit's name and decision, in the order the limits were added. After a denial the
    /// limits that would have passed report what they still hold: nothing was taken from them.
    pub fn limits(&self) -> impl Iterator<Item = (&str, &Decision)> {
        self.names.iter().map(String::as_str).zip(&self.decisions)
    }

    /// What was decided.
    pub fn outcome(&self) -> Outcome {
        self.decision().outcome()
    }

    /// True when every limit allowed the check and the cost was taken from each.
    pub fn is_allowed(&self) -> bool {
        self.decision().is_allowed()
    }

    /// True when the cost exceeds a limit's capacity: the check can never pass.
    pub fn can_never_pass(&self) -> bool {
        self.decision().can_never_pass()
    }

    /// How long until every limit would let the same check pass: `Some` on a denial only.
    pub fn retry_after(&self) -> Option<Duration> {
        self.decision().retry_after()
    }

    /// Who decided.
    pub fn source(&self) -> Source {
        self.decision().source()
    }

    /// The binding limit's `RateLimit-*` headers, and `Retry-After` on a denial.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.decision().headers()
    }

    /// The IETF draft's fields (draft-ietf-httpapi-ratelimit-headers-11): `RateLimit-Policy`
    /// listing every limit (`"<name>";q=<quota>;w=<window>`), `RateLimit` for the binding limit
    /// (`"<name>";r=<remaining>;t=<seconds>`), and `Retry-After` on a denial.
    pub fn draft_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = self.decision().draft_headers(&self.policies[self.binding]);
        headers[0].1 = self.policies.join(", ");
        headers
    }
}

/// Builds a [`MultiLimiter`]; [`build`](Self::build) validates.
#[must_use]
pub struct MultiLimiterBuilder {
    redis: Redis,
    keys: KeySpace,
    limits: Vec<(String, Limit)>,
    policy: FailurePolicy,
    coalesce: bool,
    name: String,
    record_identity: bool,
}

impl fmt::Debug for MultiLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiLimiterBuilder")
            .field("name", &self.name)
            .field("keys", &self.keys)
            .field("limits", &self.limits)
            .field("policy", &self.policy)
            .field("coalesce", &self.coalesce)
            .finish_non_exhaustive()
    }
}

impl MultiLimiterBuilder {
    /// Adds a limit named `name` (1 to 64 characters of `A-Z a-z 0-9 _ . -`, unique within the
    /// limiter; part of its keys). At most 16 limits.
    pub fn limit(mut self, name: impl Into<String>, limit: Limit) -> Self {
        self.limits.push((name.into(), limit));
        self
    }

    /// The limiter's name in metrics (`algorithm` label `multi`) and spans. Defaults to `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Records the checked identity in the span's `identity` field. Defaults to false.
    pub fn record_identity(mut self, record: bool) -> Self {
        self.record_identity = record;
        self
    }

    /// What to do when Redis is unreachable: [`FailurePolicy::ReturnError`] (the default),
    /// [`FailOpen`](FailurePolicy::FailOpen) or [`FailClosed`](FailurePolicy::FailClosed).
    pub fn on_redis_error(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Coalesces concurrent checks of this limiter (and its clones) into one script call per
    /// cluster slot (one call on a single server). See [`RateLimiterBuilder::coalesce`](crate::RateLimiterBuilder::coalesce).
    pub fn coalesce(mut self, coalesce: bool) -> Self {
        self.coalesce = coalesce;
        self
    }

    /// Validates and builds the limiter. Nothing is sent to Redis.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for no limit or more than 16, a limit that does not validate, a
    /// missing, malformed or repeated limit name, a bad limiter name, or a
    /// [`FailurePolicy::Local`] (one fallback limit cannot stand for several).
    pub fn build(self) -> Result<MultiLimiter> {
        crate::preflight::on_build(&self.redis, &self.keys);
        metrics::validate_name(&self.name)?;
        if self.limits.is_empty() || self.limits.len() > 16 {
            return Err(Error::invalid_config(
                "a multi-limiter takes 1 to 16 limits",
            ));
        }
        for (i, (name, limit)) in self.limits.iter().enumerate() {
            metrics::validate_name(name)?;
            limit.validate()?;
            if self.limits[..i].iter().any(|(other, _)| other == name) {
                return Err(Error::invalid_config(format!("limit {name:?} added twice")));
            }
        }
        if matches!(self.policy, FailurePolicy::Local(_)) {
            return Err(Error::invalid_config(
                "a multi-limiter fails open, closed or with the error, not to one local limit",
            ));
        }
        let keys = self.keys.pattern("ratelimit")?.pattern("multi")?;
        let suffixes = self
            .limits
            .iter()
            .map(|(name, limit)| format!("{name}:{}", limit.algorithm().name()))
            .collect();
        let policies: Vec<String> = self
            .limits
            .iter()
            .map(|(name, limit)| limit.policy_item(name))
            .collect();
        let (names, limits): (Vec<String>, Vec<Limit>) = self.limits.into_iter().unzip();
        Ok(MultiLimiter {
            inner: Arc::new(Inner {
                coalescer: self.coalesce.then(|| Coalescer::new(self.redis.clone())),
                redis: self.redis,
                keys,
                names: names.into(),
                policies: policies.into(),
                limits,
                suffixes,
                policy: self.policy,
                metrics: LimiterMetrics::new(&self.name, "multi"),
                name: self.name,
                record_identity: self.record_identity,
            }),
        })
    }
}
