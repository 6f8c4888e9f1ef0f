//! [`TowerSessionStore`]: a `tower_sessions_core::SessionStore` on top of the session store's
//! handle, key space and secret (feature `tower-sessions`).

use std::{collections::HashMap, sync::Arc};

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
    layout::{self, Existing, RECORD, ValueWriter, set_value},
    metrics::{Event, Operation, Outcome, observed, session_span},
    scripts::{TOWER_CREATE, TOWER_LOAD, TOWER_SAVE},
};

mod known;
use known::KnownRecords;

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
///   record this store created or loaded (it remembers them by id, with their key and their
///   creation time, which the absolute timeout counts from) and a script otherwise.
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
    /// Behind one `Arc`: a clone touches one shared count.
    shared: Arc<Shared<C>>,
}

/// What every clone of a [`TowerSessionStore`] shares.
#[derive(Debug)]
struct Shared<C: Codec> {
    store: SessionStore<C>,
    known: KnownRecords,
}

impl<C: Codec> TowerSessionStore<C> {
    /// Wraps `store`.
    pub fn new(store: SessionStore<C>) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                known: KnownRecords::default(),
            }),
        }
    }

    /// The session store this one is built from.
    fn store(&self) -> &SessionStore<C> {
        &self.shared.store
    }

    /// The records this store created or loaded.
    fn known(&self) -> &KnownRecords {
        &self.shared.known
    }

    /// The Redis key of a tower-sessions id: a digest of the id, never the id. For inspection.
    ///
    /// # Errors
    /// [`crate::Error::Core`] when the key would exceed the key space's length limit.
    pub fn key_of(&self, id: &Id) -> crate::Result<Key> {
        let parts = self.record_key(id);
        Ok(self.store().keys().tagged(&parts.tag, &parts.name)?)
    }

    /// What the key of the record `id` is made of, derived from its digest.
    fn record_key(&self, id: &Id) -> RecordKey {
        let digest = self.store().hasher().digest("tower-session", &id_text(id));
        RecordKey {
            tag: bucket_tag(digest_bucket(&digest)),
            name: digest_text(&digest),
        }
    }

    /// The key of the record `id` and, when this store knows the record, its creation time.
    fn known_key(&self, id: &Id) -> (RecordKey, Option<u64>) {
        match self.known().get(id) {
            Some(known) => (known.key, Some(known.created)),
            None => (self.record_key(id), None),
        }
    }

    /// The record's data as stored fields (a map of names to JSON, in name order), behind the
    /// header of a record value for `(created, expires)`, or bare (the scripts' argument).
    fn encoded(record: &Record, header: Option<(u64, u64)>) -> session_store::Result<Vec<u8>> {
        in_name_order(&record.data, |data| {
            // A guess at the size: short names and values, the usual case, fit.
            let capacity = data.iter().map(|(name, _)| name.len() + 32).sum();
            let mut writer = match header {
                Some((created, expires)) => {
                    ValueWriter::value(RECORD, created, expires, "", data.len(), capacity)
                }
                None => ValueWriter::fields(data.len(), capacity),
            };
            for (name, value) in data {
                writer
                    .field(name.as_bytes(), |out| serde_json::to_writer(out, value))
                    .map_err(|e| session_store::Error::Encode(e.to_string()))?;
            }
            Ok(writer.finish())
        })
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
            .arg(self.store().absolute_ms())
            .arg(unix_ms(record.expiry_date))
            .arg(Self::encoded(record, None)?)
            .invoke(self.store().redis())
            .await
            .map_err(core_backend)?;
        self.store().clock().observe(now);
        Ok(written == 1)
    }

    /// Writes a new record: a plain `SET NX PXAT` while the store knows the server's clock, the
    /// `tower_create` script otherwise. `false` when the id is taken.
    async fn create_once(&self, record: &Record) -> session_store::Result<bool> {
        let parts = self.record_key(&record.id);
        let key = parts.key_ref(self.store().keys())?;
        let Some(now) = self.store().clock().now() else {
            // Boxed, here and on the other script paths: the rare path would otherwise make
            // every call's future larger (each a larger allocation and copy).
            return Box::pin(self.write(&TOWER_CREATE, &key.to_key(), record)).await;
        };
        let expires = u64::try_from(unix_ms(record.expiry_date)).unwrap_or(0);
        let deadline = expires.min(now.saturating_add(self.store().absolute_ms()));
        if deadline <= now {
            // Already expired: nothing to keep (as the script does).
            return Ok(true);
        }
        let value = Self::encoded(record, Some((now, expires)))?;
        let created = set_value(
            self.store().redis(),
            &key,
            value,
            Existing::Missing,
            deadline,
        )
        .await
        .map_err(core_backend)?;
        if created {
            self.known().remember(&record.id, parts, now);
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
        let (parts, created) = self.known_key(&record.id);
        let key = parts.key_ref(self.store().keys())?;
        let (Some(created), Some(now)) = (created, self.store().clock().now()) else {
            return Box::pin(self.write(&TOWER_SAVE, &key.to_key(), record)).await;
        };
        let expires = u64::try_from(unix_ms(record.expiry_date)).unwrap_or(0);
        let deadline = expires.min(created.saturating_add(self.store().absolute_ms()));
        let redis = self.store().redis();
        if deadline <= now {
            // Past a deadline: as the script, end it rather than write it.
            self.known().forget(&record.id);
            let _: i64 = Box::pin(redis.query(redis_core::redis::cmd("DEL").arg(&key)))
                .await
                .map_err(core_backend)?;
            return Ok(false);
        }
        let value = Self::encoded(record, Some((created, expires)))?;
        let saved = set_value(redis, &key, value, Existing::Present, deadline)
            .await
            .map_err(core_backend)?;
        if !saved {
            self.known().forget(&record.id);
        }
        Ok(saved)
    }

    /// A plain `GET` (reads record nothing, so no script is needed while the record is live
    /// under the store's absolute timeout and expiry date), the `tower_load` script when the
    /// store does not know the server's clock or finds a deadline passed (the script deletes
    /// the record).
    async fn load_record(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let (parts, known_created) = self.known_key(id);
        let key = parts.key_ref(self.store().keys())?;
        let reply = self
            .store()
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
            (now < expires.min(created.saturating_add(self.store().absolute_ms()))).then_some(())
        };
        if live(&value, self.store().clock().now()).is_none() {
            let call = TOWER_LOAD
                .call()
                .key(key.to_key())
                .arg(self.store().absolute_ms());
            let reply: Option<(u64, Vec<u8>)> = Box::pin(call.invoke(self.store().redis()))
                .await
                .map_err(core_backend)?;
            let Some((now, fresh)) = reply else {
                return Ok(None);
            };
            self.store().clock().observe(now);
            value = fresh;
        }
        let stored = layout::parse(&value, RECORD)
            .ok_or_else(|| session_store::Error::Decode("corrupt session record".into()))?;
        // Already known as it is: nothing to write (a look-up, not a second insert).
        if known_created != Some(stored.created) {
            self.known().remember(id, parts, stored.created);
        }
        let expiry_date = i128::from(stored.seen)
            .checked_mul(1_000_000)
            .and_then(|nanos| OffsetDateTime::from_unix_timestamp_nanos(nanos).ok())
            .ok_or_else(|| session_store::Error::Decode("expiry out of range".into()))?;
        // Each value is read from where it lies in the stored bytes. In stored order: of a name
        // given twice the map keeps the last, as everywhere else.
        let decode = |e: &dyn std::fmt::Display| session_store::Error::Decode(e.to_string());
        let fields = layout::fields(stored.fields, 0).map_err(|e| decode(&e))?;
        let mut data = HashMap::with_capacity(fields.left().min(1024));
        for field in fields {
            let field = field.map_err(|e| decode(&e))?;
            let value = serde_json::from_slice(&stored.fields[field.range.value])
                .map_err(|e| decode(&e))?;
            data.insert(field.name.to_owned(), value);
        }
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete_record(&self, id: &Id) -> session_store::Result<bool> {
        // Forgotten and read in one look-up.
        let parts = match self.known().forget(id) {
            Some(known) => known.key,
            None => self.record_key(id),
        };
        let key = parts.key_ref(self.store().keys())?;
        let removed: i64 = self
            .store()
            .redis()
            .query(redis_core::redis::cmd("DEL").arg(&key))
            .await
            .map_err(core_backend)?;
        Ok(removed > 0)
    }
}

