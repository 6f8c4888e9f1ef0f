//! The write path: every write bumps the key's generation (fencing off fills of loads that
//! started before) and evicts the near copy; tag versions and the stored envelope are built here
//! too.
//!
//! A write is one pipeline on the entry's slot, not a script: `SET gen` then `SET entry` (or
//! `DEL lease`, `DEL entry` for a delete). Redis runs one connection's commands in order, and a
//! fill's `store.lua` runs whole, so whichever way a fill interleaves it either lands before the
//! `SET gen` (and is overwritten by the entry) or sees the new generation and is refused. See
//! docs/cache.md, "Writes are ordered, not scripted".

use std::{io::Write, time::Duration};

use futures_util::future::{join, join_all};
use redis_core::{
    Codec, Key, TopologyKind, duration_millis, random_token,
    redis::{self, RedisWrite, ToRedisArgs},
};
use serde::Serialize;

use super::{Engine, GEN};
use crate::{
    config::EntryOptions,
    entry::{self, Kind, Sealed},
    error::{Error, Result},
    lease::LEASE,
};

/// Tag keys and the versions an entry was written under.
pub(crate) type TagVersions = Vec<(Vec<u8>, Vec<u8>)>;

impl<C: Codec> Engine<C> {
    /// Checks per-call options before anything is sent: TTL and tag count
    /// ([`EntryOptions::validate`]), and that every tag makes a key.
    pub(crate) fn check(&self, opts: &EntryOptions) -> Result<()> {
        opts.validate()?;
        self.tag_keys(opts).map(drop)
    }

    /// The version keys of the options' tags; a tag that cannot be a key is
    /// [`Error::InvalidConfig`].
    fn tag_keys(&self, opts: &EntryOptions) -> Result<Vec<Key>> {
        opts.tags
            .iter()
            .map(|tag| {
                self.tags
                    .key(tag)
                    .map_err(|e| Error::invalid_config(format!("invalid tag {tag:?}: {e}")))
            })
            .collect()
    }

