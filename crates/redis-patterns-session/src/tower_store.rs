//! [`TowerSessionStore`]: a `tower_sessions_core::SessionStore` on top of the session store's
//! handle, key space and secret (feature `tower-sessions`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use redis_core::{Codec, Key, KeySpace, Script, keys::KeyRef};
use time::OffsetDateTime;
use tower_sessions_core::{
    SessionStore as TowerStore,
    session::{Id, Record},
    session_store,
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::{
    SessionStore,
    id::{Ascii, DigestText, bucket_tag, digest_bucket, digest_text},
    layout::{self, Existing, RECORD, set_value},
    metrics::{Event, Operation, Outcome, observed, session_span},
    scripts::{TOWER_CREATE, TOWER_LOAD, TOWER_SAVE},
};

const ATTEMPTS: usize = 4;

/// A tower-sessions store on Redis, built from a [`SessionStore`] (its Redis handle, key space,
/// secret and absolute timeout; its idle timeout is tower-sessions' `Expiry`).
///
/// tower-sessions owns the cookie and the id format (its [`Id`] is 128 random bits from
/// `rand`'s CSPRNG), the data model (a map of JSON values saved as a whole) and the expiry date
/// (`Expiry`). This store adds what the in-memory and fred-based stores do not:
///
/// - the key is a digest of the id (SHA-256 or HMAC-SHA-256 with the secret of the
///   [`SessionStore`] it is built from), never the id;
/// - the record is one string: a header with its creation time and expiry date, then the data
///   entries as a map of names to JSON;
/// - the record's expiry date is enforced by the server (`PEXPIREAT` and a check in every
///   script), capped by the store's absolute timeout counted from creation;
/// - `create` never overwrites: on an id collision it draws a new id;
/// - `save` of a session that has meanwhile expired or been deleted writes nothing, so a
///   session cannot be brought back to life by a late request;
/// - `load` is a plain `GET` (no script) while the record is live, `create` a plain `SET NX
///   PXAT` (on the server's clock as the store last read it), `save` a plain `SET XX PXAT` of a
///   record this store created or loaded (it remembers their creation times, which the absolute
///   timeout counts from) and a script otherwise.
///
/// ```no_run
/// use redis_core::{KeySpace, Redis};
/// use redis_session::{SessionStore, TowerSessionStore};
/// use tower_sessions::{Expiry, SessionManagerLayer, cookie::time::Duration};
///
/// # async fn demo() -> redis_session::Result<()> {
/// let redis = Redis::open("redis://127.0.0.1:6379").await?;
/// let store = SessionStore::builder(redis, &KeySpace::new("myapp")?).build()?;
/// let layer = SessionManagerLayer::new(TowerSessionStore::new(store))
///     .with_expiry(Expiry::OnInactivity(Duration::minutes(30)));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TowerSessionStore<C: Codec = redis_core::codec::Json> {
    inner: SessionStore<C>,
    created: Arc<CreationTimes>,
}

/// The creation times of records this store created or loaded, by key digest, so that `save`
/// of such a record can be one plain `SET XX PXAT` (the absolute timeout counts from creation,
/// which a record never changes). A record this store has not seen is saved by the script.
/// Bounded: a shard that reaches its share of [`CreationTimes::CAPACITY`] starts over.
#[derive(Debug, Default)]
struct CreationTimes {
    shards: [Mutex<HashMap<[u8; 32], u64, DigestHash>>; 16],
}

/// Hashes a key digest by its first 8 bytes: they are already uniformly spread (SHA-256 or
/// HMAC-SHA-256 output), so SipHash would only cost time. Only records that exist are
/// remembered, and their ids are drawn by tower-sessions, so nobody picks where they land.
type DigestHash = std::hash::BuildHasherDefault<DigestHasher>;

#[derive(Debug, Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length (always 32), then its bytes: the first 8 of each
        // write are mixed in, which spreads as well as the digest does.
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(head);
    }
}

impl CreationTimes {
    /// Most records remembered (about 60 bytes each).
    const CAPACITY: usize = 16_384;

