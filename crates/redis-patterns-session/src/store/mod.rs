//! The session store: create, load, update, rotate and destroy one session. The per-user index
//! (listing and revoking a user's sessions) is in `users.rs`, the builder in `builder.rs`.

use std::{fmt, sync::Arc, time::Duration};

use redis_core::{Codec, Key, KeySpace, Redis, codec::Json, redis};
use serde::Serialize;

use crate::{
    config::Timeouts,
    error::{Error, Result},
    fields::encode_fields,
    id::{Ascii, DigestText, Hasher, SessionId, bucket_tag, random_bucket},
    layout::{self, Existing, SESSION, ServerClock},
    metrics::{Event, Metrics, Operation, Outcome, observed, session_span},
    scripts::{CREATE, ROTATE, TAKE, UPDATE},
    session::check_field,
};

mod builder;
mod read;
mod users;

pub use builder::SessionStoreBuilder;

/// Attempts for operations that retry on an (astronomically unlikely) id collision.
const ATTEMPTS: usize = 4;

/// Secure session storage on Redis.
///
/// Cheap to clone (it shares the [`Redis`] handle). See the [crate docs](crate) for the
/// security properties and the key layout.
#[derive(Clone)]
pub struct SessionStore<C: Codec = Json> {
    /// Everything behind one `Arc`: a clone (per request, in a web framework's state) is one
    /// reference count, not one per part.
    parts: Arc<Parts<C>>,
}

struct Parts<C> {
    redis: Redis,
    keys: KeySpace,
    hasher: Hasher,
    codec: C,
    timeouts: Timeouts,
    name: Box<str>,
    metrics: Metrics,
    /// The server's clock as the store's scripts last read it.
    clock: ServerClock,
}

impl<C: Codec> fmt::Debug for SessionStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStore")
            .field("name", &self.parts.name)
            .field("keys", &self.parts.keys)
            .field("hasher", &self.parts.hasher)
            .field("codec", &self.parts.codec)
            .field("timeouts", &self.parts.timeouts)
            .finish_non_exhaustive()
    }
}

impl SessionStore<Json> {
    /// Starts building a store whose keys live under `keys` (`<prefix>:session:{<bucket>}:...`).
    pub fn builder(redis: Redis, keys: &KeySpace) -> SessionStoreBuilder<Json> {
        SessionStoreBuilder::new(redis, keys)
    }
}

