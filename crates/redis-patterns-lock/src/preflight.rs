//! What locks and semaphores need from the server, for the doctor and for [`preflight`].

use redis_core::{
    KeySpace, Redis,
    doctor::{self, KEY, PreflightError, PreflightMode, Report, Requirements, SHA, Severity},
};

use crate::scripts;

/// What [`Lock`](crate::Lock), [`Redlock`](crate::Redlock) and
/// [`Semaphore`](crate::Semaphore) need from each server: no eviction (`allkeys-*` takes lock
/// keys and fencing counters, `volatile-*` takes lock keys), persistence across restarts, and for
/// Redlock `appendfsync always` (or restarts delayed by the longest lease); the commands the
/// scripts send; the fencing counters as the only keys without TTL.
pub static REQUIREMENTS: Requirements = Requirements::new("lock")
    .no_eviction(
        Severity::Error,
        Some(Severity::Error),
        "an evicted lock key lets a second holder in while the first still works; an evicted \
         fencing counter starts again at 1, so tokens repeat",
    )
    .persistence(
        Severity::Warning,
        "a server restarted without its data forgets every lock and fencing counter: a second \
         holder gets in and tokens repeat, unless restarts wait longer than the longest lease",
    )
    .fsync_always(
        Severity::Info,
        "Redlock counts on a granting instance remembering its grant after a crash: with \
         `everysec` the last second of grants can be lost",
    )
    .commands(&[
        &["EVALSHA", SHA, "1", KEY],
        &["SCRIPT", "LOAD", "return 1"],
        &["GET", KEY],
        &["SET", KEY, "token", "NX", "PX", "1000"],
        &["DEL", KEY],
        &["INCR", KEY],
        &["PEXPIRE", KEY, "1000"],
        &["PTTL", KEY],
        &["ZADD", KEY, "1", "m"],
        &["ZREM", KEY, "m"],
        &["ZRANGE", KEY, "0", "-1"],
        &["ZREMRANGEBYSCORE", KEY, "0", "1"],
        &["TIME"],
        &["PUBLISH", "lock:released", "m"],
        &["SUBSCRIBE", "lock:released"],
    ])
    .scripts(&[
        &scripts::LOCK_ACQUIRE,
        &scripts::LOCK_RELEASE,
        &scripts::LOCK_WAIT,
        &scripts::LOCK_HANDOVER,
        &scripts::ACQUIRE,
        &scripts::RELEASE,
        &scripts::EXTEND,
        &scripts::RAISE_FENCE,
        &scripts::SEM_ACQUIRE,
        &scripts::SEM_RELEASE,
        &scripts::SEM_EXTEND,
        &scripts::SEM_HOLDERS,
    ])
    .no_ttl_keys(&["{*}:fence", "semaphore:{*}:fence"]);

/// Checks [`REQUIREMENTS`] on every master behind `redis` (keys under `keys`) in `mode`: off,
/// warn once through `tracing` (the default, which building a lock also does in the
/// background), or refuse.
///
/// # Errors
/// In [`PreflightMode::Refuse`]: [`PreflightError::Refused`] when a finding of error severity
/// exists (an evicting policy, a user without `EVALSHA`), [`PreflightError::Check`] when the
/// server cannot be asked.
///
/// ```no_run
/// use redis_core::doctor::PreflightMode;
///
/// # async fn demo(redis: redis_core::Redis, keys: redis_core::KeySpace) -> Result<(), Box<dyn std::error::Error>> {
/// redis_lock::preflight(&redis, &keys, PreflightMode::Refuse).await?;
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