    fn shard(
        &self,
        digest: &[u8; 32],
    ) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], u64, DigestHash>> {
        let shard = &self.shards[usize::from(digest[31] & 15)];
        // A panic while holding it cannot leave the map inconsistent: take it back.
        shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember(&self, digest: [u8; 32], created: u64) {
        let mut shard = self.shard(&digest);
        if shard.len() >= Self::CAPACITY / 16 {
            shard.clear();
        }
        shard.insert(digest, created);
    }

    fn get(&self, digest: &[u8; 32]) -> Option<u64> {
        self.shard(digest).get(digest).copied()
    }

    fn forget(&self, digest: &[u8; 32]) {
        self.shard(digest).remove(digest);
    }
}

impl<C: Codec> TowerSessionStore<C> {
    /// Wraps `store`.
    pub fn new(store: SessionStore<C>) -> Self {
        Self {
            inner: store,
            created: Arc::default(),
        }
    }

    /// The Redis key of a tower-sessions id: a digest of the id, never the id. For inspection.
    ///
    /// # Errors
    /// [`crate::Error::Core`] when the key would exceed the key space's length limit.
    pub fn key_of(&self, id: &Id) -> crate::Result<Key> {
        Ok(self.key_and_digest(id)?.0)
    }

    /// The key of a record and the digest it is named by.
    fn key_and_digest(&self, id: &Id) -> crate::Result<(Key, [u8; 32])> {
        let parts = self.key_parts(id);
        Ok((
            self.inner.keys().tagged(&parts.tag, &parts.name)?,
            parts.digest,
        ))
    }

    /// What the key of the record `id` is made of.
    fn key_parts(&self, id: &Id) -> RecordKey {
        let digest = self.inner.hasher().digest("tower-session", &id_text(id));
        RecordKey {
            digest,
            tag: bucket_tag(digest_bucket(&digest)),
            name: digest_text(&digest),
        }
    }

    /// The record's data as the stored fields: a map of names to JSON.
    fn encoded_data(record: &Record) -> session_store::Result<Vec<u8>> {
        let data = record
            .data
            .iter()
            .map(|(name, value)| {
                serde_json::to_vec(value)
                    .map(|bytes| (name.as_bytes(), bytes))
                    .map_err(|e| session_store::Error::Encode(e.to_string()))
            })
            .collect::<session_store::Result<Vec<_>>>()?;
        Ok(layout::encode_fields(
            data.iter().map(|(name, bytes)| (*name, bytes.as_slice())),
        ))
    }

    /// Runs `script` (create or save) for `record`: whether it was written.
    async fn write(
        &self,
        script: &Script,
        key: &Key,
        record: &Record,
    ) -> session_store::Result<bool> {
        let (written, now): (i64, u64) = script
            .call()
            .key(key)
            .arg(self.inner.absolute_ms())
            .arg(unix_ms(record.expiry_date))
            .arg(Self::encoded_data(record)?)
            .invoke(self.inner.redis())
            .await
            .map_err(core_backend)?;
        self.inner.clock().observe(now);
        Ok(written == 1)
    }

    /// Writes a new record: a plain `SET NX PXAT` while the store knows the server's clock, the
    /// `tower_create` script otherwise. `false` when the id is taken.
    async fn create_once(&self, record: &Record) -> session_store::Result<bool> {
        let parts = self.key_parts(&record.id);
        let key = parts.key_ref(self.inner.keys())?;
        let Some(now) = self.inner.clock().now() else {
            // Boxed, here and on the other script paths: the rare path would otherwise make
            // every call's future larger (each a larger allocation and copy).
            return Box::pin(self.write(&TOWER_CREATE, &key.to_key(), record)).await;
        };
        let expires = u64::try_from(unix_ms(record.expiry_date)).unwrap_or(0);
        let deadline = expires.min(now.saturating_add(self.inner.absolute_ms()));
        if deadline <= now {
            // Already expired: nothing to keep (as the script does).
            return Ok(true);
        }
        let value = layout::encode(RECORD, now, expires, "", &Self::encoded_data(record)?);
        let created = set_value(self.inner.redis(), &key, value, Existing::Missing, deadline)
            .await
            .map_err(core_backend)?;
        if created {
            self.created.remember(parts.digest, now);
        }
        Ok(created)
    }

