//! What a limiter allows: an [`Algorithm`] and its numbers.

use std::time::Duration;

use crate::error::{Error, Result};

/// The longest period accepted: ten years. Keeps every time in the scripts exact in a Lua double.
pub const MAX_PERIOD: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The largest limit, capacity, burst or rate accepted (2^40).
pub const MAX_LIMIT: u64 = 1 << 40;

/// The longest a token bucket may take to refill from empty, or a GCRA burst to be earned back:
/// a hundred years. Keeps every stored time exact to the microsecond in a Lua double, and every
/// wait and TTL within what Redis accepts.
pub const MAX_REFILL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The largest sliding log limit accepted. The log stores one sorted-set member per admitted unit
/// (about 110 bytes each) and a check of cost `n` adds `n` members inside one script, during which
/// Redis serves nobody else: at this bound a key holds about 1 MB and the dearest check blocks the
/// server for tens of milliseconds. Larger limits belong to the sliding window counter.
pub const MAX_LOG_LIMIT: u64 = 10_000;

/// The rate limiting algorithms. See the crate docs for a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// A counter per window; the window opens at the first admitted unit.
    FixedWindow,
    /// A sorted set of admitted units: exact sliding window, memory grows with the limit.
    SlidingLog,
    /// The previous window's count, weighted, plus the current one: approximate, O(1) memory.
    SlidingWindow,
    /// A bucket of `capacity` tokens refilled at a steady rate.
    TokenBucket,
    /// Generic cell rate algorithm: a rate plus a burst, one timestamp per key.
    Gcra,
}

impl Algorithm {
    /// A short name, also used as the key-space segment of the limiter's keys.
    pub fn name(self) -> &'static str {
        match self {
            Self::FixedWindow => "fixed",
            Self::SlidingLog => "log",
            Self::SlidingWindow => "sliding",
            Self::TokenBucket => "bucket",
            Self::Gcra => "gcra",
        }
    }
}

/// A limit: the algorithm and its numbers. Build one with a constructor; the numbers are checked
/// when a limiter is built (or by [`Limit::validate`]).
///
/// ```
/// use std::time::Duration;
/// use redis_ratelimit::Limit;
///
/// let api = Limit::gcra(100, Duration::from_secs(60), 20); // 100/min, bursts of 20
/// assert_eq!(api.capacity(), 20);
/// assert!(Limit::fixed_window(0, Duration::from_secs(1)).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    algorithm: Algorithm,
    /// Limit per window, bucket capacity or GCRA burst: the most one check can take.
    capacity: u64,
    /// Window length, or the period of `rate`.
    period: Duration,
    /// Tokens refilled (token bucket) or units emitted (GCRA) per `period`; equals `capacity` otherwise.
    rate: u64,
}

impl Limit {
    /// At most `limit` units per `window`. A window opens at the first unit admitted after the
    /// previous one ended, so a client can pass `limit` at the end of one window and `limit`
    /// again at the start of the next.
    pub fn fixed_window(limit: u64, window: Duration) -> Self {
        Self {
            algorithm: Algorithm::FixedWindow,
            capacity: limit,
            period: window,
            rate: limit,
        }
    }

    /// At most `limit` units in any window of length `window`, exactly. Stores one sorted-set
    /// member per admitted unit, so `limit` is at most [`MAX_LOG_LIMIT`].
    pub fn sliding_log(limit: u64, window: Duration) -> Self {
        Self {
            algorithm: Algorithm::SlidingLog,
            ..Self::fixed_window(limit, window)
        }
    }

    /// About `limit` units in any window of length `window`: the previous window's count weighted
    /// by its overlap with the sliding window, plus the current window's count. Never admits more
    /// than `limit` in one fixed window; O(1) memory.
    pub fn sliding_window(limit: u64, window: Duration) -> Self {
        Self {
            algorithm: Algorithm::SlidingWindow,
            ..Self::fixed_window(limit, window)
        }
    }

    /// A bucket of `capacity` tokens (full at first), refilled continuously with `refill` tokens
    /// per `period`. A check takes `cost` tokens.
    pub fn token_bucket(capacity: u64, refill: u64, period: Duration) -> Self {
        Self {
            algorithm: Algorithm::TokenBucket,
            capacity,
            period,
            rate: refill,
        }
    }

