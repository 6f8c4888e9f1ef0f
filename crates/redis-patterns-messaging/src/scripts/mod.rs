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

/// Schedules a delayed entry unless its job id is already scheduled (server clock).
/// KEYS `[delayed, jobs]`; ARGV `["after"|"at", ms, job_id, "<trim>\n<payload>", horizon_ms]`;
/// reply `{1 scheduled | 0 known id, due_ms}`.
pub(crate) static SCHEDULE: Script =
    Script::new("messaging_schedule", include_str!("schedule.lua")).with_preludes(&[SERVER_CLOCK]);

/// Cancels a scheduled entry not yet moved. KEYS `[delayed, jobs]`; ARGV `[job_id]`; reply 1 or 0.
pub(crate) static CANCEL_SCHEDULED: Script = Script::new(
    "messaging_cancel_scheduled",
    include_str!("cancel_scheduled.lua"),
);

/// Moves due delayed entries into the stream and takes the group's hand-back mark.
/// KEYS `[stream, delayed, jobs, hand_back_mark]`; ARGV `[limit]`;
/// reply `{moved, ms_to_next_due or -1, mark_taken}`.
pub(crate) static TICK: Script =
    Script::new("messaging_tick", include_str!("tick.lua")).with_preludes(&[SERVER_CLOCK]);

/// Resets the idle time of entries still pending for the caller (`XCLAIM .. JUSTID` to itself).
/// KEYS `[stream]`; ARGV `[group, consumer, id..]`; reply the ids no longer the caller's.
pub(crate) static HEARTBEAT: Script =
    Script::new("messaging_heartbeat", include_str!("heartbeat.lua"));

/// Sets an entry's delivery counter before the caller retries it, if still the caller's.
/// KEYS `[stream]`; ARGV `[group, consumer, id, attempt]`; reply 1 ours, 0 claimed elsewhere.
pub(crate) static RETRY: Script = Script::new("messaging_retry", include_str!("retry.lua"));

/// Makes entries the caller will not handle claimable at once and marks the group.
/// KEYS `[stream, hand_back_mark]`; ARGV `[group, consumer, min_idle_ms, (id, unstarted)..]`;
/// reply the number handed back.
pub(crate) static HAND_BACK: Script =
    Script::new("messaging_hand_back", include_str!("hand_back.lua"));
