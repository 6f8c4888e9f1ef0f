//! The answer to a check: [`Decision`], with the values of the `RateLimit-*` and `Retry-After` headers.

use std::time::Duration;

/// `RateLimit-Limit`: the most one check can take (limit per window, capacity, burst).
pub const RATELIMIT_LIMIT: &str = "RateLimit-Limit";
/// `RateLimit-Remaining`: units left right now.
pub const RATELIMIT_REMAINING: &str = "RateLimit-Remaining";
/// `RateLimit-Reset`: seconds until the full limit is available again.
pub const RATELIMIT_RESET: &str = "RateLimit-Reset";
/// `Retry-After`: seconds until the denied check would pass (on denials only).
pub const RETRY_AFTER: &str = "Retry-After";
/// `RateLimit-Policy` (IETF draft-ietf-httpapi-ratelimit-headers-11): the quota policies,
/// `"<name>";q=<quota>;w=<window seconds>`, comma-separated.
pub const RATELIMIT_POLICY: &str = "RateLimit-Policy";
/// `RateLimit` (IETF draft-ietf-httpapi-ratelimit-headers-11): the current service limit of a
/// policy, `"<name>";r=<remaining>;t=<seconds>`.
pub const RATELIMIT: &str = "RateLimit";

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The units were taken; go ahead.
    Allowed,
    /// Not now: try again after [`Decision::retry_after`].
    Denied,
    /// Never: the cost is larger than the limit's capacity, so no amount of waiting helps.
    ExceedsCapacity,
}

/// Who made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// The limiter's script on Redis.
    Redis,
    /// The local block cache: the key was denied recently and its `retry_after` has not passed.
    BlockCache,
    /// Computed locally without Redis: the cost exceeds the capacity.
    Local,
    /// Redis was unreachable and the policy is to allow.
    FailOpen,
    /// Redis was unreachable and the policy is to deny.
    FailClosed,
    /// Redis was unreachable and the in-process fallback limiter decided.
    Fallback,
}

/// The answer to a check: whether it passed and everything a client needs to know about the limit.
///
/// ```
/// use std::time::Duration;
/// use redis_ratelimit::{Decision, Outcome};
///
/// let denied = Decision::denied(10, 0, Duration::from_millis(1500), Duration::from_secs(6));
/// assert!(!denied.is_allowed());
/// assert_eq!(denied.retry_after_secs(), Some(2)); // rounded up, never 0 on a denial
/// assert_eq!(
///     denied.headers(),
///     vec![
///         ("RateLimit-Limit", "10".to_owned()),
///         ("RateLimit-Remaining", "0".to_owned()),
///         ("RateLimit-Reset", "6".to_owned()),
///         ("Retry-After", "2".to_owned()),
///     ]
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    outcome: Outcome,
    limit: u64,
    remaining: u64,
    retry_after: Duration,
    reset_after: Duration,
    source: Source,
}

impl Decision {
    /// An allowed decision (mostly for tests and custom limiters).
    pub fn allowed(limit: u64, remaining: u64, reset_after: Duration) -> Self {
        Self {
            outcome: Outcome::Allowed,
            limit,
            remaining,
            retry_after: Duration::ZERO,
            reset_after,
            source: Source::Local,
        }
    }

    /// A denied decision (mostly for tests and custom limiters).
    pub fn denied(
        limit: u64,
        remaining: u64,
        retry_after: Duration,
        reset_after: Duration,
    ) -> Self {
        Self {
            outcome: Outcome::Denied,
            limit,
            remaining,
            retry_after,
            reset_after,
            source: Source::Local,
        }
    }

    /// The decision for a cost above the capacity.
    pub fn exceeds_capacity(limit: u64) -> Self {
        Self {
            outcome: Outcome::ExceedsCapacity,
            limit,
            remaining: 0,
            retry_after: Duration::ZERO,
            reset_after: Duration::ZERO,
            source: Source::Local,
        }
    }

    pub(crate) fn with_source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// The same decision `elapsed` later: both waits shortened.
    pub(crate) fn aged(mut self, elapsed: Duration) -> Self {
        self.retry_after = self.retry_after.saturating_sub(elapsed);
        self.reset_after = self.reset_after.saturating_sub(elapsed);
        self
    }