    /// GCRA: `rate` units per `period` on average, at most `burst` at once. One timestamp per key
    /// (the approach of redis-cell and go-redis/redis_rate).
    pub fn gcra(rate: u64, period: Duration, burst: u64) -> Self {
        Self {
            algorithm: Algorithm::Gcra,
            capacity: burst,
            period,
            rate,
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The most one check can take: the limit per window, the bucket capacity or the GCRA burst.
    /// This is the `RateLimit-Limit` a decision reports.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The window, or the period of the refill rate.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Units per period: the refill of a token bucket, the rate of GCRA, the limit otherwise.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Checks the numbers.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero limit, capacity, burst, rate or refill, a period shorter
    /// than a microsecond or longer than [`MAX_PERIOD`], a number above [`MAX_LIMIT`], or a
    /// sliding log limit above [`MAX_LOG_LIMIT`], or a token bucket capacity or GCRA burst that
    /// takes longer than [`MAX_REFILL`] to refill.
    pub fn validate(&self) -> Result<()> {
        let (what, rate_name) = match self.algorithm {
            Algorithm::FixedWindow | Algorithm::SlidingLog | Algorithm::SlidingWindow => {
                ("limit", "limit")
            }
            Algorithm::TokenBucket => ("capacity", "refill"),
            Algorithm::Gcra => ("burst", "rate"),
        };
        let name = self.algorithm.name();
        if self.capacity == 0 {
            return Err(Error::invalid_config(format!("{name}: {what} is zero")));
        }
        if self.rate == 0 {
            return Err(Error::invalid_config(format!(
                "{name}: {rate_name} is zero"
            )));
        }
        if self.capacity > MAX_LIMIT || self.rate > MAX_LIMIT {
            return Err(Error::invalid_config(format!(
                "{name}: {what} or {rate_name} above {MAX_LIMIT}"
            )));
        }
        if self.algorithm == Algorithm::SlidingLog && self.capacity > MAX_LOG_LIMIT {
            return Err(Error::invalid_config(format!(
                "{name}: limit above {MAX_LOG_LIMIT} (one sorted-set member per unit); \
                 use the sliding window for larger limits"
            )));
        }
        if self.period.as_micros() == 0 {
            return Err(Error::invalid_config(format!(
                "{name}: period is zero (the resolution is one microsecond)"
            )));
        }
        if self.period > MAX_PERIOD {
            return Err(Error::invalid_config(format!(
                "{name}: period above ten years"
            )));
        }
        if matches!(self.algorithm, Algorithm::TokenBucket | Algorithm::Gcra)
            && u128::from(self.capacity) * self.period.as_micros() / u128::from(self.rate)
                > MAX_REFILL.as_micros()
        {
            return Err(Error::invalid_config(format!(
                "{name}: {what} takes more than a hundred years to refill at this {rate_name}"
            )));
        }
        Ok(())
    }

    /// This limit as a quota policy item of the IETF draft's `RateLimit-Policy` field
    /// (draft-ietf-httpapi-ratelimit-headers-11): `"<name>";q=<quota>;w=<window>`. The quota is
    /// the capacity; the window, in whole seconds (rounded up, at least 1), is the window of a
    /// fixed or sliding window or log, and the time a token bucket or GCRA takes to earn its
    /// capacity back.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redis_ratelimit::Limit;
    ///
    /// let minute = Duration::from_secs(60);
    /// assert_eq!(Limit::sliding_window(100, minute).policy_item("api"), r#""api";q=100;w=60"#);
    /// // 10 per minute in bursts of 5: the burst comes back in 30 s.
    /// assert_eq!(Limit::gcra(10, minute, 5).policy_item("b"), r#""b";q=5;w=30"#);
    /// ```
    pub fn policy_item(&self, name: &str) -> String {
        let window_us = match self.algorithm {
            Algorithm::TokenBucket | Algorithm::Gcra => {
                u128::from(self.capacity) * self.period.as_micros() / u128::from(self.rate.max(1))
            }
            _ => self.period.as_micros(),
        };
        let window = window_us.div_ceil(1_000_000).max(1);
        format!(
            "{};q={};w={window}",
            crate::decision::sf_string(name),
            self.capacity
        )
    }

    /// The period in microseconds, as the scripts take it.
    pub(crate) fn period_us(&self) -> u64 {
        micros(self.period)
    }
}

/// `d` in whole microseconds, as the scripts take times (saturating).
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_numbers_are_typed_errors() {
        let s = Duration::from_secs(1);
        for bad in [
            Limit::fixed_window(0, s),
            Limit::sliding_log(0, s),
            Limit::sliding_window(0, s),
            Limit::fixed_window(1, Duration::ZERO),
            Limit::fixed_window(1, Duration::from_nanos(999)),
            Limit::token_bucket(0, 1, s),
            Limit::token_bucket(1, 0, s),
            Limit::gcra(1, s, 0),
            Limit::gcra(0, s, 1),
            Limit::gcra(1, MAX_PERIOD + s, 1),
            Limit::gcra(MAX_LIMIT + 1, s, 1),
            Limit::sliding_log(MAX_LOG_LIMIT + 1, s),
            Limit::token_bucket(MAX_LIMIT, 1, MAX_PERIOD),
            Limit::gcra(1, MAX_PERIOD, 11),
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::InvalidConfig(_))),
                "{bad:?}"
            );
        }
        let burst = Limit::gcra(1, s, 0).validate().unwrap_err().to_string();
        assert!(burst.contains("burst is zero"), "{burst}");
        assert!(Limit::gcra(10, s, 5).validate().is_ok());
        assert!(Limit::sliding_log(MAX_LOG_LIMIT, s).validate().is_ok());
        assert!(Limit::gcra(1, MAX_PERIOD, 10).validate().is_ok());
        assert!(
            Limit::token_bucket(MAX_LIMIT, MAX_LIMIT, MAX_PERIOD)
                .validate()
                .is_ok()
        );
        assert!(
            Limit::sliding_window(MAX_LOG_LIMIT + 1, s)
                .validate()
                .is_ok()
        );
        assert!(
            Limit::fixed_window(1, Duration::from_micros(1))
                .validate()
                .is_ok()
        );
    }
}
