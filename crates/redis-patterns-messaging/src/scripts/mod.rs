//! Every Lua script of the crate. The `.lua` files beside this one carry the full contracts.

use redis_core::{Script, script::SERVER_CLOCK};

/// Claims entries idle past min-idle and dead-letters those out of deliveries.
/// KEYS `[stream, dead]`; ARGV `[group, consumer, min_idle_ms, cursor, count, max_deliveries,
/// dead_maxlen]`; reply `{cursor, {{id, deliveries, {field, value, ..}}, ..}, dead, deleted}`.
pub(crate) static CLAIM: Script = Script::new("messaging_claim", include_str!("claim.lua"));

/// Moves one entry still pending for the caller to the dead-letter stream and acknowledges it.
/// KEYS `[stream, dead]`; ARGV `[group, consumer, id, reason, attempts, dead_maxlen]`; reply 1 moved, 0 not ours.
pub(crate) static DEAD_LETTER: Script =
    Script::new("messaging_dead_letter", include_str!("dead_letter.lua"));

/// Deletes the group's consumers with nothing pending and idle at least min-idle.
/// KEYS `[stream]`; ARGV `[group, min_idle_ms]`; reply the names removed.
pub(crate) static REMOVE_IDLE: Script = Script::new(
    "messaging_remove_idle_consumers",
    include_str!("remove_idle_consumers.lua"),
);

/// Appends payloads (field `p`) with `MINID ~ now_ms - max_age`, by the server's clock.
/// KEYS `[stream]`; ARGV `[max_age_ms, payload..]`; reply the new ids in order.
pub(crate) static XADD_MINID: Script =
    Script::new("messaging_xadd_minid", include_str!("xadd_minid.lua"))
        .with_preludes(&[SERVER_CLOCK]);

/// Takes the in-progress lease on an idempotency key (`SET NX PX`).
/// KEYS `[key]`; ARGV `["lease:<token>", lease_ms]`; reply `{1, 0}` taken, `{0, pttl}` busy, `{2, pttl}` done.
pub(crate) static LEASE_ACQUIRE: Script =
    Script::new("messaging_lease_acquire", include_str!("lease_acquire.lua"));

/// Ends a lease while the token still owns the key: marks the id done or deletes the lease.
/// KEYS `[key]`; ARGV `["lease:<token>", done_ttl_ms or ""]`; reply 1 owned, 0 not.
pub(crate) static LEASE_RELEASE: Script =
    Script::new("messaging_lease_release", include_str!("lease_release.lua"));
