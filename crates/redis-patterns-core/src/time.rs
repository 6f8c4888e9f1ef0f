//! The server's clock.
//!
//! Application servers' clocks disagree; anything that compares times across processes (windows,
//! leases, expiries) should read one clock. Pattern scripts call `TIME` inside Lua; this helper is
//! for the rare caller that needs the time outside a script.

use std::time::Duration;

use redis::aio::ConnectionLike;

use crate::error::{Error, Result};

/// Reads `TIME` and returns the time since the Unix epoch as the server sees it.
///
/// # Errors
/// [`Error::Redis`] when the command fails, [`Error::UnexpectedReply`] on a malformed reply.
///
/// ```no_run
/// # async fn demo(redis: redis_core::Redis) -> redis_core::Result<()> {
/// let now = redis_core::server_time(&mut redis.clone()).await?;
/// println!("server time: {} ms since the epoch", now.as_millis());
/// # Ok(()) }
/// ```
pub async fn server_time<C: ConnectionLike + Send>(conn: &mut C) -> Result<Duration> {
    let (secs, micros): (String, String) = redis::cmd("TIME").query_async(conn).await?;
    parse_time(&secs, &micros)
}

/// Whole milliseconds of `d`, as Redis takes them (`PX`, `PEXPIRE`, script arguments), saturating
/// at `u64::MAX` instead of wrapping. Callers validate ranges first; this only never overflows.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(redis_core::duration_millis(Duration::from_micros(2_999)), 2);
/// assert_eq!(redis_core::duration_millis(Duration::MAX), u64::MAX);
/// ```
pub fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn parse_time(secs: &str, micros: &str) -> Result<Duration> {
    let bad = || Error::UnexpectedReply(format!("TIME returned {secs:?} {micros:?}"));
    let secs: u64 = secs.parse().map_err(|_| bad())?;
    let micros: u32 = micros.parse().map_err(|_| bad())?;
    if micros >= 1_000_000 {
        return Err(bad());
    }
    Ok(Duration::new(secs, micros * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_time_replies() {
        assert_eq!(
            parse_time("1700000000", "250000").unwrap(),
            Duration::from_millis(1_700_000_000_250)
        );
        assert!(parse_time("x", "1").is_err());
        assert!(parse_time("1", "1000000").is_err());
    }
}
