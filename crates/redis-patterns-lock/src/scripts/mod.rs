//! The Lua scripts of `redis-patterns-lock`, one `.lua` file each beside this module. Every script touches
//! one resource's keys only (a key and its companions), so it runs on one cluster slot. The
//! semaphore scripts read the server's clock through core's `now_ms()` prelude.

use redis_core::{Script, script::SERVER_CLOCK};

/// `next_fence(key, horizon)`: the fence arithmetic shared by the lock's acquire and hand-over.
const FENCE: &str = include_str!("fence.lua");

/// Suffix of the fencing counter: a companion of the lock (or holders) key, on the same slot,
/// passed as `KEYS[2]` to the acquire scripts.
pub(crate) const FENCE_SUFFIX: &str = "fence";

/// Takes a lock and the next fencing token. KEYS: lock, fence; ARGV: token, ttl ms; reply
/// `{1, fence}` when taken, `{0, pttl of the holder}` when held.
pub(crate) static ACQUIRE: Script = Script::new("lock_acquire", include_str!("acquire.lua"));

/// Suffix of a lock's waiters marker: set by an attempt that found the lock held and will wait,
/// deleted (and waiters told) by the release.
pub(crate) const WAITERS_SUFFIX: &str = "waiters";

/// [`Lock`](crate::Lock)'s acquire. KEYS: lock, fence, waiters; ARGV: token, ttl ms, counter
/// horizon ms (`0`: no TTL), `1` if waiting; reply `{1, fence}` taken, `{0, pttl of the holder}` held.
pub(crate) static LOCK_ACQUIRE: Script =
    Script::new("lock_acquire_fenced", include_str!("lock_acquire.lua"))
        .with_preludes(&[SERVER_CLOCK, FENCE]);

/// [`Lock`](crate::Lock)'s release. KEYS: lock, waiters; ARGV: token, channel; reply `2` deleted
/// and waiters told, `1` deleted, `0` not ours.
pub(crate) static LOCK_RELEASE: Script =
    Script::new("lock_release_notify", include_str!("lock_release.lua"));

/// [`Lock`](crate::Lock)'s hand-over to a waiter of the same process. KEYS: lock, fence; ARGV:
/// owner token, waiter's token, ttl ms, counter horizon ms (`0`: no TTL, `-1`: no fencing); reply
/// `{1, fence}` handed over, `{0, 0}` not ours.
pub(crate) static LOCK_HANDOVER: Script =
    Script::new("lock_handover", include_str!("lock_handover.lua"))
        .with_preludes(&[SERVER_CLOCK, FENCE]);

/// An unfenced lock's waiter marks itself. KEYS: lock, waiters; ARGV: none; reply the holder's
/// pttl, `-2` when the lock is free.
pub(crate) static LOCK_WAIT: Script = Script::new("lock_wait", include_str!("lock_wait.lua"));

/// Deletes a lock if the caller owns it (Redlock). KEYS: lock; ARGV: token; reply `1` deleted,
/// `0` not ours.
pub(crate) static RELEASE: Script = Script::new("lock_release", include_str!("release.lua"));

/// Renews a lock if the caller owns it. KEYS: lock; ARGV: token, ttl ms; reply `1` renewed, `0`
/// not ours.
pub(crate) static EXTEND: Script = Script::new("lock_extend", include_str!("extend.lua"));

/// Redlock's second round: lifts the counter to the agreed fence while the caller owns the lock.
/// KEYS: lock, fence; ARGV: token, fence; reply `1` owner (counter now `>= fence`), `0` not ours.
pub(crate) static RAISE_FENCE: Script =
    Script::new("lock_raise_fence", include_str!("raise_fence.lua"));

/// Takes a semaphore permit. KEYS: holders, fence; ARGV: token, ttl ms, permits; reply
/// `{1, fence}` when granted, `{0, ms until the earliest permit expires}` when all are taken.
pub(crate) static SEM_ACQUIRE: Script =
    Script::new("semaphore_acquire", include_str!("sem_acquire.lua"))
        .with_preludes(&[SERVER_CLOCK]);

/// Returns a permit. KEYS: holders; ARGV: token; reply `1` a live permit was returned, `0` it had
/// expired or was never held (removed either way).
pub(crate) static SEM_RELEASE: Script =
    Script::new("semaphore_release", include_str!("sem_release.lua"))
        .with_preludes(&[SERVER_CLOCK]);

/// Renews a permit. KEYS: holders; ARGV: token, ttl ms; reply `1` renewed, `0` expired (then
/// removed) or never held.
pub(crate) static SEM_EXTEND: Script =
    Script::new("semaphore_extend", include_str!("sem_extend.lua")).with_preludes(&[SERVER_CLOCK]);

/// Counts unexpired permits by the key's node clock. KEYS: holders; ARGV: none; reply the count.
pub(crate) static SEM_HOLDERS: Script =
    Script::new("semaphore_holders", include_str!("sem_holders.lua"))
        .with_preludes(&[SERVER_CLOCK]);