/// What a record's key is made of, from the digest of its id: the hash tag (the digest's bucket)
/// and the name (the digest's text).
#[derive(Debug, Clone, Copy)]
struct RecordKey {
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
            self.store().redis(),
            self.store().name(),
            "session.tower.create"
        );
        observed!(
            self.store().metrics(),
            Operation::Create,
            span,
            self.create_record(record),
            |_| { Outcome::event("created", Event::Created) }
        )
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let span = session_span!(
            self.store().redis(),
            self.store().name(),
            "session.tower.save"
        );
        observed!(
            self.store().metrics(),
            Operation::Update,
            span,
            self.save_record(record),
            |&saved| { Outcome::plain(if saved { "updated" } else { "missing" }) }
        )
        .map(|_| ())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let span = session_span!(
            self.store().redis(),
            self.store().name(),
            "session.tower.load"
        );
        observed!(
            self.store().metrics(),
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
            self.store().redis(),
            self.store().name(),
            "session.tower.delete"
        );
        observed!(
            self.store().metrics(),
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

/// Runs `f` on the entries of `data` sorted by name: on the stack for the usual few, in a `Vec`
/// past them.
fn in_name_order<R>(
    data: &HashMap<String, serde_json::Value>,
    f: impl FnOnce(&[(&str, &serde_json::Value)]) -> R,
) -> R {
    const FEW: usize = 8;
    static NULL: serde_json::Value = serde_json::Value::Null;
    let by_name = |a: &(&str, _), b: &(&str, _)| a.0.cmp(b.0);
    if data.len() <= FEW {
        let mut few = [("", &NULL); FEW];
        for (slot, (name, value)) in few.iter_mut().zip(data) {
            *slot = (name.as_str(), value);
        }
        let few = &mut few[..data.len()];
        few.sort_unstable_by(by_name);
        f(few)
    } else {
        let mut all: Vec<_> = data.iter().map(|(n, v)| (n.as_str(), v)).collect();
        all.sort_unstable_by(by_name);
        f(&all)
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
    fn entries_come_sorted_by_name_few_or_many() {
        for n in [0usize, 1, 3, 8, 9, 40] {
            let data: HashMap<String, serde_json::Value> =
                (0..n).map(|i| (format!("f{i:03}"), i.into())).collect();
            let names = in_name_order(&data, |entries| {
                assert!(entries.iter().all(|(name, value)| data[*name] == **value));
                entries
                    .iter()
                    .map(|(name, _)| name.to_string())
                    .collect::<Vec<_>>()
            });
            let mut expected: Vec<String> = data.keys().cloned().collect();
            expected.sort();
            assert_eq!(names, expected, "{n} entries");
        }
    }
}
