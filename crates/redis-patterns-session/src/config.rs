//! The store's settings: timeouts and the digest secret, validated by
//! [`SessionStoreBuilder::build`](crate::SessionStoreBuilder::build).

use std::time::Duration;

use redis_core::duration_millis;

use crate::{
    error::{Error, Result},
    id::Hasher,
};

/// Shortest accepted HMAC secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The timeouts of a store, in milliseconds, as the scripts take them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// Idle (inactivity) timeout.
    pub(crate) idle: u64,
    /// Absolute timeout, counted from creation.
    pub(crate) absolute: u64,
    /// Shortest time between two recorded accesses.
    pub(crate) touch: u64,
}

impl Timeouts {
    /// Checks the timeouts against each other.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a timeout below 1 ms, an idle timeout above the absolute one,
    /// a touch interval not shorter than the idle timeout, or an absolute timeout beyond what the
    /// scripts' arithmetic is tested for.
    pub(crate) fn new(idle: Duration, absolute: Duration, touch: Duration) -> Result<Self> {
        if idle.as_millis() == 0 {
            return Err(Error::invalid_config("idle timeout is below 1 ms"));
        }
        if absolute.as_millis() == 0 {
            return Err(Error::invalid_config("absolute timeout is below 1 ms"));
        }
        if idle > absolute {
            return Err(Error::invalid_config(format!(
                "idle timeout {idle:?} exceeds absolute timeout {absolute:?}"
            )));
        }
        if touch >= idle {
            return Err(Error::invalid_config(format!(
                "touch interval {touch:?} must be shorter than the idle timeout {idle:?}"
            )));
        }
        if absolute.as_millis() > u128::from(u32::MAX) * 1000 {
            return Err(Error::invalid_config(
                "absolute timeout is longer than 136 years",
            ));
        }
        Ok(Self {
            idle: duration_millis(idle),
            absolute: duration_millis(absolute),
            touch: duration_millis(touch),
        })
    }

    /// When a session created at `created` and last seen at `seen` ends unless accessed again:
    /// the earlier of the idle and absolute deadlines.
    pub(crate) fn deadline(&self, created: u64, seen: u64) -> u64 {
        (seen.saturating_add(self.idle)).min(created.saturating_add(self.absolute))
    }
}

/// The digest of ids: plain SHA-256 without a secret, HMAC-SHA-256 with one.
///
/// # Errors
/// [`Error::InvalidConfig`] for a secret shorter than [`MIN_SECRET_LEN`].
pub(crate) fn hasher(secret: Option<&[u8]>) -> Result<Hasher> {
    match secret {
        None => Ok(Hasher::Sha256),
        Some(s) if s.len() < MIN_SECRET_LEN => Err(Error::invalid_config(format!(
            "secret is {} bytes, at least {MIN_SECRET_LEN} are required",
            s.len()
        ))),
        Some(s) => Hasher::hmac(s).ok_or_else(|| Error::invalid_config("secret rejected by HMAC")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn timeouts_become_milliseconds_and_deadlines_take_the_earlier_one() {
        let t = Timeouts::new(ms(1_000), Duration::from_micros(5_000_999), ms(10)).unwrap();
        assert_eq!((t.idle, t.absolute, t.touch), (1_000, 5_000, 10));
        assert_eq!(t.deadline(0, 100), 1_100);
        assert_eq!(t.deadline(0, 4_500), 5_000);
        assert_eq!(t.deadline(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn out_of_order_timeouts_and_short_secrets_are_refused() {
        let invalid = |r: Result<Timeouts>| matches!(r, Err(Error::InvalidConfig(_)));
        assert!(invalid(Timeouts::new(
            Duration::from_micros(999),
            ms(10),
            ms(0)
        )));
        assert!(invalid(Timeouts::new(ms(10), ms(5), ms(0))));
        assert!(invalid(Timeouts::new(ms(10), ms(10), ms(10))));
        assert!(invalid(Timeouts::new(ms(10), Duration::MAX, ms(0))));
        assert!(Timeouts::new(ms(10), ms(10), ms(0)).is_ok());
        assert!(matches!(
            hasher(Some(&[1; MIN_SECRET_LEN - 1])),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            hasher(Some(&[1; MIN_SECRET_LEN])),
            Ok(Hasher::Hmac(_))
        ));
        assert!(matches!(hasher(None), Ok(Hasher::Sha256)));
    }
}