impl<C: Codec> SessionStore<C> {
    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.parts.timeouts.idle)
    }

    /// The absolute timeout.
    pub fn absolute_timeout(&self) -> Duration {
        Duration::from_millis(self.parts.timeouts.absolute)
    }

    /// The store's name (the `name` label of its metrics and field of its spans).
    pub fn name(&self) -> &str {
        &self.parts.name
    }

    /// The Redis handle the store uses.
    pub fn redis(&self) -> &Redis {
        &self.parts.redis
    }

    /// The Redis key that holds the session `id` (a digest of the id, never the id), or `None`
    /// when `id` is not a well-formed id. For inspection and tests.
    ///
    /// # Errors
    /// [`Error::Core`] when the key would exceed the key space's length limit.
    pub fn key_of(&self, id: impl AsRef<str>) -> Result<Option<Key>> {
        match SessionId::parse(id.as_ref()) {
            Some(id) => Ok(Some(self.session_key(&id)?.0)),
            None => Ok(None),
        }
    }

    /// Creates an anonymous session holding `data` (a struct or map: each top-level field becomes
    /// a hash field) and returns its new id. Never overwrites an existing session.
    ///
    /// # Errors
    /// [`Error::NotAMap`] when `data` is not a struct or map, [`Error::InvalidField`] for a
    /// reserved field name, [`Error::Core`] for Redis and codec failures.
    pub async fn create<T: Serialize + ?Sized>(&self, data: &T) -> Result<SessionId> {
        let span = session_span!(self.parts.redis, self.parts.name, "session.create");
        self.create_observed(span, None, data).await
    }

    /// Creates a session owned by `user`: it is listed by [`list_user`](Self::list_user) and
    /// ended by [`revoke_user`](Self::revoke_user). Its key shares a hash tag with the user's
    /// index, so both stay on one cluster slot.
    ///
    /// # Errors
    /// As [`create`](Self::create); [`Error::Core`] with an invalid key for an empty user id.
    pub async fn create_for_user<T: Serialize + ?Sized>(
        &self,
        user: &str,
        data: &T,
    ) -> Result<SessionId> {
        let span = session_span!(self.parts.redis, self.parts.name, "session.create_for_user");
        self.create_observed(span, Some(user), data).await
    }

    /// Encodes `data` and creates a session with it (owned by `user`), observed in `span` as a
    /// `create`.
    async fn create_observed<T: Serialize + ?Sized>(
        &self,
        span: tracing::Span,
        user: Option<&str>,
        data: &T,
    ) -> Result<SessionId> {
        let create = async || {
            let fields = encode_fields(&self.parts.codec, data)?;
            self.create_fields(user, &fields).await
        };
        observed!(
            self.parts.metrics,
            Operation::Create,
            span,
            create(),
            |_| { created() }
        )
    }

    /// Creates a session with `fields` (owned by `user`) under a
    /// fresh id. An anonymous new session is one plain `SET NX PXAT` while the store knows the
    /// server's clock; otherwise (an owner's index to update, the clock unknown) the `create`
    /// script writes it on the server's clock.
    async fn create_fields(
        &self,
        user: Option<&str>,
        fields: &[(String, Vec<u8>)],
    ) -> Result<SessionId> {
        let (bucket, index) = match user {
            Some(user) => {
                let (bucket, index) = self.user_index(user)?;
                (bucket, Some(index))
            }
            None => (random_bucket(), None),
        };
        let encoded = layout::encode_fields(
            fields
                .iter()
                .map(|(name, value)| (name.as_bytes(), value.as_slice())),
        );
        for _ in 0..ATTEMPTS {
            let id = SessionId::generate(bucket);
            let (tag, digest) = self.key_parts(&id);
            let key = self.parts.keys.tagged_ref(&tag, &digest)?;
            let plain_now = match user {
                None => self.parts.clock.now(),
                Some(_) => None,
            };
            let created = if let Some(now) = plain_now {
                let value = layout::encode(SESSION, now, now, "", &encoded);
                let deadline = self.parts.timeouts.deadline(now, now);
                layout::set_value(&self.parts.redis, &key, value, Existing::Missing, deadline)
                    .await?
            } else {
                let mut call = CREATE.call().key(key.to_key());
                if let Some(index) = &index {
                    call = call.key(index);
                }
                let call = call
                    .arg(self.parts.timeouts.idle)
                    .arg(self.parts.timeouts.absolute)
                    .arg(user.unwrap_or(""))
                    .arg(&*digest)
                    .arg(encoded.as_slice());
                // Boxed so the plain path's future stays small (see `load`).
                let now: u64 = Box::pin(call.invoke(&self.parts.redis)).await?;
                if now > 0 {
                    self.parts.clock.observe(now);
                }
                now > 0
            };
            if created {
                return Ok(id);
            }
            tracing::warn!("session id collision, drawing another id");
        }
        Err(Error::unexpected_reply(
            "could not draw an unused session id",
        ))
    }

    /// Sets one field of a live session, leaving the others alone (concurrent writers of
    /// different fields lose nothing). Returns `false`, writing nothing, when there is no live
    /// session.
    ///
    /// # Errors
    /// [`Error::InvalidField`] for a reserved name, [`Error::Core`] for Redis and codec failures.
    pub async fn set_field<T: Serialize + ?Sized>(
        &self,
        id: impl AsRef<str>,
        name: &str,
        value: &T,
    ) -> Result<bool> {
        let span = session_span!(self.parts.redis, self.parts.name, "session.set_field");
        let set = async {
            check_field(name)?;
            let value = self.parts.codec.encode(value)?;
            self.write(id.as_ref(), &[(name.to_owned(), value)], &[])
                .await
        };
        self.observe_write(span, set).await
    }

    /// Sets every top-level field of `data` (a struct or map) at once, leaving other fields alone.
    /// Returns `false`, writing nothing, when there is no live session.
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub async fn update<T: Serialize + ?Sized>(
        &self,
        id: impl AsRef<str>,
        data: &T,
    ) -> Result<bool> {
        let span = session_span!(self.parts.redis, self.parts.name, "session.update");
        let update = async {
            let fields = encode_fields(&self.parts.codec, data)?;
            self.write(id.as_ref(), &fields, &[]).await
        };
        self.observe_write(span, update).await
    }

    /// Removes one field. Returns `false` when there is no live session.
    ///
    /// # Errors
    /// [`Error::InvalidField`] for a reserved name, [`Error::Core`] when Redis fails.
    pub async fn remove_field(&self, id: impl AsRef<str>, name: &str) -> Result<bool> {
        let span = session_span!(self.parts.redis, self.parts.name, "session.remove_field");
        let remove = async {
            check_field(name)?;
            self.write(id.as_ref(), &[], &[name]).await
        };
        self.observe_write(span, remove).await
    }

    /// Runs a field write in `span`, as an `update`.
    async fn observe_write(
        &self,
        span: tracing::Span,
        write: impl Future<Output = Result<bool>>,
    ) -> Result<bool> {
        observed!(
            self.parts.metrics,
            Operation::Update,
            span,
            write,
            |&written| { Outcome::plain(if written { "updated" } else { "missing" }) }
        )
    }

    async fn write(&self, id: &str, set: &[(String, Vec<u8>)], remove: &[&str]) -> Result<bool> {
        let Some(id) = SessionId::parse(id) else {
            return Ok(false);
        };
        let (key, _) = self.session_key(&id)?;
        let mut call = UPDATE
            .call()
            .key(&key)
            .arg(self.parts.timeouts.idle)
            .arg(self.parts.timeouts.absolute)
            .arg(set.len());
        for (name, value) in set {
            call = call.arg(name).arg(value.as_slice());
        }
        for name in remove {
            call = call.arg(*name);
        }
        let now: u64 = call.invoke(&self.parts.redis).await?;
        if now > 0 {
            self.parts.clock.observe(now);
        }
        Ok(now > 0)
    }

    /// Gives a live session a new id, atomically: the old id stops working in the same step,
    /// the data, owner and creation time stay (the absolute timeout still counts from creation).
    /// Call it whenever the privilege level changes (fixation defence). `None` when there is no
    /// live session.
    ///
    /// # Errors
    /// [`Error::Core`] when Redis fails.
    pub async fn rotate(&self, id: impl AsRef<str>) -> Result<Option<SessionId>> {
        let span = session_span!(self.parts.redis, self.parts.name, "session.rotate");
        let rotate = self.rotate_id(id.as_ref());
        observed!(self.parts.metrics, Operation::Rotate, span, rotate, |s| {
            rotated(s.is_some())
        })
    }

    async fn rotate_id(&self, id: &str) -> Result<Option<SessionId>> {
        let Some(id) = SessionId::parse(id) else {
            return Ok(None);
        };
        let (key, digest) = self.session_key(&id)?;
        for _ in 0..ATTEMPTS {
            // A session's owner never changes, so reading it first and checking it again inside
            // the script is enough to name the owner's index among the script's keys.
            let user = self.owner(&key).await?;
            let new_id = SessionId::generate(id.bucket());
            let (new_key, new_digest) = self.session_key(&new_id)?;
            let index = user.as_deref().map(|u| self.user_index(u)).transpose()?;
            let outcome: i64 = {
                let mut call = ROTATE.call().key(&key).key(&new_key);
                if let Some((_, index)) = &index {
                    call = call.key(index);
                }
                call.arg(self.parts.timeouts.idle)
                    .arg(self.parts.timeouts.absolute)
                    .arg(user.as_deref().unwrap_or(""))
                    .arg(&*digest)
                    .arg(&*new_digest)
                    .invoke(&self.parts.redis)
            }
            .await?;
            match outcome {
                1 => return Ok(Some(new_id)),
                0 => return Ok(None),
                _ => continue,
            }
        }
        Err(Error::unexpected_reply("session rotation did not settle"))
    }

    /// Logs a session in as `user`: moves its data to a new id owned by `user` (listed and
    /// revocable per user), with fresh timeouts. The old id stops working first; a session that
    /// already had an owner leaves that owner's index in the same step. The data moves as it is,
    /// whoever owned it before: to start a different user from a clean slate, `destroy` the old
    /// session and `create_for_user` instead.
    ///
    /// The old and new keys may sit on different cluster slots, so this takes two steps: an
    /// atomic read-and-delete of the old session, then the creation of the new one. If the
    /// second step fails (connection lost) the session is gone and the error is returned: the
    /// user signs in again, and no id ever grants access it should not. `None` when there is no
    /// live session.
    ///
    /// # Errors
    /// [`Error::Core`] when Redis fails or the user id is empty.
    pub async fn rotate_for_user(
        &self,
        id: impl AsRef<str>,
        user: &str,
    ) -> Result<Option<SessionId>> {
        let span = session_span!(self.parts.redis, self.parts.name, "session.rotate_for_user");
        let rotate = self.log_in(id.as_ref(), user);
        observed!(self.parts.metrics, Operation::Rotate, span, rotate, |s| {
            rotated(s.is_some())
        })
    }

    async fn log_in(&self, id: &str, user: &str) -> Result<Option<SessionId>> {
        let Some(id) = SessionId::parse(id) else {
            return Ok(None);
        };
        self.user_index(user)?;
        let (key, digest) = self.session_key(&id)?;
        for _ in 0..ATTEMPTS {
            // As in `rotate`: read the current owner to name its index, the script checks it.
            let owner = self.owner(&key).await?;
            let index = owner.as_deref().map(|o| self.user_index(o)).transpose()?;
            let taken: Option<Vec<Vec<u8>>> = {
                let mut call = TAKE.call().key(&key);
                if let Some((_, index)) = &index {
                    call = call.key(index);
                }
                call.arg(self.parts.timeouts.idle)
                    .arg(self.parts.timeouts.absolute)
                    .arg(owner.as_deref().unwrap_or(""))
                    .arg(&*digest)
                    .invoke(&self.parts.redis)
            }
            .await?;
            let Some(taken) = taken else {
                return Ok(None);
            };
            if taken.is_empty() {
                continue;
            }
            // {created, fields}: a login starts a new absolute timeout, so only the fields move.
            let [_, fields] = taken.as_slice() else {
                return Err(Error::unexpected_reply(
                    "session take reply of the wrong size",
                ));
            };
            let fields = layout::decode_fields(fields)?;
            return self.create_fields(Some(user), &fields).await.map(Some);
        }
        Err(Error::unexpected_reply("session login did not settle"))
    }

    /// Ends a session. Returns whether there was one.
    ///
    /// # Errors
    /// [`Error::Core`] when Redis fails.
    pub async fn destroy(&self, id: impl AsRef<str>) -> Result<bool> {
        let span = session_span!(self.parts.redis, self.parts.name, "session.destroy");
        let destroy = self.destroy_id(id.as_ref());
        observed!(
            self.parts.metrics,
            Operation::Destroy,
            span,
            destroy,
            |&ended| {
                if ended {
                    Outcome::event("destroyed", Event::Destroyed)
                } else {
                    Outcome::plain("missing")
                }
            }
        )
    }

    async fn destroy_id(&self, id: &str) -> Result<bool> {
        let Some(id) = SessionId::parse(id) else {
            return Ok(false);
        };
        let (key, digest) = self.session_key(&id)?;
        match self.owner(&key).await? {
            Some(user) => {
                let (bucket, index) = self.user_index(&user)?;
                let (revoked, _) = self
                    .revoke_batch(&user, bucket, &index, &[digest.to_string()])
                    .await?;
                Ok(revoked > 0)
            }
            None => {
                let removed: i64 = self.parts.redis.query(redis::cmd("DEL").arg(&key)).await?;
                Ok(removed > 0)
            }
        }
    }

    /// The key and digest of a session id.
    fn session_key(&self, id: &SessionId) -> Result<(Key, DigestText)> {
        let (tag, digest) = self.key_parts(id);
        let key = self.parts.keys.tagged(&tag, &digest)?;
        Ok((key, digest))
    }

    /// What a session's key is made of: its hash tag (the id's bucket) and its name (the id's
    /// digest). With [`KeySpace::tagged_ref`] a read names the key without building it.
    fn key_parts(&self, id: &SessionId) -> (Ascii<3>, DigestText) {
        (
            bucket_tag(id.bucket()),
            self.parts.hasher.session_digest(id),
        )
    }

    /// The owner of the session at `key`, as stored (`None` for anonymous or missing sessions).
    async fn owner(&self, key: &Key) -> Result<Option<String>> {
        let reply = self.parts.redis.query(redis::cmd("GET").arg(key)).await;
        let value: Option<Vec<u8>> = read::plain_reply(reply)?;
        Ok(value
            .as_deref()
            .and_then(|v| layout::parse(v, SESSION))
            .and_then(|stored| stored.owner.map(str::to_owned)))
    }
}

