//! The Lua scripts of the cache, one round trip each. The keys of one call are an entry and its
//! companions (`:gen`, `:lease`), so every script runs on one cluster slot. The full contracts
//! are in each `.lua` file and in `docs/cache.md`. Writes (`set`, `delete`) need no script: they
//! are ordered pipelines (see `engine/write.rs`).

use std::time::{Duration, Instant};

use redis_core::{Backoff, Script};

/// How long a script on an entry and its companions is sent again while a cluster migrates
/// their slot: keys split between two nodes answer `TRYAGAIN` until the migration ends.
const SPLIT_WAIT: Duration = Duration::from_secs(2);
/// Pause between those attempts.
const SPLIT_PAUSE: Backoff =
    Backoff::clamped(Duration::from_millis(10), Duration::from_millis(100));

/// Runs `call` (a script on an entry and its companions) again while it fails because their
/// slot is being migrated (`TRYAGAIN`, or a redirect the connection layer gave up following),
/// for up to [`SPLIT_WAIT`]. A key that does not exist yet (a lease, an entry on a miss) keeps
/// such a script from running on either node until the migration ends.
pub(crate) async fn across_migration<T, F, Fut>(mut call: F) -> redis_core::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis_core::Result<T>>,
{
    let deadline = Instant::now() + SPLIT_WAIT;
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if splits(&e) && Instant::now() < deadline => {
                tracing::debug!(error = %e, "slot being migrated; trying the script again");
                tokio::time::sleep(SPLIT_PAUSE.delay(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
            result => return result,
        }
    }
}

/// Whether `e` says the keys' slot is being migrated.
fn splits(e: &redis_core::Error) -> bool {
    e.is_redirect() || e.redis_error().and_then(|e| e.code()) == Some("TRYAGAIN")
}

/// KEYS lease, gen, entry; ARGV token, lease PX -> `{1 taken | 0, generation or '', 1 exists | 0}`.
pub(crate) static BEGIN: Script = Script::new("cache_begin", include_str!("begin.lua"));

/// KEYS entry, gen, lease; ARGV gen read, envelope ('' = delete), PX, token -> 1 stored, 0 fenced.
pub(crate) static STORE: Script = Script::new("cache_store", include_str!("store.lua"));

/// KEYS lease; ARGV token -> 1 released, 0 held by another token (or by nobody).
pub(crate) static RELEASE: Script = Script::new("cache_release", include_str!("release.lua"));

/// KEYS entry; ARGV the undecodable bytes -> 1 deleted, 0 the entry changed meanwhile.
pub(crate) static REMOVE_CORRUPT: Script =
    Script::new("cache_remove_corrupt", include_str!("remove_corrupt.lua"));
