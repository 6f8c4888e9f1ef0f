//! What the session store needs from the server, for the doctor and for [`preflight`].

use redis_core::{
    KeySpace, Redis,
    doctor::{self, KEY, PreflightError, PreflightMode, Report, Requirements, SHA, Severity},
};

use crate::scripts;

/// What a [`SessionStore`](crate::SessionStore) needs: no eviction (every session key has a
/// TTL, so `volatile-*` takes them as surely as `allkeys-*`), persistence, and the commands its
/// scripts send.
pub static REQUIREMENTS: Requirements = Requirements::new("session")
    .no_eviction(
        Severity::Error,
        Some(Severity::Error),
        "an evicted session logs its user out, and an evicted per-user index hides sessions from listing and revoking",
    )
    .persistence(
        Severity::Warning,
        "a restart without persistence logs everyone out",
    )
    .commands(&[
        &["EVALSHA", SHA, "1", KEY],
        &["SCRIPT", "LOAD", "return 1"],
        &["GET", KEY],
        &["GETRANGE", KEY, "0", "33"],
        &["SET", KEY, "v", "NX", "PXAT", "1"],
        &["SETRANGE", KEY, "18", "v"],
        &["PEXPIREAT", KEY, "1"],
        &["DEL", KEY],
        &["EXISTS", KEY],
        &["RENAME", KEY, KEY],
        &["ZADD", KEY, "1", "m"],
        &["ZRANGE", KEY, "0", "-1"],
        &["ZREM", KEY, "m"],
        &["ZREMRANGEBYSCORE", KEY, "0", "1"],
        &["ZCARD", KEY],
    ])
    .scripts(&[
        &scripts::CREATE,
        &scripts::ACCESS,
        &scripts::UPDATE,
        &scripts::ROTATE,
        &scripts::TAKE,
        &scripts::LIST,
        &scripts::REVOKE,
    ]);

/// Checks [`REQUIREMENTS`] on every master behind `redis` (keys under `keys`) in `mode`: off, warn
/// once through `tracing` (the default, which building a store also does in the background), or
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
/// let report = redis_session::preflight(&redis, &keys, PreflightMode::Refuse).await?;
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
