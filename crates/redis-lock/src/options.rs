//! Lease settings shared by [`Lock`](crate::Lock), [`Redlock`](crate::Redlock) and
//! [`Semaphore`](crate::Semaphore), per-call overrides, and the pure timing math behind them.

use std::time::Duration;

use crate::error::{Error, Result};

/// Default lease: 30 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// Default time `acquire` waits for a held resource: 10 s.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// Default shortest pause between attempts: 10 ms.
pub const DEFAULT_RETRY_MIN: Duration = Duration::from_millis(10);
/// Default longest pause between attempts: 200 ms.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_millis(200);
/// Shortest lease accepted: 10 ms (below that, clock drift and round trips eat the lease).
pub const MIN_TTL: Duration = Duration::from_millis(10);

/// Per-call overrides for `acquire_with_options` / `try_acquire_with_options`. Unset fields use
/// the settings the lock was built with.
///
/// ```
/// use std::time::Duration;
/// use redis_lock::AcquireOptions;
///
/// let options = AcquireOptions::new()
///     .ttl(Duration::from_secs(5))
///     .wait(Duration::from_millis(500))
///     .auto_extend(true)
///     .max_hold(Duration::from_secs(60));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct AcquireOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) wait: Option<Duration>,
    pub(crate) auto_extend: Option<bool>,
    pub(crate) max_hold: Option<Duration>,
}

impl AcquireOptions {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lease length for this acquisition.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long `acquire` may wait for a held resource (ignored by `try_acquire`).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// Whether a watchdog renews the lease about every `ttl / 3` while the guard lives.
    pub fn auto_extend(mut self, on: bool) -> Self {
        self.auto_extend = Some(on);
        self
    }

    /// The longest the watchdog keeps the lease alive, counted from acquisition.
    pub fn max_hold(mut self, max: Duration) -> Self {
        self.max_hold = Some(max);
        self
    }
}

/// Validated lease settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseConfig {
    pub(crate) ttl: Duration,
    pub(crate) wait: Duration,
    pub(crate) retry_min: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) auto_extend: bool,
    pub(crate) max_hold: Option<Duration>,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            wait: DEFAULT_WAIT,
            retry_min: DEFAULT_RETRY_MIN,
            retry_max: DEFAULT_RETRY_MAX,
            auto_extend: false,
            max_hold: None,
        }
    }
}

impl LeaseConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        validate_ttl(self.ttl)?;
        if self.retry_min.is_zero() {
            return Err(Error::InvalidConfig("retry delay is zero".into()));
        }
        if self.retry_min > self.retry_max {
            return Err(Error::InvalidConfig(format!(
                "shortest retry delay {:?} is longer than the longest {:?}",
                self.retry_min, self.retry_max
            )));
        }
        if self.max_hold.is_some_and(|m| m.is_zero()) {
            return Err(Error::InvalidConfig("max hold time is zero".into()));
        }
        Ok(())
    }

    /// These settings with `options` applied on top, validated.
    pub(crate) fn with(&self, options: &AcquireOptions) -> Result<Self> {
        let merged = Self {
            ttl: options.ttl.unwrap_or(self.ttl),
            wait: options.wait.unwrap_or(self.wait),
            auto_extend: options.auto_extend.unwrap_or(self.auto_extend),
            max_hold: options.max_hold.or(self.max_hold),
            ..self.clone()
        };
        merged.validate()?;
        Ok(merged)
    }
}

pub(crate) fn validate_ttl(ttl: Duration) -> Result<()> {
    if ttl < MIN_TTL {
        return Err(Error::InvalidConfig(format!(
            "lease {ttl:?} is shorter than the minimum {MIN_TTL:?}"
        )));
    }
    if ttl.as_millis() > u128::from(u32::MAX) {
        return Err(Error::InvalidConfig(format!("lease {ttl:?} is too long")));
    }
    Ok(())
}

/// Whole milliseconds, as Redis wants them (`ttl` was validated to fit).
pub(crate) fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// Allowance for clocks running at different rates, from the Redlock spec: 1 % of the lease plus
/// 2 ms. A lease is trusted for `ttl - elapsed - drift`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(redis_lock::drift(Duration::from_secs(10)), Duration::from_millis(102));
/// ```
pub fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// How long a lease taken with `ttl`, whose request started `elapsed` ago, can still be trusted:
/// `ttl - elapsed - drift(ttl)`, or `None` when nothing is left.
///
/// ```
/// use std::time::Duration;
/// let ms = Duration::from_millis;
/// assert_eq!(redis_lock::validity(ms(1000), ms(100)), Some(ms(888)));
/// assert_eq!(redis_lock::validity(ms(1000), ms(990)), None);
/// ```
pub fn validity(ttl: Duration, elapsed: Duration) -> Option<Duration> {
    ttl.checked_sub(elapsed)
        .and_then(|left| left.checked_sub(drift(ttl)))
        .filter(|left| !left.is_zero())
}

