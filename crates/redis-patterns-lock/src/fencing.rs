//! How a [`Lock`](crate::Lock) hands out fencing tokens: a counter that never expires, a counter
//! that expires but never goes backwards (the server clock is its floor), or none at all.

use std::time::Duration;

use crate::error::{Error, Result};

/// How a [`Lock`](crate::Lock) makes the fencing token of each grant
/// ([`LockGuard::fence`](crate::LockGuard::fence)). Set it with
/// [`LockBuilder::fencing`](crate::LockBuilder::fencing).
///
/// | mode | token | keys per resource | acquire |
/// |------|-------|-------------------|---------|
/// | [`Expiring`](Self::Expiring) (default, `horizon` [`DEFAULT_HORIZON`]) | `max(last + 1, server time in µs)` | the lock key plus a counter that expires `horizon` after its last grant | one script: `SET NX PX` + `TIME` + `GET` + `SET PX` |
/// | [`Counter`](Self::Counter) | 1, 2, 3, ... | the lock key plus a counter **without TTL** | one script: `SET NX PX` + `INCR` |
/// | [`Off`](Self::Off) | always `0` | the lock key only | one plain `SET NX PX`, no script |
///
/// All three are one round trip. `Expiring` keeps tokens strictly increasing across the
/// counter's expiry and across a failover to a replica whose clock is behind, under the
/// assumptions stated in `docs/lock.md` (the clock never steps back by more than the horizon, and
/// a failover takes longer than the clocks of master and replica are apart), and leaves no key
/// behind for names locked once (`order:<uuid>`). `Counter` trades that for consecutive tokens
/// and no clock assumption, at the price of one key per name ever locked.
///
/// ```
/// use std::time::Duration;
/// use redis_lock::Fencing;
///
/// let fencing = Fencing::expiring(Duration::from_secs(24 * 3600));
/// assert_eq!(fencing.horizon(), Some(Duration::from_secs(24 * 3600)));
/// assert_eq!(Fencing::default(), Fencing::expiring(redis_lock::DEFAULT_HORIZON));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fencing {
    /// A counter per resource that never expires: tokens 1, 2, 3, ... One small key per resource
    /// name ever locked stays behind (the documented exception to "every key has a TTL").
    Counter,
    /// The default, with [`DEFAULT_HORIZON`]. A counter that expires `horizon` after the last
    /// grant, combined with the server clock:
    /// the token is `max(counter + 1, TIME in microseconds)`, so a counter that expired, was
    /// evicted or was lost in a failover comes back above every token handed out before.
    /// Tokens are large (about `1.7e15` in 2025) and not consecutive.
    Expiring {
        /// How long the counter outlives the resource's last grant; at least [`MIN_HORIZON`].
        horizon: Duration,
    },
    /// No fencing token: acquire is a plain `SET key token NX PX ttl` (what Redlock-style crates
    /// send) and [`LockGuard::fence`](crate::LockGuard::fence) is always `0`. Only for work that
    /// cannot be fenced anyway, where the lease alone is enough.
    Off,
}

/// The horizon of the default [`Fencing`]: a resource's counter goes a day after its last grant.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(24 * 3600);

impl Default for Fencing {
    /// [`Fencing::Expiring`] with [`DEFAULT_HORIZON`].
    fn default() -> Self {
        Self::Expiring {
            horizon: DEFAULT_HORIZON,
        }
    }
}

/// The shortest [`Fencing::Expiring`] horizon accepted: 10 ms (meant for tests; production
/// horizons are hours or days, see `docs/lock.md`).
pub const MIN_HORIZON: Duration = Duration::from_millis(10);

impl Fencing {
    /// [`Fencing::Expiring`] with `horizon`.
    pub fn expiring(horizon: Duration) -> Self {
        Self::Expiring { horizon }
    }

    /// The counter's horizon, for [`Fencing::Expiring`].
    pub fn horizon(&self) -> Option<Duration> {
        match self {
            Self::Expiring { horizon } => Some(*horizon),
            Self::Counter | Self::Off => None,
        }
    }

    /// Checks the horizon: at least [`MIN_HORIZON`], at most `u32::MAX` ms (about 49 days).
    pub(crate) fn validate(&self) -> Result<()> {
        if let Self::Expiring { horizon } = self {
            if *horizon < MIN_HORIZON {
                return Err(Error::invalid_config(format!(
                    "fence horizon {horizon:?} is shorter than the minimum {MIN_HORIZON:?}"
                )));
            }
            if horizon.as_millis() > u128::from(u32::MAX) {
                return Err(Error::invalid_config(format!(
                    "fence horizon {horizon:?} is too long"
                )));
            }
        }
        Ok(())
    }

    /// The acquire script's horizon argument: milliseconds, `0` for a counter without TTL.
    pub(crate) fn horizon_arg(&self) -> u64 {
        match self {
            Self::Expiring { horizon } => redis_core::duration_millis(*horizon),
            Self::Counter | Self::Off => 0,
        }
    }
}

impl Fencing {
    /// The hand-over script's horizon argument: as [`horizon_arg`](Self::horizon_arg), `-1` for
    /// no fencing.
    pub(crate) fn handover_arg(&self) -> i64 {
        match self {
            Self::Off => -1,
            Self::Expiring { .. } | Self::Counter => {
                i64::try_from(self.horizon_arg()).unwrap_or(i64::MAX)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizons_are_bounded() {
        assert!(Fencing::Counter.validate().is_ok());
        assert!(Fencing::default().validate().is_ok());
        assert!(Fencing::Off.validate().is_ok());
        assert!(Fencing::expiring(MIN_HORIZON).validate().is_ok());
        for bad in [
            Duration::ZERO,
            Duration::from_millis(9),
            Duration::from_secs(5_000_000),
            Duration::MAX,
        ] {
            assert!(
                matches!(
                    Fencing::expiring(bad).validate(),
                    Err(Error::InvalidConfig(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            Fencing::expiring(Duration::from_secs(2)).horizon_arg(),
            2000
        );
        assert_eq!(Fencing::Counter.horizon_arg(), 0);
        assert_eq!(Fencing::Off.horizon(), None);
        assert_eq!(Fencing::Off.handover_arg(), -1);
        assert_eq!(Fencing::Counter.handover_arg(), 0);
        assert_eq!(
            Fencing::expiring(Duration::from_secs(2)).handover_arg(),
            2000
        );
    }
}