    async fn create_record(&self, record: &mut Record) -> session_store::Result<()> {
        for _ in 0..ATTEMPTS {
            if self.create_once(record).await? {
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(session_store::Error::Backend(
            "could not draw an unused session id".into(),
        ))
    }

    /// Replaces the data of a live record, never bringing back one that is gone: one plain
    /// `SET XX PXAT` when this store knows the record's creation time and the server's clock,
    /// the `tower_save` script otherwise.
    async fn save_record(&self, record: &Record) -> session_store::Result<bool> {
        let parts = self.key_parts(&record.id);
        let key = parts.key_ref(self.inner.keys())?;
        let (Some(created), Some(now)) =
            (self.created.get(&parts.digest), self.inner.clock().now())
        else {
            return Box::pin(self.write(&TOWER_SAVE, &key.to_key(), record)).await;
        };
        let expires = u64::try_from(unix_ms(record.expiry_date)).unwrap_or(0);
        let deadline = expires.min(created.saturating_add(self.inner.absolute_ms()));
        let redis = self.inner.redis();
        if deadline <= now {
            // Past a deadline: as the script, end it rather than write it.
            self.created.forget(&parts.digest);
            let _: i64 = Box::pin(redis.query(redis_core::redis::cmd("DEL").arg(&key)))
                .await
                .map_err(core_backend)?;
            return Ok(false);
        }
        let value = layout::encode(RECORD, created, expires, "", &Self::encoded_data(record)?);
        let saved = set_value(redis, &key, value, Existing::Present, deadline)
            .await
            .map_err(core_backend)?;
        if !saved {
            self.created.forget(&parts.digest);
        }
        Ok(saved)
    }

    /// A plain `GET` (reads record nothing, so no script is needed while the record is live
    /// under the store's absolute timeout and expiry date), the `tower_load` script when the
    /// store does not know the server's clock or finds a deadline passed (the script deletes
    /// the record).
    async fn load_record(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let parts = self.key_parts(id);
        let key = parts.key_ref(self.inner.keys())?;
        let reply = self
            .inner
            .redis()
            .query(redis_core::command("GET", 2, key.byte_len()).arg(&key))
            .await;
        let value: Option<Vec<u8>> = match reply {
            Ok(value) => value,
            // A key of an older layout (a hash): as missing.
            Err(redis_core::Error::Redis(e)) if e.code() == Some("WRONGTYPE") => None,
            Err(e) => return Err(core_backend(e)),
        };
        let Some(mut value) = value else {
            return Ok(None);
        };
        let live = |value: &[u8], now: Option<u64>| {
            let (created, expires) = layout::times(value, RECORD)?;
            let now = now?;
            (now < expires.min(created.saturating_add(self.inner.absolute_ms()))).then_some(())
        };
        if live(&value, self.inner.clock().now()).is_none() {
            let call = TOWER_LOAD
                .call()
                .key(key.to_key())
                .arg(self.inner.absolute_ms());
            let reply: Option<(u64, Vec<u8>)> = Box::pin(call.invoke(self.inner.redis()))
                .await
                .map_err(core_backend)?;
            let Some((now, fresh)) = reply else {
                return Ok(None);
            };
            self.inner.clock().observe(now);
            value = fresh;
        }
        let stored = layout::parse(&value, RECORD)
            .ok_or_else(|| session_store::Error::Decode("corrupt session record".into()))?;
        self.created.remember(parts.digest, stored.created);
        let expiry_date = i128::from(stored.seen)
            .checked_mul(1_000_000)
            .and_then(|nanos| OffsetDateTime::from_unix_timestamp_nanos(nanos).ok())
            .ok_or_else(|| session_store::Error::Decode("expiry out of range".into()))?;
        let mut data = HashMap::new();
        let fields = layout::decode_fields(stored.fields)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        for (name, value) in fields {
            let value = serde_json::from_slice(&value)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?;
            data.insert(name, value);
        }
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete_record(&self, id: &Id) -> session_store::Result<bool> {
        let (key, digest) = self.key_and_digest(id).map_err(backend)?;
        self.created.forget(&digest);
        let removed: i64 = self
            .inner
            .redis()
            .query(redis_core::redis::cmd("DEL").arg(&key))
            .await
            .map_err(core_backend)?;
        Ok(removed > 0)
    }
}

/// What a record's key is made of: the digest of its id, the hash tag (the digest's bucket) and
/// the name (the digest's text).
struct RecordKey {
    digest: [u8; 32],
    tag: Ascii<3>,
    name: DigestText,
}

impl RecordKey {
    /// The key, named without being built: what the plain commands send.
    fn key_ref<'a>(&'a self, keys: &'a KeySpace) -> session_store::Result<KeyRef<'a>> {
        keys.tagged_ref(&self.tag, &self.name).map_err(core_backend)
    }
}

/// Each operation is observed as the session store's: the same metrics (by the store's name),
/// spans named `session.tower.<operation>`.
#[async_trait]
impl<C: Codec> TowerStore for TowerSessionStore<C> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let span = session_span!(
            self.inner.redis(),
            self.inner.name(),
            "session.tower.create"
        );
        let create = self.create_record(record);
        observed!(
            self.inner.metrics(),
            Operation::Create,
            span,
            create,
            |_| { Outcome::event("created", Event::Created) }
        )
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let span = session_span!(self.inner.redis(), self.inner.name(), "session.tower.save");
        let save = self.save_record(record);
        observed!(
            self.inner.metrics(),
            Operation::Update,
            span,
            save,
            |&saved| { Outcome::plain(if saved { "updated" } else { "missing" }) }
        )
        .map(|_| ())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let span = session_span!(self.inner.redis(), self.inner.name(), "session.tower.load");
        observed!(
            self.inner.metrics(),
            Operation::Load,
            span,
            self.load_record(id),
            |r| {
                if r.is_some() {
                    Outcome::event("loaded", Event::Loaded)
                } else {
                    Outcome::event("missing", Event::Missing)
                }
            }
        )
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let span = session_span!(
            self.inner.redis(),
            self.inner.name(),
            "session.tower.delete"
        );
        observed!(
            self.inner.metrics(),
            Operation::Destroy,
            span,
            self.delete_record(id),
            |&ended| {
                if ended {
                    Outcome::event("destroyed", Event::Destroyed)
                } else {
                    Outcome::plain("missing")
                }
            }
        )
        .map(|_| ())
    }
}

/// The text of `id` as its `Display` writes it (URL-safe base64 of its 16 little-endian bytes,
/// 22 characters), on the stack: what the record's key is derived from.
fn id_text(id: &Id) -> [u8; 22] {
    let mut text = [0u8; 22];
    let written = URL_SAFE_NO_PAD.encode_slice(id.0.to_le_bytes(), &mut text);
    debug_assert_eq!(written.ok(), Some(22));
    text
}

fn unix_ms(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000_000
}

fn backend(e: crate::Error) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn core_backend(e: redis_core::Error) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ids_key_text_is_its_display() {
        for n in [
            0i128,
            1,
            -1,
            i128::MAX,
            i128::MIN,
            0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        ] {
            let id = Id(n);
            assert_eq!(id_text(&id), id.to_string().as_bytes());
        }
        let random = Id::default();
        assert_eq!(id_text(&random), random.to_string().as_bytes());
    }

    #[test]
    fn creation_times_are_found_by_digest() {
        let times = CreationTimes::default();
        let (a, mut b) = ([7u8; 32], [7u8; 32]);
        b[31] = 8;
        times.remember(a, 1);
        times.remember(b, 2);
        assert_eq!(times.get(&a), Some(1));
        assert_eq!(times.get(&b), Some(2));
        times.forget(&a);
        assert_eq!(times.get(&a), None);
        assert_eq!(times.get(&b), Some(2));
    }
}
