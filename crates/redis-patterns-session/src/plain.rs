//! Plain reads: a session's hash and its `PTTL` in one pipeline, and what the client may decide
//! from them without a script.
//!
//! Every script that sets a session key's expiry also stores it in the hash as `__deadline`, so
//! a plain read recovers the clock of the key's own server at the moment of the read:
//! `now = __deadline - PTTL` (whole milliseconds, exact as long as nothing but the store's
//! scripts set the expiry). With it the client checks both timeouts as the scripts do, against
//! the store's current settings, and tells whether the access must be recorded. Only then, or
//! when the hash lacks the metadata (written by an older version) or has no expiry, does the
//! script run, and it decides again on its own.

use redis_core::{Key, Redis, redis};

use crate::config::Timeouts;

/// A hash as `HGETALL` returns it: field, value pairs.
pub(crate) type Hash = Vec<(Vec<u8>, Vec<u8>)>;

/// `HGETALL key` and `PTTL key` in one pipeline (one round trip, routed by the key).
pub(crate) async fn hash_and_ttl(redis: &Redis, key: &Key) -> redis_core::Result<(Hash, i64)> {
    redis
        .query_pipeline(redis::pipe().cmd("HGETALL").arg(key).cmd("PTTL").arg(key))
        .await
}

/// The value of `name` in `hash`.
pub(crate) fn field<'h>(hash: &'h Hash, name: &str) -> Option<&'h [u8]> {
    hash.iter()
        .find(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

/// Creation time, ms (server clock).
pub(crate) const CREATED: &str = "__created";
/// Last recorded access, ms (server clock).
pub(crate) const SEEN: &str = "__seen";
/// The key's expiry as last set, ms.
pub(crate) const DEADLINE: &str = "__deadline";
/// A tower-sessions record's expiry date, ms.
#[cfg(feature = "tower-sessions")]
pub(crate) const EXPIRES: &str = "__expires";

/// `PTTL` of a key that does not exist.
const NO_KEY: i64 = -2;

/// What a plain read allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read<T> {
    /// No session (the key is gone, or expired between the two commands).
    Missing,
    /// A live session that needs no script.
    Live(T),
    /// Run the script: the access must be recorded, a timeout has passed under the current
    /// settings, or the read cannot tell.
    Script,
}

/// The timestamps of a live session read plainly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) created: u64,
    pub(crate) seen: u64,
}

/// The server's clock at the read: the stored deadline minus the remaining time to live.
/// `None` when the key has no expiry or the two disagree (not written by the store's scripts).
fn server_now(deadline: u64, pttl: i64) -> Option<u64> {
    deadline.checked_sub(u64::try_from(pttl).ok()?)
}

/// A session read as `exists` (the hash was not empty), its `__created`, `__seen` and
/// `__deadline`, and its `PTTL`: live and needing no touch, missing, or a case for the script.
pub(crate) fn session(
    exists: bool,
    created: Option<u64>,
    seen: Option<u64>,
    deadline: Option<u64>,
    pttl: i64,
    timeouts: &Timeouts,
) -> Read<Times> {
    if !exists || pttl == NO_KEY {
        return Read::Missing;
    }
    let (Some(created), Some(seen), Some(deadline)) = (created, seen, deadline) else {
        return Read::Script;
    };
    let Some(now) = server_now(deadline, pttl) else {
        return Read::Script;
    };
    // The script deletes a session past either deadline of the current settings; the touch is
    // due once `touch` ms have passed since the last recorded access, i.e. once the remaining
    // idle time has dropped to `idle - touch`.
    if now >= timeouts.deadline(created, seen) || now.saturating_sub(seen) >= timeouts.touch {
        return Read::Script;
    }
    Read::Live(Times { created, seen })
}

/// A tower-sessions record read as `exists`, its `__created`, `__expires` and `__deadline`, and
/// its `PTTL`, under the absolute timeout `absolute` (ms). Live records need no script: reads
/// record nothing.
#[cfg(feature = "tower-sessions")]
pub(crate) fn record(
    exists: bool,
    created: Option<u64>,
    expires: Option<u64>,
    deadline: Option<u64>,
    pttl: i64,
    absolute: u64,
) -> Read<()> {
    if !exists || pttl == NO_KEY {
        return Read::Missing;
    }
    let (Some(created), Some(expires), Some(deadline)) = (created, expires, deadline) else {
        return Read::Script;
    };
    match server_now(deadline, pttl) {
        Some(now) if now < expires.min(created.saturating_add(absolute)) => Read::Live(()),
        _ => Read::Script,
    }
}

