//! [`TowerSessionStore`]: a `tower_sessions_core::SessionStore` on top of the session store's
//! handle, key space and secret (feature `tower-sessions`).

use std::collections::HashMap;

use async_trait::async_trait;
use redis_core::{Codec, Key, Script};
use time::OffsetDateTime;
use tower_sessions_core::{
    SessionStore as TowerStore,
    session::{Id, Record},
    session_store,
};

use crate::{
    SessionStore,
    id::{bucket_tag, digest_bucket},
    layout::{self, RECORD},
    metrics::{Event, Operation, Outcome, session_span},
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
///   PXAT` (on the server's clock as the store last read it), `save` one script (it keeps the
///   creation time and refuses a record that is gone).
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
}

impl<C: Codec> TowerSessionStore<C> {
    /// Wraps `store`.
    pub fn new(store: SessionStore<C>) -> Self {
        Self { inner: store }
    }

    /// The Redis key of a tower-sessions id: a digest of the id, never the id. For inspection.
    ///
    /// # Errors
    /// [`crate::Error::Core`] when the key would exceed the key space's length limit.
    pub fn key_of(&self, id: &Id) -> crate::Result<Key> {
        let digest = self
            .inner
            .hasher()
            .digest("tower-session", id.to_string().as_bytes());
        let bucket = digest_bucket(&digest);
        let name =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, digest);
        Ok(self.inner.keys().tagged(&bucket_tag(bucket), &name)?)
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
        let key = self.key_of(&record.id).map_err(backend)?;
        let Some(now) = self.inner.clock().now() else {
            return self.write(&TOWER_CREATE, &key, record).await;
        };
        let expires = u64::try_from(unix_ms(record.expiry_date)).unwrap_or(0);
        let deadline = expires.min(now.saturating_add(self.inner.absolute_ms()));
        if deadline <= now {
            // Already expired: nothing to keep (as the script does).
            return Ok(true);
        }
        let value = layout::encode(RECORD, now, expires, "", &Self::encoded_data(record)?);
        let set: Option<String> = self
            .inner
            .redis()
            .query(
                redis_core::redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("NX")
                    .arg("PXAT")
                    .arg(deadline),
            )
            .await
            .map_err(core_backend)?;
        Ok(set.is_some())
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

    async fn save_record(&self, record: &Record) -> session_store::Result<bool> {
        let key = self.key_of(&record.id).map_err(backend)?;
        self.write(&TOWER_SAVE, &key, record).await
    }

    /// A plain `GET` (reads record nothing, so no script is needed while the record is live
    /// under the store's absolute timeout and expiry date), the `tower_load` script when the
    /// store does not know the server's clock or finds a deadline passed (the script deletes
    /// the record).
    async fn load_record(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let key = self.key_of(id).map_err(backend)?;
        let reply = self
            .inner
            .redis()
            .query(redis_core::redis::cmd("GET").arg(&key))
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
            let reply: Option<(u64, Vec<u8>)> = TOWER_LOAD
                .call()
                .key(&key)
                .arg(self.inner.absolute_ms())
                .invoke(self.inner.redis())
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
        let key = self.key_of(id).map_err(backend)?;
        let removed: i64 = self
            .inner
            .redis()
            .query(redis_core::redis::cmd("DEL").arg(&key))
            .await
            .map_err(core_backend)?;
        Ok(removed > 0)
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
        self.inner
            .metrics()
            .observe(Operation::Create, span, create, |_| {
                Outcome::event("created", Event::Created)
            })
            .await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let span = session_span!(self.inner.redis(), self.inner.name(), "session.tower.save");
        let save = self.save_record(record);
        self.inner
            .metrics()
            .observe(Operation::Update, span, save, |&saved| {
                Outcome::plain(if saved { "updated" } else { "missing" })
            })
            .await
            .map(|_| ())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let span = session_span!(self.inner.redis(), self.inner.name(), "session.tower.load");
        self.inner
            .metrics()
            .observe(Operation::Load, span, self.load_record(id), |r| {
                if r.is_some() {
                    Outcome::event("loaded", Event::Loaded)
                } else {
                    Outcome::event("missing", Event::Missing)
                }
            })
            .await
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let span = session_span!(
            self.inner.redis(),
            self.inner.name(),
            "session.tower.delete"
        );
        self.inner
            .metrics()
            .observe(Operation::Destroy, span, self.delete_record(id), |&ended| {
                if ended {
                    Outcome::event("destroyed", Event::Destroyed)
                } else {
                    Outcome::plain("missing")
                }
            })
            .await
            .map(|_| ())
    }
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