    /// What was decided.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// True when the check passed.
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allowed
    }

    /// True when the check failed for now or for ever.
    pub fn is_denied(&self) -> bool {
        !self.is_allowed()
    }

    /// True when the cost exceeds the capacity: the check can never pass.
    pub fn can_never_pass(&self) -> bool {
        self.outcome == Outcome::ExceedsCapacity
    }

    /// The limit's capacity (limit per window, bucket capacity, burst, concurrent permits).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Units that could still pass right now.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// How long to wait before the same check would pass: `Some` on [`Outcome::Denied`] only.
    pub fn retry_after(&self) -> Option<Duration> {
        (self.outcome == Outcome::Denied).then_some(self.retry_after)
    }

    /// How long until the full capacity is available again (window end, bucket full, TAT reached).
    pub fn reset_after(&self) -> Duration {
        self.reset_after
    }

    /// Who decided: Redis, the block cache, or the unreachable-Redis policy.
    pub fn source(&self) -> Source {
        self.source
    }

    /// `Retry-After` in whole seconds, rounded up and at least 1: `Some` on denials that may pass later.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after().map(|d| ceil_secs(d).max(1))
    }

    /// `RateLimit-Reset` in whole seconds, rounded up.
    pub fn reset_secs(&self) -> u64 {
        ceil_secs(self.reset_after)
    }

    /// The response headers: `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`, and
    /// `Retry-After` on a denial that may pass later.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (RATELIMIT_LIMIT, self.limit.to_string()),
            (RATELIMIT_REMAINING, self.remaining.to_string()),
            (RATELIMIT_RESET, self.reset_secs().to_string()),
        ];
        if let Some(secs) = self.retry_after_secs() {
            headers.push((RETRY_AFTER, secs.to_string()));
        }
        headers
    }

    /// The IETF draft's fields (draft-ietf-httpapi-ratelimit-headers-11) for this decision under
    /// the policy `policy_item` (see [`Limit::policy_item`](crate::Limit::policy_item)):
    /// `RateLimit-Policy`, `RateLimit: "<name>";r=<remaining>;t=<seconds until the full
    /// quota is back>`, and `Retry-After` on a denial that may pass later. The policy's name is
    /// the item's leading string.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redis_ratelimit::{Decision, Limit};
    ///
    /// let item = Limit::fixed_window(100, Duration::from_secs(60)).policy_item("api");
    /// let allowed = Decision::allowed(100, 42, Duration::from_millis(29_500));
    /// assert_eq!(
    ///     allowed.draft_headers(&item),
    ///     vec![
    ///         ("RateLimit-Policy", r#""api";q=100;w=60"#.to_owned()),
    ///         ("RateLimit", r#""api";r=42;t=30"#.to_owned()),
    ///     ]
    /// );
    /// ```
    pub fn draft_headers(&self, policy_item: &str) -> Vec<(&'static str, String)> {
        let mut headers = vec![(RATELIMIT_POLICY, policy_item.to_owned())];
        headers.push((RATELIMIT, self.service_limit(policy_name(policy_item))));
        if let Some(secs) = self.retry_after_secs() {
            headers.push((RETRY_AFTER, secs.to_string()));
        }
        headers
    }

    /// The `RateLimit` field's item for this decision under the policy named `name` (a quoted
    /// structured-field string, as [`Limit::policy_item`](crate::Limit::policy_item) starts with).
    pub(crate) fn service_limit(&self, quoted_name: &str) -> String {
        format!("{quoted_name};r={};t={}", self.remaining, self.reset_secs())
    }

    /// Builds a decision from a script reply `{code, remaining, retry_after_us, reset_after_us}`.
    pub(crate) fn from_reply(limit: u64, reply: &[i64]) -> Option<Self> {
        let &[code, remaining, retry_us, reset_us] = reply else {
            return None;
        };
        let micros = |v: i64| Duration::from_micros(u64::try_from(v.max(0)).unwrap_or(0));
        let outcome = match code {
            1 => Outcome::Allowed,
            0 => Outcome::Denied,
            -1 => Outcome::ExceedsCapacity,
            _ => return None,
        };
        Some(Self {
            outcome,
            limit,
            remaining: u64::try_from(remaining.max(0)).unwrap_or(0),
            retry_after: micros(retry_us),
            reset_after: micros(reset_us),
            source: Source::Redis,
        })
    }
}

/// The leading quoted string of a policy item: its name.
pub(crate) fn policy_name(item: &str) -> &str {
    item.split(';').next().unwrap_or(item)
}

/// `s` as a structured-field string (RFC 8941): quoted, `"` and `\` escaped, other bytes
/// outside printable ASCII dropped.
pub(crate) fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_become_decisions() {
        let d = Decision::from_reply(10, &[1, 9, 0, 60_000_000]).unwrap();
        assert!(d.is_allowed());
        assert_eq!(d.remaining(), 9);
        assert_eq!(d.retry_after(), None);
        assert_eq!(d.reset_secs(), 60);
        assert_eq!(d.source(), Source::Redis);
        let d = Decision::from_reply(10, &[0, 0, 1, 2_500_000]).unwrap();
        assert_eq!(d.retry_after(), Some(Duration::from_micros(1)));
        assert_eq!(d.retry_after_secs(), Some(1));
        assert_eq!(d.reset_secs(), 3);
        let d = Decision::from_reply(10, &[-1, 0, 0, 0]).unwrap();
        assert!(d.can_never_pass());
        assert_eq!(d.retry_after(), None);
        assert!(!d.headers().iter().any(|(name, _)| *name == RETRY_AFTER));
        assert!(Decision::from_reply(10, &[2, 0, 0, 0]).is_none());
        assert!(Decision::from_reply(10, &[1, 0, 0]).is_none());
    }

    #[test]
    fn draft_headers_quote_the_policy_name() {
        assert_eq!(sf_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(sf_string("é-x"), r#""-x""#);
        let d = Decision::denied(5, 0, Duration::from_millis(1), Duration::from_secs(9));
        let h = d.draft_headers(r#""login";q=5;w=60"#);
        assert_eq!(h[1], (RATELIMIT, r#""login";r=0;t=9"#.to_owned()));
        assert_eq!(h[2], (RETRY_AFTER, "1".to_owned()));
    }

    #[test]
    fn allowed_decisions_carry_no_retry_after_header() {
        let d = Decision::allowed(5, 4, Duration::from_millis(10));
        assert_eq!(d.headers().len(), 3);
        assert_eq!(d.reset_secs(), 1);
    }
}
