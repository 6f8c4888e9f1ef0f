//! The Lua scripts of the cache, one round trip each. The keys of one call are an entry and its
//! companions (`:gen`, `:lease`), so every script runs on one cluster slot. The full contracts
//! are in each `.lua` file and in `docs/cache.md`. Writes (`set`, `delete`) need no script: they
//! are ordered pipelines (see `engine/write.rs`).

use redis_core::Script;

// A script's keys can be split by a cluster slot migration (a lease or an entry that does not
// exist yet): core's connection layer sends such a script again until the migration ends (up to
// `redis_core::MIGRATION_WAIT`), so none of them needs a retry loop here.

/// KEYS lease, gen, entry; ARGV token, lease PX -> `{1 taken | 0, generation or '', 1 exists | 0}`.
pub(crate) static BEGIN: Script = Script::new("cache_begin", include_str!("begin.lua"));

/// KEYS entry, gen, lease; ARGV gen read, envelope ('' = delete), PX, token -> 1 stored, 0 fenced.
pub(crate) static STORE: Script = Script::new("cache_store", include_str!("store.lua"));

/// KEYS lease; ARGV token -> 1 released, 0 held by another token (or by nobody).
pub(crate) static RELEASE: Script = Script::new("cache_release", include_str!("release.lua"));

/// KEYS entry; ARGV the undecodable bytes -> 1 deleted, 0 the entry changed meanwhile.
pub(crate) static REMOVE_CORRUPT: Script =
    Script::new("cache_remove_corrupt", include_str!("remove_corrupt.lua"));
