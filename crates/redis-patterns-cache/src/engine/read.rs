//! The read path: one route for every hit. Near-cache copies and Redis replies are both raw
//! envelopes, opened by [`Engine::open`]; what differs is only what happens when one does not
//! open (a near copy is dropped, a Redis entry is removed) and that a Redis hit checks its tags
//! and may be kept in the near cache.

use std::{borrow::Cow, time::Duration};

use futures_util::future::join_all;
use redis_core::{
    Codec, Key,
    keys::KeyRef,
    redis::{self, ToRedisArgs, ToSingleRedisArg},
};
use serde::de::DeserializeOwned;

use super::{Engine, commands};
use crate::{
    entry::{self, Kind},
    error::Result,
    metrics::Read,
    near::Near,
    scripts::REMOVE_CORRUPT,
};

/// An entry read and decoded.
pub(crate) struct Found<V> {
    /// `None` for a "not found" entry.
    pub(crate) value: Option<V>,
    pub(crate) fresh_until_ms: u64,
    pub(crate) delta_ms: u32,
    /// Past its freshness when read (kept for its grace period).
    pub(crate) stale: bool,
    /// Read from the near cache.
    pub(crate) near: bool,
}

impl<V> Found<V> {
    /// What serving this entry counts as.
    fn read(&self) -> Read {
        match (&self.value, self.stale) {
            (_, true) => Read::Stale,
            (None, false) => Read::NegativeHit,
            (Some(_), false) => Read::Hit,
        }
    }
}

/// What a read found.
pub(crate) enum Lookup<V> {
    Miss,
    Fresh(Found<V>),
    Stale(Found<V>),
}

/// A raw entry opened: the decoded entry and the tags it was written under (key, version).
type Opened<'a, V> = (Found<V>, Vec<(&'a [u8], &'a [u8])>);

/// The key of an entry to read: already built, or checked but built only when a colder branch
/// (near cache, tags, a corrupt entry) needs it, so a plain hit allocates no key.
pub(crate) trait EntryKey: ToRedisArgs + ToSingleRedisArg + Sync {
    /// The key, built.
    fn built(&self) -> Cow<'_, Key>;
    /// Its length in bytes.
    fn byte_len(&self) -> usize;
}

impl EntryKey for Key {
    fn built(&self) -> Cow<'_, Key> {
        Cow::Borrowed(self)
    }

    fn byte_len(&self) -> usize {
        self.as_str().len()
    }
}

impl EntryKey for KeyRef<'_> {
    fn built(&self) -> Cow<'_, Key> {
        Cow::Owned(self.to_key())
    }

    fn byte_len(&self) -> usize {
        KeyRef::byte_len(self)
    }
}

impl<C: Codec> Engine<C> {
    /// A fresh value, `None` for anything else (see [`Cache::get`](crate::Cache::get)); Redis
    /// errors go through the failure policy, an invalid name is an error. What it served is
    /// recorded on `span`.
    pub(crate) async fn get<V: DeserializeOwned>(
        &self,
        name: &str,
        span: &tracing::Span,
    ) -> Result<Option<V>> {
        // Checked but not built: a hit writes the key straight into its `GET`.
        let key = self.entries.key_ref(name)?;
        let (result, read) = match self.lookup::<V>(&key).await {
            Ok(Lookup::Fresh(found)) => {
                let read = self.served(&found);
                (Ok(found.value), read)
            }
            Ok(Lookup::Stale(_) | Lookup::Miss) => (Ok(None), Read::Miss),
            Err(e) => (self.tolerate(e, "read").map(|()| None), Read::Miss),
        };
        self.metrics.read(read, span);
        result
    }

    /// A fresh near-cache copy, else one `GET`, decode, tag check. Corrupt payloads are removed
    /// and read as a miss; fresh Redis hits are offered to the near cache.
    pub(crate) async fn lookup<V: DeserializeOwned>(
        &self,
        key: &impl EntryKey,
    ) -> std::result::Result<Lookup<V>, redis_core::Error> {
        let ticket = match &self.near {
            Some(near) => {
                let key = key.built();
                if let Some(found) = self.near_hit(near, &key) {
                    return Ok(Lookup::Fresh(found));
                }
                near.ticket(key.as_str())
            }
            None => None,
        };
        // The key is written straight into the command, whose buffers are reused.
        let mut get = commands::take();
        get.arg("GET").arg(key);
        let raw = self.redis.query::<Option<Vec<u8>>>(&get).await;
        if key.byte_len() <= commands::KEPT_KEY_LEN {
            commands::give_back(get);
        }
        let raw = raw?;
        let Some(raw) = raw else {
            return Ok(Lookup::Miss);
        };
        // The cold branches are boxed: their futures would otherwise widen every read's state
        // machine, which is moved on each call.
        let (mut found, tags) = match self.open::<V>(&raw) {
            Ok(opened) => opened,
            Err(reason) => {
                Box::pin(self.remove_corrupt(&key.built(), &raw, &reason)).await;
                return Ok(Lookup::Miss);
            }
        };
        if !tags.is_empty() && !Box::pin(self.tags_current(&key.built(), &tags)).await? {
            return Ok(Lookup::Miss);
        }
        let now = entry::now_ms();
        if now >= found.fresh_until_ms {
            found.stale = true;
            return Ok(Lookup::Stale(found));
        }
        if let (Some(near), Some(ticket)) = (&self.near, ticket) {
            let tags = tags.iter().map(|(k, _)| Box::from(*k)).collect();
            let fresh_for = Duration::from_millis(found.fresh_until_ms - now);
            near.insert(key.built().as_str(), ticket, &raw, tags, fresh_for);
        }
        Ok(Lookup::Fresh(found))
    }

