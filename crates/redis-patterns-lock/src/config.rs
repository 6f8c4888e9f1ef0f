//! Lease settings shared by [`Lock`](crate::Lock), [`Redlock`](crate::Redlock) and
//! [`Semaphore`](crate::Semaphore): defaults, the setters their builders share, per-call
//! overrides, and the pure timing math behind them.

use std::time::Duration;

use redis_core::Backoff;

use crate::error::{Error, Result};

/// Default lease: 30 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// Default time `acquire` waits for a held resource: 10 s.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// Default pause between attempts of `acquire`: 10 ms doubling up to 200 ms, with jitter.
pub const DEFAULT_RETRY: Backoff =
    Backoff::clamped(Duration::from_millis(10), Duration::from_millis(200));
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
    pub(crate) retry: Backoff,
    pub(crate) auto_extend: bool,
    pub(crate) max_hold: Option<Duration>,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            wait: DEFAULT_WAIT,
            retry: DEFAULT_RETRY,
            auto_extend: false,
            max_hold: None,
        }
    }
}

impl LeaseConfig {
    /// Checks what the types do not: the lease length and the hold cap. (A [`Backoff`] is valid
    /// by construction.)
    pub(crate) fn validate(&self) -> Result<()> {
        validate_ttl(self.ttl)?;
        if self.max_hold.is_some_and(|m| m.is_zero()) {
            return Err(Error::invalid_config("max hold time is zero"));
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
        return Err(Error::invalid_config(format!(
            "lease {ttl:?} is shorter than the minimum {MIN_TTL:?}"
        )));
    }
    if ttl.as_millis() > u128::from(u32::MAX) {
        return Err(Error::invalid_config(format!("lease {ttl:?} is too long")));
    }
    Ok(())
}

/// The consuming setters every builder of this crate has, over its `lease: LeaseConfig` and
/// `name: String` fields.
macro_rules! lease_setters {
    () => {
        /// The name this lock, Redlock or semaphore carries in its metrics (the `name` label) and
        /// spans: 1 to 64 characters of `A-Z`, `a-z`, `0-9`, `_`, `.` and `-`, checked by
        /// `build`. Defaults to `"default"`. Never put a resource name here: it is not bounded.
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.name = name.into();
            self
        }

        /// The lease length: how long a crashed holder blocks others. Defaults to 30 s; at least 10 ms.
        pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
            self.lease.ttl = ttl;
            self
        }

        /// How long `acquire` waits for a held resource before [`Error::Timeout`](crate::Error::Timeout).
        /// Defaults to 10 s.
        pub fn wait(mut self, wait: std::time::Duration) -> Self {
            self.lease.wait = wait;
            self
        }

        /// The pause between attempts of `acquire`: pause `n` is a random point in the upper half
        /// of `min * 2^n`, capped at `max` (see [`Backoff`](redis_core::Backoff)), and never past
        /// the holder's remaining lease when the server reported it. Defaults to
        /// [`DEFAULT_RETRY`](crate::DEFAULT_RETRY): 10 ms doubling up to 200 ms.
        pub fn retry_delay(mut self, retry: redis_core::Backoff) -> Self {
            self.lease.retry = retry;
            self
        }

        /// Whether guards renew their lease in the background (about every `ttl / 3`) while they
        /// live. Defaults to `false`; `with_lock` always turns it on.
        pub fn auto_extend(mut self, on: bool) -> Self {
            self.lease.auto_extend = on;
            self
        }

        /// The longest the watchdog keeps a lease alive, counted from acquisition; after that the
        /// lease runs out and the guard reports it lost. Defaults to no cap.
        pub fn max_hold(mut self, max: std::time::Duration) -> Self {
            self.lease.max_hold = Some(max);
            self
        }
    };
}
pub(crate) use lease_setters;

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

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
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
            bad(|c| c.max_hold = Some(ms(0))),
            Error::InvalidConfig(_)
        ));
        // A zero or inverted retry delay cannot reach the settings: `Backoff::new` refuses it, and
        // `?` turns that into this crate's error.
        let retry = |min, max| -> Result<Backoff> { Ok(Backoff::new(min, max)?) };
        for (min, max) in [(ms(0), ms(200)), (ms(300), ms(200))] {
            assert!(matches!(
                retry(min, max),
                Err(Error::Core(redis_core::Error::InvalidConfig(_)))
            ));
        }
        assert_eq!(
            (ok.retry.min(), ok.retry.max()),
            (ms(10), ms(200)),
            "default retry delay"
        );
        let merged = ok
            .with(&AcquireOptions::new().ttl(ms(500)).auto_extend(true))
            .unwrap();
        assert_eq!(merged.ttl, ms(500));
        assert!(merged.auto_extend);
        assert_eq!(merged.wait, DEFAULT_WAIT);
        assert!(ok.with(&AcquireOptions::new().ttl(ms(1))).is_err());
    }
}
