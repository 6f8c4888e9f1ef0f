//! The write path: every write bumps the key's generation (fencing off fills of loads that
//! started before), frees the refresh lease and evicts the near copy; tag versions and the
//! stored envelope are built here too.

use std::time::Duration;

use futures_util::future::join_all;
use redis_core::{Codec, Key, duration_millis, random_token, redis};
use serde::Serialize;

use super::{Engine, GEN};
use crate::{
    config::EntryOptions,
    entry::{self, Kind},
    error::{Error, Result},
    lease::LEASE,
    scripts::WRITE,
};

/// Tag keys and the versions an entry was written under.
pub(crate) type TagVersions = Vec<(Vec<u8>, Vec<u8>)>;

impl<C: Codec> Engine<C> {
    /// Stores `value` with the options' TTL and tags (see [`Cache::set`](crate::Cache::set)).
    pub(crate) async fn put<V: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &V,
        opts: &EntryOptions,
    ) -> Result<()> {
        let tags = self.tag_versions(opts).await?;
        let (bytes, px) = self.envelope(Some(value), Duration::ZERO, opts, &tags)?;
        self.write(key, Some((&bytes, px))).await?;
        Ok(())
    }

    /// Bumps the generation, frees the refresh lease and stores (`Some`) or deletes (`None`)
    /// the entry; loads in flight in this process are detached from later callers.
    pub(crate) async fn write(&self, key: &Key, entry: Option<(&[u8], u64)>) -> Result<bool> {
        let call = WRITE
            .call()
            .key(key)
            .key(key.companion(GEN))
            .key(key.companion(LEASE))
            .arg(random_token())
            .arg(duration_millis(self.settings.version_ttl));
        let call = match entry {
            Some((bytes, px)) => call.arg("set").arg(bytes).arg(px),
            None => call.arg("del").arg("").arg(1),
        };
        let written = call.invoke::<i64>(&self.redis).await;
        // Evict at once rather than wait for the push (even a failed reply may hide an
        // applied write); readers that sent their GET before the write cannot store it now.
        if let Some(near) = &self.near {
            near.invalidate(key.as_str().as_bytes());
        }
        // A load in flight in this process may have read the source before this write; callers
        // arriving from now on must not be handed its value.
        self.flights.forget(key.as_str());
        Ok(written? > 0)
    }

    /// Sets a new random version of the tag whose version key is `key`.
    pub(crate) async fn invalidate_tag(&self, key: &Key) -> Result<()> {
        let px = duration_millis(self.settings.tag_ttl);
        let set = self
            .redis
            .query::<()>(
                redis::cmd("SET")
                    .arg(key)
                    .arg(random_token())
                    .arg("PX")
                    .arg(px),
            )
            .await;
        // Even a failed reply may hide an applied write: evict locally either way.
        if let Some(near) = &self.near {
            near.invalidate(key.as_str().as_bytes());
        }
        set?;
        Ok(())
    }

    /// The current version of each tag, creating missing ones (`SET NX GET`, one per tag).
    pub(crate) async fn tag_versions(&self, opts: &EntryOptions) -> Result<TagVersions> {
        if opts.tags.is_empty() {
            return Ok(Vec::new());
        }
        if opts.tags.len() > usize::from(u16::MAX) {
            return Err(Error::invalid_config("too many tags on one entry"));
        }
        let px = duration_millis(self.settings.tag_ttl);
        let keys = opts
            .tags
            .iter()
            .map(|t| Ok(self.tags.key(t)?))
            .collect::<Result<Vec<_>>>()?;
        // `SET ... NX GET` needs Redis 7.0: one clear error on an older server.
        self.redis.require(redis_core::Feature::SetNxGet).await?;
        let reads = keys.iter().map(|k| async move {
            let fresh = random_token();
            let old: Option<Vec<u8>> = self
                .redis
                .query(
                    redis::cmd("SET")
                        .arg(k)
                        .arg(&fresh)
                        .arg("NX")
                        .arg("GET")
                        .arg("PX")
                        .arg(px),
                )
                .await?;
            Ok::<_, Error>((
                k.as_str().as_bytes().to_vec(),
                old.unwrap_or_else(|| fresh.into_bytes()),
            ))
        });
        join_all(reads).await.into_iter().collect()
    }

    /// Encodes an entry; returns the bytes and the Redis TTL in ms (fresh TTL plus grace).
    pub(crate) fn envelope<V: Serialize + ?Sized>(
        &self,
        value: Option<&V>,
        took: Duration,
        opts: &EntryOptions,
        tags: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(Vec<u8>, u64)> {
        let s = &self.settings;
        let (kind, payload, fresh, grace) = match value {
            Some(v) => (
                Kind::Value,
                self.codec.encode(v)?,
                opts.ttl.unwrap_or(s.ttl),
                s.grace,
            ),
            None => (Kind::Negative, Vec::new(), s.negative_ttl, Duration::ZERO),
        };
        if tags
            .iter()
            .any(|(k, v)| k.len() > 0xFFFF || v.len() > 0xFFFF)
        {
            return Err(Error::invalid_config("tag key or version too long"));
        }
        // Never below 1 ms (Redis refuses `PX 0`), so no clamp is needed here.
        let fresh = entry::jittered_ttl(fresh, s.jitter, self.random());
        let fresh_ms = duration_millis(fresh);
        let delta_ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
        let bytes = entry::encode(
            kind,
            entry::now_ms().saturating_add(fresh_ms),
            delta_ms,
            tags,
            &payload,
        );
        Ok((bytes, fresh_ms.saturating_add(duration_millis(grace))))
    }
}
