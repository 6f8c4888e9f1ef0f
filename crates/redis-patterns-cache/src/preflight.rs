//! What the cache needs from the server, for the doctor and for [`preflight`].

use redis_core::{
    KeySpace, Redis,
    doctor::{
        self, CHANNEL, KEY, PreflightError, PreflightMode, Report, Requirements, SHA, Severity,
    },
};

use crate::scripts;

/// What a [`Cache`](crate::Cache) needs: a memory limit and an evicting policy (a cache is the
/// one pattern that wants eviction: every key it writes has a TTL, so `allkeys-*` and
/// `volatile-*` both work), and the commands it sends. Nothing needs to survive a restart.
pub static REQUIREMENTS: Requirements = Requirements::new("cache")
    .memory_limit(
        Severity::Warning,
        "without a limit nothing is evicted to make room: the server grows until the host stops it",
    )
    .wants_eviction(
        Severity::Warning,
        "under `noeviction` a full server refuses cache writes (OOM) instead of dropping cold entries",
    )
    .commands(&[
        &["EVALSHA", SHA, "1", KEY],
        &["SCRIPT", "LOAD", "return 1"],
        &["GET", KEY],
        &["SET", KEY, "v", "PX", "1000"],
        &["DEL", KEY],
        &["EXISTS", KEY],
        &["PTTL", KEY],
    ])
    .scripts(&[
        &scripts::BEGIN,
        &scripts::STORE,
        &scripts::RELEASE,
        &scripts::REMOVE_CORRUPT,
    ]);

/// What the near cache ([`CacheBuilder::near_cache`](crate::CacheBuilder::near_cache)) needs on
/// top of [`REQUIREMENTS`]: RESP3 and `CLIENT TRACKING` on every master.
pub static NEAR_CACHE_REQUIREMENTS: Requirements = Requirements::new("near-cache")
    .resp3(
        Severity::Error,
        "invalidations arrive as RESP3 pushes: without them near copies would go stale",
    )
    .commands(&[
        &["HELLO", "3"],
        &["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", CHANNEL],
    ]);

/// Checks [`REQUIREMENTS`] on every master behind `redis` (keys under `keys`) in `mode`: off, warn
/// once through `tracing` (the default, which building a cache also does in the background), or
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
/// let report = redis_cache::preflight(&redis, &keys, PreflightMode::Refuse).await?;
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
