//! The dead-letter stream: where entries out of deliveries or undecodable go, and reading it.

use std::sync::atomic::Ordering;

use redis_core::{
    Codec, Key, KeySpace, Redis,
    redis::{self, streams::StreamRangeReply},
};

use super::{PAYLOAD_FIELD, consumer::Consumer, stream_key};
use crate::{
    error::Result,
    scripts::DEAD_LETTER,
    value::{bytes, text},
};

/// The suffix of the dead-letter stream: `<stream>:dead`, a companion on the stream's slot.
pub const DEAD_LETTER_SUFFIX: &str = "dead";

/// The dead-letter stream of `stream`.
pub fn dead_letter_key(stream: &Key) -> Key {
    stream.companion(DEAD_LETTER_SUFFIX)
}

/// An entry of a dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its id in the dead-letter stream.
    pub dead_id: String,
    /// Its id in the original stream.
    pub original_id: String,
    /// Why it was moved (the handler's last error, a decode error, or missing acknowledgements).
    pub reason: String,
    /// Deliveries it had.
    pub attempts: u64,
    /// The group that gave up on it.
    pub group: String,
    /// The consumer that moved it.
    pub consumer: String,
    /// The original payload bytes.
    pub payload: Option<Vec<u8>>,
}

/// Reads up to `count` entries of the dead-letter stream of the stream named `stream`
/// (`<keys>:messaging:{<stream>}:dead`), oldest first, starting at `start` (`"-"` for the
/// beginning).
///
/// # Errors
/// [`Error::Core`](crate::Error::Core) when the name makes no valid key or the command fails.
pub async fn read_dead_letters(
    redis: &Redis,
    keys: &KeySpace,
    stream: &str,
    start: &str,
    count: usize,
) -> Result<Vec<DeadLetter>> {
    let reply: StreamRangeReply = redis
        .query(
            redis::cmd("XRANGE")
                .arg(dead_letter_key(&stream_key(keys, stream)?))
                .arg(start)
                .arg("+")
                .arg("COUNT")
                .arg(count),
        )
        .await?;
    Ok(reply
        .ids
        .into_iter()
        .map(|e| {
            let mut map = e.map;
            let mut field = |k: &str| map.remove(k).and_then(text).unwrap_or_default();
            let original_id = field("id");
            let reason = field("reason");
            let attempts = field("attempts").parse().unwrap_or(0);
            let group = field("group");
            let consumer = field("consumer");
            DeadLetter {
                dead_id: e.id,
                original_id,
                reason,
                attempts,
                group,
                consumer,
                payload: map.remove(PAYLOAD_FIELD).and_then(bytes),
            }
        })
        .collect())
}

impl<C: Codec> Consumer<C> {
    /// Moves entry `id` to the dead-letter stream, if this consumer still owns it; true when it
    /// did. Failures are logged: the entry then stays pending and comes back after `min_idle`.
    pub(super) async fn dead_letter(&self, id: &str, reason: &str, attempts: u64) -> bool {
        let inner = &self.inner;
        let moved: redis_core::Result<i64> = DEAD_LETTER
            .call()
            .key(&inner.stream)
            .key(&inner.dead)
            .arg(&inner.group)
            .arg(&*inner.name)
            .arg(id)
            .arg(reason)
            .arg(attempts)
            .arg(inner.settings.dead_letter_max_len)
            .invoke(&inner.redis)
            .await;
        match moved {
            Ok(1) => {
                inner.metrics.dead_lettered.increment(1);
                inner.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%id, attempts, %reason, "entry moved to the dead-letter stream");
                true
            }
            Ok(_) => {
                tracing::debug!(%id, "entry was claimed by another consumer; not dead-lettered here");
                false
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "dead-lettering failed; the entry stays pending");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_stream_is_a_companion_on_the_same_slot() {
        let ks = redis_core::KeySpace::new("t").unwrap();
        let key = stream_key(&ks, "s").unwrap();
        assert_eq!(key.as_str(), "t:messaging:{s}");
        assert_eq!(dead_letter_key(&key).as_str(), "t:messaging:{s}:dead");
        assert_eq!(dead_letter_key(&key).slot(), key.slot());
    }
}
