//! The Lua scripts of the store. Each runs after redis-patterns-core's server clock (`now_ms()`) and the
//! session helpers of `common.lua` (`parse`, `encode`, `live`, `touch`, `store`, `settle_index`:
//! the value layout of `crate::layout`). Times are milliseconds of the server clock;
//! `docs/session.md` has the table of contracts.

use redis_core::{Script, script::SERVER_CLOCK};

/// Helpers shared by every session script.
const COMMON: &str = include_str!("common.lua");

/// KEYS: session, [owner's index]; ARGV: idle, absolute, user or '', digest, the encoded fields;
/// reply: the server's time when created, 0 when the key exists (never overwritten).
pub(crate) static CREATE: Script = Script::new("session_create", include_str!("create.lua"))
    .with_preludes(&[SERVER_CLOCK, COMMON]);

/// KEYS: session; ARGV: idle, absolute, touch interval, '1' for the value; reply: nil when not
/// live, else {now, created, seen, value or ''} (an access is recorded at most once per interval).
pub(crate) static ACCESS: Script = Script::new("session_access", include_str!("access.lua"))
    .with_preludes(&[SERVER_CLOCK, COMMON]);

/// KEYS: session; ARGV: idle, absolute, n, n field/value pairs to set, names to remove; reply: the
/// server's time when the session was live and updated, 0 when nothing was written.
pub(crate) static UPDATE: Script = Script::new("session_update", include_str!("update.lua"))
    .with_preludes(&[SERVER_CLOCK, COMMON]);

/// KEYS: old, new, [owner's index]; ARGV: idle, absolute, expected user or '', old digest, new
/// digest; reply: 1 renamed, 0 not live, -1 owner differs (retry), -2 new key exists (retry).
pub(crate) static ROTATE: Script = Script::new("session_rotate", include_str!("rotate.lua"))
    .with_preludes(&[SERVER_CLOCK, COMMON]);

/// KEYS: session, [owner's index]; ARGV: idle, absolute, expected owner or '', digest; reply: nil
/// when not live, {} when the owner differs (retry), else {created, encoded fields} (deleted).
pub(crate) static TAKE: Script =
    Script::new("session_take", include_str!("take.lua")).with_preludes(&[SERVER_CLOCK, COMMON]);

/// KEYS: user's index, its members' session keys; ARGV: idle, absolute, the members' digests;
/// reply: {digest, created, seen}... of the live ones (dead members are dropped).
pub(crate) static LIST: Script =
    Script::new("session_list", include_str!("list.lua")).with_preludes(&[SERVER_CLOCK, COMMON]);

/// KEYS: user's index, session keys; ARGV: user, the keys' digests; reply: {sessions of the user
/// deleted, members left in the index} (the members are dropped from the index).
pub(crate) static REVOKE: Script = Script::new("session_revoke", include_str!("revoke.lua"))
    .with_preludes(&[SERVER_CLOCK, COMMON]);

/// KEYS: tower-sessions record; ARGV: absolute, expiry date, encoded data; reply: {1, now} created
/// (or already expired), {0, now} when the key exists (never overwritten).
#[cfg(feature = "tower-sessions")]
pub(crate) static TOWER_CREATE: Script =
    Script::new("session_tower_create", include_str!("tower_create.lua"))
        .with_preludes(&[SERVER_CLOCK, COMMON]);

/// KEYS: tower-sessions record; ARGV: absolute, expiry date, encoded data (the whole data);
/// reply: {1, now} saved, {0, now} when the record is missing or expired (never brought back).
#[cfg(feature = "tower-sessions")]
pub(crate) static TOWER_SAVE: Script =
    Script::new("session_tower_save", include_str!("tower_save.lua"))
        .with_preludes(&[SERVER_CLOCK, COMMON]);

/// KEYS: tower-sessions record; ARGV: absolute; reply: nil when not live, else {now, value}.
#[cfg(feature = "tower-sessions")]
pub(crate) static TOWER_LOAD: Script =
    Script::new("session_tower_load", include_str!("tower_load.lua"))
        .with_preludes(&[SERVER_CLOCK, COMMON]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_reads_the_clock_through_the_preludes_only() {
        let scripts: &[&Script] = &[
            &CREATE,
            &ACCESS,
            &UPDATE,
            &ROTATE,
            &TAKE,
            &LIST,
            &REVOKE,
            #[cfg(feature = "tower-sessions")]
            &TOWER_CREATE,
            #[cfg(feature = "tower-sessions")]
            &TOWER_SAVE,
            #[cfg(feature = "tower-sessions")]
            &TOWER_LOAD,
        ];
        let preludes = format!("{SERVER_CLOCK}{COMMON}");
        assert!(!COMMON.contains("'TIME'"), "common.lua reads the clock");
        for script in scripts {
            assert!(script.name().starts_with("session_"), "{}", script.name());
            let body = script
                .source()
                .strip_prefix(preludes.as_str())
                .unwrap_or_else(|| panic!("{} lacks the preludes", script.name()));
            assert!(
                !body.contains("'TIME'"),
                "{} reads TIME itself",
                script.name()
            );
            assert!(body.contains("now_ms()"), "{}", script.name());
        }
    }
}