    /// Stores `value` with the options' TTL and tags (see [`Cache::set`](crate::Cache::set)).
    ///
    /// Untagged: one pipeline. Tagged: the entry is written under the tag versions this process
    /// last saw while, in the same round trip, the current versions are read; only if one moved
    /// (or was unknown here and already existed) is the entry written again, under the versions
    /// just read (see [`TagMemo`](super::tags::TagMemo)).
    pub(crate) async fn put<V: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &V,
        opts: &EntryOptions,
    ) -> Result<()> {
        let payload = self.codec.encode(value)?;
        if opts.tags.is_empty() {
            let sealed = self.seal(Kind::Value, &payload, Duration::ZERO, opts.ttl, &[])?;
            self.write(key, Some(sealed)).await?;
            return Ok(());
        }
        let keys = self.tag_keys(opts)?;
        // `SET ... NX GET` needs Redis 7.0: one clear error on an older server.
        self.redis.require(redis_core::Feature::SetNxGet).await?;
        let fresh: Vec<String> = keys.iter().map(|_| random_token()).collect();
        let assumed: TagVersions = keys
            .iter()
            .zip(&fresh)
            .map(|(k, fresh)| {
                let k = k.as_str().as_bytes();
                let version = self.tag_memo.get(k);
                (
                    k.to_vec(),
                    version.unwrap_or_else(|| fresh.as_bytes().to_vec()),
                )
            })
            .collect();
        let sealed = self.seal(Kind::Value, &payload, Duration::ZERO, opts.ttl, &assumed)?;
        let current = match self.redis.topology() {
            // One server holds every key: one pipeline, tag versions first.
            TopologyKind::Standalone | TopologyKind::Sentinel => {
                self.write_tagged(key, sealed, &keys, fresh).await?
            }
            // Tags live on other slots: side by side, each routed to its own.
            _ => {
                let (current, written) = join(
                    self.read_tag_versions(&keys, fresh),
                    self.write(key, Some(sealed)),
                )
                .await;
                written?;
                current?
            }
        };
        if current != assumed {
            // Written under a version that is not current: a miss until rewritten.
            let sealed = self.seal(Kind::Value, &payload, Duration::ZERO, opts.ttl, &current)?;
            self.write(key, Some(sealed)).await?;
        }
        Ok(())
    }

    /// Bumps the generation and stores (`Some`: the envelope and its PX) or deletes (`None`,
    /// freeing the refresh lease too) the entry, in one pipeline (on a cluster, the generation
    /// first, alone); loads in flight in this process are detached from later callers. True
    /// when an entry was stored or deleted.
    pub(crate) async fn write(&self, key: &Key, entry: Option<(Sealed<'_>, u64)>) -> Result<bool> {
        let written = self.send_write(key, entry).await;
        self.written(key);
        Ok(written?)
    }

    async fn send_write(
        &self,
        key: &Key,
        entry: Option<(Sealed<'_>, u64)>,
    ) -> redis_core::Result<bool> {
        let mut pipe = redis::Pipeline::with_capacity(3);
        self.push_generation(&mut pipe, key);
        // While a cluster migrates the entry's slot, a command on a key the old owner no
        // longer holds is redirected (`ASK`), and the client sends the *whole* pipeline again
        // to the new owner, commands that already ran included: a generation (or an entry)
        // would then exist on both nodes, and the migration would stop on `BUSYKEY`. So the
        // generation goes alone, then the entry (deletes may run twice: they create nothing).
        // The order, and with it the fencing, is the same.
        let split = self.redis.topology() == TopologyKind::Cluster;
        let mut pipe = if split {
            self.redis.query_pipeline::<((),)>(&pipe).await?;
            redis::Pipeline::with_capacity(2)
        } else {
            pipe
        };
        // Replies are read as tuples rather than `ignore`d, which would cost a hash set.
        match entry {
            Some((sealed, px)) => {
                push_entry(&mut pipe, key, sealed, px);
                if split {
                    self.redis.query_pipeline::<((),)>(&pipe).await?;
                } else {
                    self.redis.query_pipeline::<((), ())>(&pipe).await?;
                }
                Ok(true)
            }
            None => {
                pipe.cmd("DEL").arg(Companion(key, LEASE));
                pipe.cmd("DEL").arg(key);
                let deleted = if split {
                    self.redis.query_pipeline::<((), i64)>(&pipe).await?.1
                } else {
                    self.redis.query_pipeline::<((), (), i64)>(&pipe).await?.2
                };
                Ok(deleted > 0)
            }
        }
    }

    /// A tagged write on a single server: one pipeline with a `SET NX GET` per tag (creating a
    /// missing one with its `fresh` version), then the generation and the entry. Returns the
    /// tags' current versions (remembered).
    async fn write_tagged(
        &self,
        key: &Key,
        (sealed, px): (Sealed<'_>, u64),
        tags: &[Key],
        fresh: Vec<String>,
    ) -> Result<TagVersions> {
        let tag_px = duration_millis(self.settings.tag_ttl);
        let mut pipe = redis::Pipeline::with_capacity(tags.len() + 2);
        for (tag, fresh) in tags.iter().zip(&fresh) {
            pipe.cmd("SET")
                .arg(tag)
                .arg(fresh)
                .arg("NX")
                .arg("GET")
                .arg("PX")
                .arg(tag_px);
        }
        self.push_generation(&mut pipe, key);
        push_entry(&mut pipe, key, sealed, px);
        let replies = self.redis.query_pipeline::<Vec<redis::Value>>(&pipe).await;
        self.written(key);
        let replies = replies?;
        let mut current = Vec::with_capacity(tags.len());
        for ((tag, fresh), reply) in tags.iter().zip(fresh).zip(replies) {
            let version = match reply {
                redis::Value::Nil => fresh.into_bytes(),
                redis::Value::BulkString(old) => old,
                other => {
                    return Err(redis_core::Error::UnexpectedReply(format!(
                        "SET NX GET of a tag version answered {other:?}"
                    ))
                    .into());
                }
            };
            let tag = tag.as_str().as_bytes();
            self.tag_memo.remember(tag, &version);
            current.push((tag.to_vec(), version));
        }
        Ok(current)
    }

    /// After a write was sent: evicts the near copy and detaches loads in flight here.
    fn written(&self, key: &Key) {
        // Evict at once rather than wait for the push (even a failed reply may hide an
        // applied write); readers that sent their GET before the write cannot store it now.
        if let Some(near) = &self.near {
            near.invalidate(key.as_str().as_bytes());
        }
        // A load in flight in this process may have read the source before this write; callers
        // arriving from now on must not be handed its value.
        self.flights.forget(key.as_str());
    }

    /// Adds `SET <key>:gen <new token> PX version_ttl`.
    fn push_generation(&self, pipe: &mut redis::Pipeline, key: &Key) {
        let mut generation = redis::Cmd::with_capacity(5, key.as_str().len() + 64);
        generation
            .arg("SET")
            .arg(Companion(key, GEN))
            .arg(&generation_token()[..])
            .arg("PX")
            .arg(duration_millis(self.settings.version_ttl));
        pipe.add_command(generation);
    }

    /// Sets a new random version of the tag whose version key is `key`.
    pub(crate) async fn invalidate_tag(&self, key: &Key) -> Result<()> {
        let px = duration_millis(self.settings.tag_ttl);
        let version = random_token();
        let set = self
            .redis
            .query::<()>(redis::cmd("SET").arg(key).arg(&version).arg("PX").arg(px))
            .await;
        if set.is_ok() {
            self.tag_memo
                .remember(key.as_str().as_bytes(), version.as_bytes());
        }
        // Even a failed reply may hide an applied write: evict locally either way.
        if let Some(near) = &self.near {
            near.invalidate(key.as_str().as_bytes());
        }
        set?;
        Ok(())
    }

    /// The current version of each tag, creating missing ones (`SET NX GET`, one per tag),
    /// read before a load.
    pub(crate) async fn tag_versions(&self, opts: &EntryOptions) -> Result<TagVersions> {
        if opts.tags.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.tag_keys(opts)?;
        // `SET ... NX GET` needs Redis 7.0: one clear error on an older server.
        self.redis.require(redis_core::Feature::SetNxGet).await?;
        let fresh = keys.iter().map(|_| random_token()).collect();
        self.read_tag_versions(&keys, fresh).await
    }

    /// The current version of each tag in `keys`, creating a missing one with its `fresh`
    /// version (`SET NX GET PX`, concurrent, each routed to its tag's slot); remembered.
    async fn read_tag_versions(&self, keys: &[Key], fresh: Vec<String>) -> Result<TagVersions> {
        let px = duration_millis(self.settings.tag_ttl);
        let reads = keys.iter().zip(fresh).map(|(k, fresh)| async move {
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
            let key = k.as_str().as_bytes();
            let version = old.unwrap_or_else(|| fresh.into_bytes());
            self.tag_memo.remember(key, &version);
            Ok::<_, Error>((key.to_vec(), version))
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
        let (sealed, px) = match value {
            Some(v) => {
                let payload = self.codec.encode(v)?;
                let (sealed, px) = self.seal(Kind::Value, &payload, took, opts.ttl, tags)?;
                (sealed.to_vec(), px)
            }
            None => {
                let (sealed, px) = self.seal(Kind::Negative, &[], took, None, tags)?;
                (sealed.to_vec(), px)
            }
        };
        Ok((sealed, px))
    }

    /// Wraps an encoded payload: a value lives its TTL (`ttl`, else the cache's) plus grace, a
    /// negative entry the negative TTL. Returns the envelope and its Redis TTL in ms.
    fn seal<'a>(
        &self,
        kind: Kind,
        payload: &'a [u8],
        took: Duration,
        ttl: Option<Duration>,
        tags: &'a [(Vec<u8>, Vec<u8>)],
    ) -> Result<(Sealed<'a>, u64)> {
        let s = &self.settings;
        let (fresh, grace) = match kind {
            Kind::Value => (ttl.unwrap_or(s.ttl), s.grace),
            Kind::Negative => (s.negative_ttl, Duration::ZERO),
        };
        if tags
            .iter()
            .any(|(k, v)| k.len() > 0xFFFF || v.len() > 0xFFFF)
        {
            return Err(Error::invalid_config("tag key or version too long"));
        }
        // Never below 1 ms (Redis refuses `PX 0`), so no clamp is needed here; TTLs and grace
        // were checked against `MAX_TTL`, so the sum fits what Redis takes.
        let fresh = entry::jittered_ttl(fresh, s.jitter, self.random());
        let fresh_ms = duration_millis(fresh);
        let sealed = Sealed {
            kind,
            fresh_until_ms: entry::now_ms().saturating_add(fresh_ms),
            delta_ms: u32::try_from(took.as_millis()).unwrap_or(u32::MAX),
            tags,
            payload,
        };
        Ok((sealed, fresh_ms.saturating_add(duration_millis(grace))))
    }
}

/// Adds `SET <key> <envelope> PX <px>`, the envelope written straight into the command.
fn push_entry(pipe: &mut redis::Pipeline, key: &Key, sealed: Sealed<'_>, px: u64) {
    let mut set = redis::Cmd::with_capacity(5, key.as_str().len() + sealed.len() + 32);
    set.arg("SET").arg(key).arg(sealed).arg("PX").arg(px);
    pipe.add_command(set);
}

/// A fresh generation: 128 random bits as 32 hex digits, built without allocating.
fn generation_token() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits: u128 = rand::random();
    let mut out = [0u8; 32];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = HEX[((bits >> (124 - 4 * i)) & 0xF) as usize];
    }
    out
}

/// A companion key (`<key>:<suffix>`, as [`Key::companion`] builds it) written straight into a
/// command's argument.
struct Companion<'a>(&'a Key, &'static str);

impl ToRedisArgs for Companion<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        // Writing to a command buffer cannot fail.
        let _ = arg
            .write_all(self.0.as_str().as_bytes())
            .and_then(|()| arg.write_all(b":"))
            .and_then(|()| arg.write_all(self.1.as_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use redis_core::{KeySpace, redis::ToRedisArgs};

    use super::{Companion, generation_token};

    #[test]
    fn companions_match_the_keys_core_builds() {
        let key = KeySpace::new("app").unwrap().key("a:b{c}").unwrap();
        for suffix in ["gen", "lease"] {
            let written = Companion(&key, suffix).to_redis_args();
            assert_eq!(
                written,
                vec![key.companion(suffix).as_str().as_bytes().to_vec()]
            );
        }
    }

    #[test]
    fn generations_are_random_hex() {
        let (a, b) = (generation_token(), generation_token());
        assert_ne!(a, b);
        assert!(
            a.iter()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
