//! Capped exponential backoff with jitter: the one policy every retry loop of the workspace uses
//! (reconnects, lock retries, lease waits, consumer reads).

use std::time::Duration;

use crate::error::{Error, Result};

/// How long to wait before retry number `attempt`: exponential from `min`, capped at `max`, with
/// "equal jitter" (a random point in the upper half of the step) so that many clients that lost
/// the same server do not come back in lock step.
///
/// ```
/// use std::time::Duration;
/// use redis_core::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5))?;
/// // With the random factor pinned, the steps are easy to check.
/// assert_eq!(backoff.delay_with(0, 1.0), Duration::from_millis(100));
/// assert_eq!(backoff.delay_with(3, 1.0), Duration::from_millis(800));
/// assert_eq!(backoff.delay_with(3, 0.0), Duration::from_millis(400));
/// assert_eq!(backoff.delay_with(30, 1.0), Duration::from_secs(5));
/// # Ok::<(), redis_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backoff {
    min: Duration,
    max: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling up to 5 s.
    fn default() -> Self {
        Self::clamped(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Backoff {
    /// A backoff from `min` doubling up to `max`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `min` is zero or above `max`.
    pub fn new(min: Duration, max: Duration) -> Result<Self> {
        if min.is_zero() {
            return Err(Error::invalid_config("backoff minimum is zero"));
        }
        if min > max {
            return Err(Error::invalid_config(format!(
                "backoff minimum {min:?} is above its maximum {max:?}"
            )));
        }
        Ok(Self { min, max })
    }

    /// A backoff for constants and defaults: never fails. A zero `min` becomes 1 ms and a `max`
    /// below `min` becomes `min`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redis_core::Backoff;
    ///
    /// const RETRY: Backoff = Backoff::clamped(Duration::from_millis(10), Duration::from_millis(200));
    /// assert_eq!(RETRY.max(), Duration::from_millis(200));
    /// assert_eq!(Backoff::clamped(Duration::ZERO, Duration::ZERO).min(), Duration::from_millis(1));
    /// ```
    pub const fn clamped(min: Duration, max: Duration) -> Self {
        let min = if min.is_zero() {
            Duration::from_millis(1)
        } else {
            min
        };
        let max = if max.as_nanos() < min.as_nanos() {
            min
        } else {
            max
        };
        Self { min, max }
    }

    /// The first (smallest) step.
    pub const fn min(&self) -> Duration {
        self.min
    }

    /// The cap.
    pub const fn max(&self) -> Duration {
        self.max
    }

    /// The step before jitter for retry number `attempt` (0-based): `min(max, min * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.min
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The delay before retry number `attempt` (0-based), with a fresh random factor.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }

    /// The delay before retry number `attempt` for a given random factor in `[0, 1]`: between half
    /// and all of [`ceiling`](Self::ceiling). Factors outside `[0, 1]` are clamped; NaN counts as 1.
    /// Never panics, whatever the bounds (no `Duration::mul_f64`, which panics when a huge ceiling
    /// rounds past `Duration::MAX`).
    pub fn delay_with(&self, attempt: u32, random: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let random = if random.is_nan() {
            1.0
        } else {
            random.clamp(0.0, 1.0)
        };
        // Half the step plus a random share of the other half, in integer nanoseconds: exact for
        // any ceiling and never above it.
        let half = ceiling / 2;
        let rest = ceiling.saturating_sub(half);
        let share = Duration::try_from_secs_f64(rest.as_secs_f64() * random)
            .unwrap_or(rest)
            .min(rest);
        half.saturating_add(share)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_bounds() {
        let b = Backoff::new(Duration::from_millis(50), Duration::from_secs(2)).unwrap();
        let mut previous_cap = Duration::ZERO;
        for attempt in 0..64 {
            let low = b.delay_with(attempt, 0.0);
            let high = b.delay_with(attempt, 1.0);
            assert!(low <= high);
            assert!(high <= b.max(), "attempt {attempt}: {high:?}");
            assert!(low >= b.min() / 2, "attempt {attempt}: {low:?}");
            assert!(high >= previous_cap, "never shrinks");
            previous_cap = high;
            let random = b.delay(attempt);
            assert!(random >= low && random <= high);
        }
        assert_eq!(b.delay_with(63, 1.0), Duration::from_secs(2));
        // Out-of-range random factors are clamped, not trusted.
        assert_eq!(b.delay_with(0, 7.0), Duration::from_millis(50));
        assert_eq!(b.delay_with(0, -1.0), Duration::from_millis(25));
        assert_eq!(b.delay_with(0, f64::NAN), Duration::from_millis(50));
        assert_eq!(b.delay_with(0, f64::INFINITY), Duration::from_millis(50));
    }

    #[test]
    fn a_huge_ceiling_never_panics() {
        let b = Backoff::new(Duration::from_secs(1), Duration::MAX).unwrap();
        for attempt in [0, 31, 32, 63, u32::MAX] {
            for random in [0.0, 0.5, 0.999_999, 1.0, f64::NAN] {
                let d = b.delay_with(attempt, random);
                assert!(d <= b.ceiling(attempt));
                assert!(d >= b.ceiling(attempt) / 2);
            }
        }
        let max = Backoff::new(Duration::MAX, Duration::MAX).unwrap();
        assert_eq!(max.delay_with(5, 1.0), Duration::MAX);
        assert!(max.delay(u32::MAX) >= Duration::MAX / 2);
    }

    #[test]
    fn bad_bounds_are_rejected() {
        assert!(Backoff::new(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
        assert!(Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).is_ok());
        let clamped = Backoff::clamped(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(
            (clamped.min(), clamped.max()),
            (Duration::from_secs(2), Duration::from_secs(2))
        );
    }
}