/// Pause before retry number `attempt` (0-based): `min * 2^attempt`, capped at `max`, scaled by
/// `jitter` in `[0, 1)` into the upper half `[d/2, d)`, and never below `min`.
pub(crate) fn backoff(attempt: u32, min: Duration, max: Duration, jitter: f64) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(20));
    let ceiling = min.saturating_mul(factor).min(max);
    let jitter = jitter.clamp(0.0, 1.0);
    // Not `mul_f64`: it panics when a huge ceiling rounds past `Duration::MAX` as f64.
    Duration::try_from_secs_f64(ceiling.as_secs_f64() * (0.5 + jitter / 2.0))
        .unwrap_or(ceiling)
        .max(min)
        .min(max)
}

/// A fresh owner token: 128 random bits from the thread-local CSPRNG, as 32 hex digits.
pub(crate) fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_until_the_cap_and_stays_in_bounds() {
        assert_eq!(backoff(0, ms(10), ms(200), 1.0), ms(10));
        assert_eq!(backoff(1, ms(10), ms(200), 1.0), ms(20));
        assert_eq!(backoff(3, ms(10), ms(200), 1.0), ms(80));
        assert_eq!(backoff(10, ms(10), ms(200), 1.0), ms(200));
        assert_eq!(backoff(u32::MAX, ms(10), ms(200), 1.0), ms(200));
        for attempt in 0..40 {
            for jitter in [0.0, 0.1, 0.5, 0.99, 1.0, -3.0, 7.0] {
                let d = backoff(attempt, ms(10), ms(200), jitter);
                assert!(d >= ms(10) && d <= ms(200), "{attempt} {jitter} {d:?}");
            }
        }
        // Absurd but accepted bounds do not panic.
        let huge = Duration::MAX;
        assert_eq!(backoff(0, huge, huge, 1.0), huge);
        let d = backoff(3, huge / 2, huge, 0.99);
        assert!(d >= huge / 2 && d <= huge, "{d:?}");
        // Jitter spreads retries over the upper half of the window.
        assert_eq!(backoff(4, ms(10), ms(200), 0.0), ms(80));
        assert!(backoff(4, ms(10), ms(200), 0.5) > ms(80));
    }

    #[test]
    fn validity_subtracts_elapsed_time_and_drift() {
        assert_eq!(drift(ms(30_000)), ms(302));
        assert_eq!(validity(ms(30_000), ms(0)), Some(ms(29_698)));
        assert_eq!(validity(ms(100), ms(97)), None);
        assert_eq!(validity(ms(100), ms(200)), None);
        assert_eq!(
            validity(ms(100), ms(97) - Duration::from_micros(1)),
            Some(Duration::from_micros(1))
        );
    }

    #[test]
    fn tokens_are_128_bit_hex_and_distinct() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn bad_settings_are_rejected() {
        let ok = LeaseConfig::default();
        assert!(ok.validate().is_ok());
        let bad = |f: fn(&mut LeaseConfig)| {
            let mut c = LeaseConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(matches!(bad(|c| c.ttl = ms(0)), Error::InvalidConfig(_)));
        assert!(matches!(bad(|c| c.ttl = ms(5)), Error::InvalidConfig(_)));
        assert!(matches!(
            bad(|c| c.ttl = Duration::from_secs(10_000_000)),
            Error::InvalidConfig(_)
        ));
        assert!(matches!(
            bad(|c| c.retry_min = ms(0)),
            Error::InvalidConfig(_)
        ));
        assert!(matches!(
            bad(|c| c.retry_min = ms(300)),
            Error::InvalidConfig(_)
        ));
        assert!(matches!(
            bad(|c| c.max_hold = Some(ms(0))),
            Error::InvalidConfig(_)
        ));
        let merged = ok
            .with(&AcquireOptions::new().ttl(ms(500)).auto_extend(true))
            .unwrap();
        assert_eq!(merged.ttl, ms(500));
        assert!(merged.auto_extend);
        assert_eq!(merged.wait, DEFAULT_WAIT);
        assert!(ok.with(&AcquireOptions::new().ttl(ms(1))).is_err());
    }
}