/// A session created.
fn created() -> Outcome {
    Outcome::event("created", Event::Created)
}

/// A load or touch that found a live session, or not.
pub(crate) fn found(live: bool) -> Outcome {
    if live {
        Outcome::event("loaded", Event::Loaded)
    } else {
        Outcome::event("missing", Event::Missing)
    }
}

/// A rotation of a live session, or of none.
fn rotated(live: bool) -> Outcome {
    if live {
        Outcome::event("rotated", Event::Rotated)
    } else {
        Outcome::plain("missing")
    }
}

impl<C: Codec> SessionStore<C> {
    #[cfg(feature = "tower-sessions")]
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.parts.metrics
    }

    #[cfg(feature = "tower-sessions")]
    pub(crate) fn hasher(&self) -> &Hasher {
        &self.parts.hasher
    }

    #[cfg(feature = "tower-sessions")]
    pub(crate) fn keys(&self) -> &KeySpace {
        &self.parts.keys
    }

    #[cfg(feature = "tower-sessions")]
    pub(crate) fn clock(&self) -> &ServerClock {
        &self.parts.clock
    }

    #[cfg(feature = "tower-sessions")]
    pub(crate) fn absolute_ms(&self) -> u64 {
        self.parts.timeouts.absolute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server at `REDIS_URL` (set by `cargo xtask test`): this unit test ships in the
    /// package, so it takes no test-only dependency.
    #[tokio::test]
    async fn the_create_script_never_overwrites_an_existing_session() {
        let redis = Redis::from_env().await.unwrap();
        let keys = KeySpace::new(&format!("unit{}", redis_core::random_token())).unwrap();
        let store = SessionStore::builder(redis, &keys).build().unwrap();
        let id = store
            .create_for_user("olga", &serde_json::json!({ "a": 1 }))
            .await
            .unwrap();
        let (key, digest) = store.session_key(&id).unwrap();
        let before = store.load(&id).await.unwrap().unwrap();
        // What create_fields sends when it draws an id that is taken.
        let created: u64 = CREATE
            .call()
            .key(&key)
            .arg(store.parts.timeouts.idle)
            .arg(store.parts.timeouts.absolute)
            .arg("")
            .arg(&*digest)
            .arg(layout::encode_fields(
                [(&b"a"[..], &b"2"[..]), (b"b", b"3")].into_iter(),
            ))
            .invoke(store.redis())
            .await
            .unwrap();
        assert_eq!(created, 0);
        let after = store.load(&id).await.unwrap().unwrap();
        assert_eq!(after.get::<i32>("a").unwrap(), Some(1));
        assert_eq!(after.get::<i32>("b").unwrap(), None);
        assert_eq!(after.user(), Some("olga"));
        assert_eq!(after.created_at(), before.created_at());
    }
}
