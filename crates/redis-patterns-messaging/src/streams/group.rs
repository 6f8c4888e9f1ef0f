//! Consumer-group administration: creating a group, removing idle consumers.

use std::time::Duration;

use redis_core::{
    Key, KeySpace, Redis, duration_millis,
    redis::{self, Value},
};

use super::stream_key;
use crate::{
    error::{Error, Result},
    scripts::REMOVE_IDLE,
};

/// Creates `group` on `stream` (and the stream) when missing; `BUSYGROUP` is success.
pub(super) async fn ensure_group(
    redis: &Redis,
    stream: &Key,
    group: &str,
    start_id: &str,
) -> Result<()> {
    let created: Result<Value> = redis
        .query(
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg(group)
                .arg(start_id)
                .arg("MKSTREAM"),
        )
        .await
        .map_err(Error::from);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e),
    }
}

/// True when the group is gone (`NOGROUP`: the server lost its data, or someone destroyed it).
pub(super) fn is_no_group(e: &Error) -> bool {
    e.code() == Some("NOGROUP")
}

/// Removes the consumers of `group` on the stream named `stream` (`<keys>:messaging:{<stream>}`)
/// that have no pending entries and were idle for at least `min_idle`, atomically (a consumer
/// cannot be handed an entry between the check and the removal). Returns their names.
///
/// A consumer with pending entries is never removed: removing it would drop its entries from the
/// pending list, and nobody would ever reclaim them.
///
/// # Errors
/// [`Error::Core`] when the stream or group does not exist, the name makes no valid key, or the
/// command fails.
pub async fn remove_idle_consumers(
    redis: &Redis,
    keys: &KeySpace,
    stream: &str,
    group: &str,
    min_idle: Duration,
) -> Result<Vec<String>> {
    Ok(REMOVE_IDLE
        .call()
        .key(stream_key(keys, stream)?)
        .arg(group)
        .arg(duration_millis(min_idle))
        .invoke(redis)
        .await?)
}