/// A stored timestamp: decimal digits only.
pub(crate) fn parse_ms(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn timeouts(idle: u64, absolute: u64, touch: u64) -> Timeouts {
        Timeouts::new(
            Duration::from_millis(idle),
            Duration::from_millis(absolute),
            Duration::from_millis(touch),
        )
        .unwrap()
    }

    /// A session created at 1000 and last seen at 5000 whose expiry was set with `idle`.
    fn read(idle_then: u64, pttl: i64, now_settings: &Timeouts) -> Read<Times> {
        session(
            true,
            Some(1_000),
            Some(5_000),
            Some(5_000 + idle_then),
            pttl,
            now_settings,
        )
    }

    #[test]
    fn a_read_within_the_touch_interval_needs_no_script() {
        let t = timeouts(60_000, 600_000, 10_000);
        let live = Read::Live(Times {
            created: 1_000,
            seen: 5_000,
        });
        // now = 65000 - pttl: 5000 (just seen) up to 14999.
        assert_eq!(read(60_000, 60_000, &t), live);
        assert_eq!(read(60_000, 50_001, &t), live);
        // From 15000 on (remaining idle time 50 s = idle - touch) the touch is due.
        assert_eq!(read(60_000, 50_000, &t), Read::Script);
        assert_eq!(read(60_000, 1, &t), Read::Script);
    }

    #[test]
    fn missing_keys_are_missing_and_doubtful_ones_go_to_the_script() {
        let t = timeouts(60_000, 600_000, 10_000);
        assert_eq!(read(60_000, NO_KEY, &t), Read::Missing);
        assert_eq!(session(false, None, None, None, NO_KEY, &t), Read::Missing);
        // Expired between HGETALL and PTTL.
        assert_eq!(
            session(true, Some(1), Some(1), Some(2), NO_KEY, &t),
            Read::Missing
        );
        // No expiry, no metadata (an older version's session), a deadline below the TTL.
        assert_eq!(read(60_000, -1, &t), Read::Script);
        assert_eq!(
            session(true, Some(1_000), Some(5_000), None, 50_000, &t),
            Read::Script
        );
        assert_eq!(
            session(true, None, Some(5_000), Some(65_000), 60_000, &t),
            Read::Script
        );
        assert_eq!(read(60_000, 70_000, &t), Read::Script);
    }

    #[test]
    fn tighter_settings_than_the_writer_had_send_the_read_to_the_script() {
        // Written with a 60 s idle timeout, read with 20 s: at now = 25001 (pttl 39999) the
        // session is idle past the new timeout, though its key lives on.
        let t = timeouts(20_000, 600_000, 1_000);
        assert_eq!(read(60_000, 39_999, &t), Read::Script);
        assert_eq!(
            read(60_000, 59_500, &t),
            Read::Live(Times {
                created: 1_000,
                seen: 5_000
            })
        );
        // The absolute timeout counts from creation: 1000 + 30000.
        let t = timeouts(20_000, 30_000, 19_999);
        assert_eq!(
            session(true, Some(1_000), Some(20_000), Some(80_000), 49_000, &t),
            Read::Script
        );
        assert_eq!(
            session(true, Some(1_000), Some(20_000), Some(80_000), 50_001, &t),
            Read::Live(Times {
                created: 1_000,
                seen: 20_000
            })
        );
    }

    #[cfg(feature = "tower-sessions")]
    #[test]
    fn tower_records_are_live_before_both_deadlines() {
        // Created at 1000, expiry date 9000, absolute 100000: deadline 9000.
        let rec =
            |pttl, absolute| record(true, Some(1_000), Some(9_000), Some(9_000), pttl, absolute);
        assert_eq!(rec(1, 100_000), Read::Live(()));
        assert_eq!(rec(NO_KEY, 100_000), Read::Missing);
        assert_eq!(rec(-1, 100_000), Read::Script);
        // A shorter absolute timeout than the writer's: 1000 + 5000 <= now = 6000.
        assert_eq!(rec(3_000, 5_000), Read::Script);
        assert_eq!(rec(4_000, 5_000), Read::Live(()));
        assert_eq!(record(true, Some(1), None, Some(9), 1, 100), Read::Script);
    }

    #[test]
    fn timestamps_parse_as_plain_digits_only() {
        assert_eq!(parse_ms(b"1764490000000"), Some(1_764_490_000_000));
        for bad in [&b""[..], b"-1", b"1e3", b"x", b"\xff"] {
            assert_eq!(parse_ms(bad), None);
        }
    }
}
