//! What streams and pub/sub need from the server, for the doctor and for [`preflight`].

use redis_core::{
    KeySpace, Redis, ServerVersion,
    doctor::{
        self, CHANNEL, KEY, PreflightError, PreflightMode, Report, Requirements, SHA, Severity,
    },
};

use crate::scripts;

/// What [`Producer`](crate::Producer), [`Consumer`](crate::Consumer) and pub/sub need: a stream
/// is a durable queue, so no eviction (streams carry no TTL: `volatile-*` only reaches the
/// idempotency markers) and persistence; Redis 6.2 for `XAUTOCLAIM`; the commands sent. The
/// streams and their dead-letter streams are the keys without TTL.
pub static REQUIREMENTS: Requirements = Requirements::new("messaging")
    .no_eviction(
        Severity::Error,
        Some(Severity::Warning),
        "an evicted stream loses its entries and consumer groups; under `volatile-*` only \
         idempotency markers go, and a redelivered entry may run twice",
    )
    .persistence(
        Severity::Error,
        "a stream is a durable queue: a restart without persistence loses every entry not yet \
         processed",
    )
    .min_version(
        ServerVersion::new(6, 2, 0),
        "consumers reclaim stalled entries with XAUTOCLAIM",
    )
    .commands(&[
        &["EVALSHA", SHA, "1", KEY],
        &["SCRIPT", "LOAD", "return 1"],
        &["XADD", KEY, "*", "f", "v"],
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "1",
            "STREAMS",
            KEY,
            ">",
        ],
        &["XACK", KEY, "g", "0-1"],
        &["XGROUP", "CREATE", KEY, "g", "$", "MKSTREAM"],
        &["XINFO", "GROUPS", KEY],
        &["XRANGE", KEY, "-", "+"],
        &["XAUTOCLAIM", KEY, "g", "c", "1000", "0-0"],
        &["XPENDING", KEY, "g"],
        &["SET", KEY, "v", "NX", "PX", "1000"],
        &["GET", KEY],
        &["DEL", KEY],
        &["PUBLISH", CHANNEL, "m"],
        &["SUBSCRIBE", CHANNEL],
    ])
    .scripts(&[
        &scripts::CLAIM,
        &scripts::DEAD_LETTER,
        &scripts::REMOVE_IDLE,
        &scripts::XADD_MINID,
        &scripts::LEASE_ACQUIRE,
        &scripts::LEASE_RELEASE,
        &scripts::SCHEDULE,
        &scripts::CANCEL_SCHEDULED,
        &scripts::TICK,
        &scripts::HEARTBEAT,
        &scripts::RETRY,
        &scripts::HAND_BACK,
    ])
    .no_ttl_keys(&["{*}", "{*}:dead"]);

/// Checks [`REQUIREMENTS`] on every master behind `redis` (keys under `keys`) in `mode`: off, warn
/// once through `tracing` (the default, which building a producer or consumer also does in the background), or
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
/// let report = redis_messaging::preflight(&redis, &keys, PreflightMode::Refuse).await?;
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