    /// Decodes a raw entry (envelope, then the payload as `V`); the error says why it did not.
    fn open<'a, V: DeserializeOwned>(
        &self,
        raw: &'a [u8],
    ) -> std::result::Result<Opened<'a, V>, String> {
        let env = entry::decode(raw).map_err(|e| e.to_string())?;
        let value = match env.kind {
            Kind::Negative => None,
            Kind::Value => Some(
                self.codec
                    .decode::<V>(env.payload)
                    .map_err(|e| e.to_string())?,
            ),
        };
        let found = Found {
            value,
            fresh_until_ms: env.fresh_until_ms,
            delta_ms: env.delta_ms,
            stale: false,
            near: false,
        };
        Ok((found, env.tags))
    }

    /// A fresh copy from the near cache. Copies that turned stale or do not open (as `V`) are
    /// dropped from it and read from Redis instead. Tags need no check: a tag invalidation
    /// evicts the copies carrying the tag.
    fn near_hit<V: DeserializeOwned>(&self, near: &Near, key: &Key) -> Option<Found<V>> {
        let raw = near.get(key.as_str())?;
        match self.open::<V>(&raw) {
            Ok((found, _)) if entry::now_ms() < found.fresh_until_ms => Some(Found {
                near: true,
                ..found
            }),
            _ => {
                near.remove(key.as_str());
                None
            }
        }
    }

    /// Whether every tag still has the version the entry was written under (one `GET` per
    /// tag, concurrent, each routed to its own slot).
    async fn tags_current(
        &self,
        key: &Key,
        tags: &[(&[u8], &[u8])],
    ) -> std::result::Result<bool, redis_core::Error> {
        let reads = tags.iter().map(|(tag_key, _)| async move {
            let cmd = redis::cmd("GET").arg(*tag_key).clone();
            self.redis.query::<Option<Vec<u8>>>(&cmd).await
        });
        let current = join_all(reads).await;
        for ((tag_key, version), now) in tags.iter().zip(current) {
            let now = now?;
            if let Some(now) = &now {
                self.tag_memo.remember(tag_key, now);
            }
            if now.as_deref() != Some(*version) {
                tracing::debug!(
                    key = %key,
                    tag = %String::from_utf8_lossy(tag_key),
                    "entry invalidated by its tag"
                );
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// What serving `found` counts as; a copy from the near cache is counted as a near hit.
    pub(crate) fn served<V>(&self, found: &Found<V>) -> Read {
        if found.near {
            self.metrics.near_hits.increment(1);
        }
        found.read()
    }

    /// Should this caller refresh a fresh entry early (XFetch)?
    pub(crate) fn early_refresh_due<V>(&self, found: &Found<V>) -> bool {
        let beta = self.settings.beta;
        beta > 0.0
            && entry::xfetch_due(
                entry::now_ms(),
                found.fresh_until_ms,
                found.delta_ms,
                beta,
                self.random(),
            )
    }

    /// Deletes an entry that did not decode, unless it changed since it was read.
    async fn remove_corrupt(&self, key: &Key, raw: &[u8], error: &str) {
        tracing::warn!(key = %key, error = %error, len = raw.len(), "corrupt cache entry removed");
        let removed = REMOVE_CORRUPT
            .call()
            .key(key)
            .arg(raw)
            .invoke::<i64>(&self.redis)
            .await;
        match removed {
            Ok(1) => self.metrics.corrupt_entries.increment(1),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "could not remove corrupt cache entry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use redis_core::redis;

    use crate::Cache;

    /// A reader decodes garbage, then a writer stores a good value before the reader's removal
    /// reaches Redis: the removal must leave the good value alone.
    #[tokio::test]
    async fn removing_a_corrupt_entry_spares_a_value_written_meanwhile() {
        let (redis, keys) = crate::engine::unit_test_server().await;
        let cache = Cache::builder(redis.clone(), &keys).build().unwrap();
        let key = cache.key("p").unwrap();
        // What the reader saw; by now a writer has replaced it.
        let seen = b"\xff\x00garbage".to_vec();
        cache.set("p", &7u32).await.unwrap();
        cache.engine().remove_corrupt(&key, &seen, "test").await;
        assert_eq!(cache.get::<u32>("p").await.unwrap(), Some(7));

        // Bytes that are still there are removed.
        let _: () = redis
            .query(redis::cmd("SET").arg(&key).arg(&seen).arg("EX").arg(60))
            .await
            .unwrap();
        cache.engine().remove_corrupt(&key, &seen, "test").await;
        let exists: i64 = redis.query(redis::cmd("EXISTS").arg(&key)).await.unwrap();
        assert_eq!(exists, 0);
    }
}
