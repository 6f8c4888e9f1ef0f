//! Capped exponential backoff with jitter, for reconnects and retried reads.

use std::time::Duration;

use rand::RngExt;

/// How long to wait between reconnect attempts: exponential from `min`, capped at `max`, with
/// "equal jitter" (a random point in the upper half of the step) so that many clients that lost
/// the same server do not come back in lock step.
///
/// ```
/// use std::time::Duration;
/// use redis_messaging::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5))?;
/// // With the random factor pinned, the steps are easy to check.
/// assert_eq!(backoff.delay_with(0, 1.0), Duration::from_millis(100));
/// assert_eq!(backoff.delay_with(3, 1.0), Duration::from_millis(800));
/// assert_eq!(backoff.delay_with(3, 0.0), Duration::from_millis(400));
/// assert_eq!(backoff.delay_with(30, 1.0), Duration::from_secs(5));
/// # Ok::<(), redis_messaging::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling up to 5 s.
    fn default() -> Self {
        Self {
            min: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// A backoff from `min` doubling up to `max`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) when `min` is zero or above `max`.
    pub fn new(min: Duration, max: Duration) -> crate::Result<Self> {
        if min.is_zero() {
            return Err(crate::Error::config("backoff minimum is zero"));
        }
        if min > max {
            return Err(crate::Error::config(format!(
                "backoff minimum {min:?} is above its maximum {max:?}"
            )));
        }
        Ok(Self { min, max })
    }

    /// The first (smallest) step.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The cap.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The delay before retry number `attempt` (0-based), with a fresh random factor.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::rng().random::<f64>())
    }

    /// The delay before retry number `attempt` for a given random factor in `[0, 1]`: between half
    /// and all of `min(max, min * 2^attempt)`. Factors outside `[0, 1]` are clamped; NaN counts
    /// as 1.
    pub fn delay_with(&self, attempt: u32, random: f64) -> Duration {
        let step = self
            .min
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        // `clamp` passes NaN through, and `mul_f64` panics on it: NaN counts as the full step.
        let random = if random.is_nan() {
            1.0
        } else {
            random.clamp(0.0, 1.0)
        };
        step.mul_f64(0.5 + 0.5 * random)
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
    fn bad_bounds_are_rejected() {
        assert!(Backoff::new(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
        assert!(Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).is_ok());
    }
}
