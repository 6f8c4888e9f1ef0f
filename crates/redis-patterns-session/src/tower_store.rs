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
    metrics::{Event, Operation, Outcome, session_span},
    plain::{self, CREATED, DEADLINE, EXPIRES, Read, parse_ms},
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
/// - each data entry is its own hash field (JSON);
/// - the record's expiry date is enforced by the server (`PEXPIREAT` and a check in every
///   script), capped by the store's absolute timeout counted from creation;
/// - `create` never overwrites: on an id collision it draws a new id;
/// - `save` of a session that has meanwhile expired or been deleted writes nothing, so a
///   session cannot be brought back to life by a late request;
/// - `load` is a plain `HGETALL` + `PTTL` (no script) while the record is live; `create` and
///   `save` are one script each.
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

    async fn write(&self, script: &Script, record: &Record) -> session_store::Result<bool> {
        let key = self.key_of(&record.id).map_err(backend)?;
        let expires_ms = unix_ms(record.expiry_date);
        let mut call = script
            .call()
            .key(&key)
            .arg(self.inner.absolute_ms())
            .arg(expires_ms);
        for (name, value) in &record.data {
            let bytes = serde_json::to_vec(value)
                .map_err(|e| session_store::Error::Encode(e.to_string()))?;
            call = call.arg(encode_name(name).as_ref()).arg(bytes);
        }
        let written: i64 = call
            .invoke(self.inner.redis())
            .await
            .map_err(core_backend)?;
        Ok(written == 1)
    }
}

impl<C: Codec> TowerSessionStore<C> {
    async fn create_record(&self, record: &mut Record) -> session_store::Result<()> {
        for _ in 0..ATTEMPTS {
            if self.write(&TOWER_CREATE, record).await? {
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(session_store::Error::Backend(
            "could not draw an unused session id".into(),
        ))
    }

    /// A plain `HGETALL` + `PTTL` (reads record nothing, so no script is needed while the
    /// record is live under the store's absolute timeout), the `tower_load` script when the plain
    /// read cannot tell or finds a timeout passed (the script deletes the record).
    async fn load_record(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let key = self.key_of(id).map_err(backend)?;
        let (hash, pttl) = plain::hash_and_ttl(self.inner.redis(), &key)
            .await
            .map_err(core_backend)?;
        let meta = |name: &str| plain::field(&hash, name);
        let read = plain::record(
            !hash.is_empty(),
            meta(CREATED).and_then(parse_ms),
            meta(EXPIRES).and_then(parse_ms),
            meta(DEADLINE).and_then(parse_ms),
            pttl,
            self.inner.absolute_ms(),
        );
        let reply = match read {
            Read::Missing => return Ok(None),
            Read::Live(()) => {
                let mut reply = Vec::with_capacity(hash.len() * 2);
                reply.push(meta(EXPIRES).unwrap_or_default().to_vec());
                for (name, value) in hash {
                    if !name.starts_with(b"__") {
                        reply.push(name);
                        reply.push(value);
                    }
                }
                reply
            }
            Read::Script => {
                let reply: Option<Vec<Vec<u8>>> = TOWER_LOAD
                    .call()
                    .key(&key)
                    .arg(self.inner.absolute_ms())
                    .invoke(self.inner.redis())
                    .await
                    .map_err(core_backend)?;
                let Some(reply) = reply else {
                    return Ok(None);
                };
                reply
            }
        };
        let mut items = reply.into_iter();
        let expires_ms = items
            .next()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<i128>().ok())
            .ok_or_else(|| session_store::Error::Decode("malformed expiry".into()))?;
        let expiry_date = expires_ms
            .checked_mul(1_000_000)
            .and_then(|nanos| OffsetDateTime::from_unix_timestamp_nanos(nanos).ok())
            .ok_or_else(|| session_store::Error::Decode("expiry out of range".into()))?;
        let mut data = HashMap::new();
        while let (Some(name), Some(value)) = (items.next(), items.next()) {
            let name =
                String::from_utf8(name).map_err(|e| session_store::Error::Decode(e.to_string()))?;
            let name = decode_name(name);
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
        let save = self.write(&TOWER_SAVE, record);
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

/// Data names starting with `_` get a `_=` prefix, so no name can collide with the store's
/// `__` metadata fields. Injective: an unescaped name never starts with `_=`.
fn encode_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.starts_with('_') {
        std::borrow::Cow::Owned(format!("_={name}"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

fn decode_name(name: String) -> String {
    match name.strip_prefix("_=") {
        Some(rest) => rest.to_owned(),
        None => name,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_names_never_collide_with_metadata() {
        for name in ["plain", "_x", "__created", "_=y", "=z", ""] {
            let encoded = encode_name(name);
            assert!(!encoded.starts_with("__"), "{name}");
            assert_eq!(decode_name(encoded.into_owned()), name);
        }
    }
}
