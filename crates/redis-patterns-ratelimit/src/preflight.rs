//! What the rate limiters need from the server, for the doctor and for [`preflight`].

use redis_core::{
    KeySpace, Redis,
    doctor::{self, KEY, PreflightError, PreflightMode, Report, Requirements, SHA, Severity},
};

use crate::scripts;

/// What [`RateLimiter`](crate::RateLimiter) and
/// [`ConcurrencyLimiter`](crate::ConcurrencyLimiter) need: their counters kept (an evicted
/// counter hands a client a fresh quota), and the commands their scripts send. A restart
/// forgets at most one window, so persistence is not required.
pub static REQUIREMENTS: Requirements = Requirements::new("ratelimit")
    .no_eviction(
        Severity::Warning,
        Some(Severity::Warning),
        "an evicted counter resets a client's limit: it gets more than its quota until the window fills again",
    )
    .commands(&[
        &["EVALSHA", SHA, "1", KEY],
        &["SCRIPT", "LOAD", "return 1"],
        &["GET", KEY],
        &["SET", KEY, "1", "PX", "1000"],
        &["INCRBY", KEY, "1"],
        &["PEXPIRE", KEY, "1000"],
        &["PTTL", KEY],
        &["ZADD", KEY, "1", "m"],
        &["ZCARD", KEY],
        &["ZREM", KEY, "m"],
        &["ZREMRANGEBYSCORE", KEY, "0", "1"],
    ])
    .scripts(&[
        &scripts::FIXED_WINDOW,
        &scripts::SLIDING_LOG,
        &scripts::SLIDING_WINDOW,
        &scripts::TOKEN_BUCKET,
        &scripts::GCRA,
        &scripts::BATCH,
        &scripts::CONCURRENCY_ACQUIRE,
        &scripts::CONCURRENCY_RELEASE,
        &scripts::CONCURRENCY_IN_FLIGHT,
    ]);

/// Checks [`REQUIREMENTS`] on every master behind `redis` (keys under `keys`) in `mode`: off, warn
/// once through `tracing` (the default, which building a limiter also does in the background), or
/// refuse.
///
/// # Errors
/// In [`PreflightMode::Refuse`]: [`PreflightError::Refused`] when a finding of error severity
/// exists, [`PreflightError::Check`] when the server cannot be asked.
///
/// ```no_run
/// use redis_core::doctor::PreflightMode;
///
/// # async fn demo(redis: redis_core::Redis, keys: redis_core::KeySpace) -> Result<(), Box<dyn std::error::Error>> {
/// let report = redis_ratelimit::preflight(&redis, &keys, PreflightMode::Refuse).await?;
/// # Ok(()) }
/// ```
pub async fn preflight(
    redis: &Redis,
    keys: &KeySpace,
    mode: PreflightMode,
) -> Result<Report, PreflightError> {
    doctor::preflight(redis, keys, &REQUIREMENTS, mode).await
}

/// The build-time check: warn once, in the background, when a Tokio runtime is running.
pub(crate) fn on_build(redis: &Redis, keys: &KeySpace) {
    doctor::preflight_on_build(redis, keys, &REQUIREMENTS);
}
