//! The session store: create, load, update, rotate, destroy, list and revoke.

use std::{
    collections::BTreeMap,
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis_core::{Codec, Key, KeyError, KeySpace, Redis, Script, codec::Json, redis};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    config::SessionStoreBuilder,
    error::{Error, Result},
    id::{Hasher, SessionId, bucket_tag, random_bucket},
};

macro_rules! script {
    ($name:literal) => {
        Script::new(
            concat!("session_", $name),
            concat!(
                include_str!("scripts/common.lua"),
                include_str!(concat!("scripts/", $name, ".lua"))
            ),
        )
    };
}

static CREATE: Script = script!("create");
static ACCESS: Script = script!("access");
static UPDATE: Script = script!("update");
static ROTATE: Script = script!("rotate");
static TAKE: Script = script!("take");
static LIST: Script = script!("list");
static REVOKE: Script = script!("revoke");

/// Prefix of the hash fields the store keeps for itself.
pub const RESERVED_PREFIX: &str = "__";
const USER_FIELD: &str = "__user";
/// Most keys sent in one list or revoke script call.
const BATCH: usize = 256;
/// Attempts for operations that retry on an (astronomically unlikely) id collision.
const ATTEMPTS: usize = 4;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) idle: u64,
    pub(crate) absolute: u64,
    pub(crate) touch: u64,
}

/// Secure session storage on Redis.
///
/// Cheap to clone (it shares the [`Redis`] handle). See the [crate docs](crate) for the
/// security properties and the key layout.
#[derive(Clone)]
pub struct SessionStore<C: Codec = Json> {
    redis: Redis,
    keys: KeySpace,
    hasher: Hasher,
    codec: C,
    timeouts: Timeouts,
}

impl<C: Codec> fmt::Debug for SessionStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStore")
            .field("keys", &self.keys)
            .field("hasher", &self.hasher)
            .field("codec", &self.codec)
            .field("timeouts", &self.timeouts)
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
    pub(crate) fn from_parts(
        redis: Redis,
        keys: KeySpace,
        hasher: Hasher,
        codec: C,
        timeouts: Timeouts,
    ) -> Self {
        Self {
            redis,
            keys,
            hasher,
            codec,
            timeouts,
        }
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.timeouts.idle)
    }

    /// The absolute timeout.
    pub fn absolute_timeout(&self) -> Duration {
        Duration::from_millis(self.timeouts.absolute)
    }

    /// The Redis handle the store uses.
    pub fn redis(&self) -> &Redis {
        &self.redis
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
        let fields = self.to_fields(data)?;
        self.create_fields(None, &fields, None).await
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
        let fields = self.to_fields(data)?;
        self.create_fields(Some(user), &fields, None).await
    }

    async fn create_fields(
        &self,
        user: Option<&str>,
        fields: &[(String, Vec<u8>)],
        created_ms: Option<u64>,
    ) -> Result<SessionId> {
        let (bucket, index) = match user {
            Some(user) => {
                let (bucket, index) = self.user_index(user)?;
                (bucket, Some(index))
            }
            None => (random_bucket(), None),
        };
        for _ in 0..ATTEMPTS {
            let id = SessionId::generate(bucket);
            let (key, digest) = self.session_key(&id)?;
            let mut call = CREATE.call().key(&key);
            if let Some(index) = &index {
                call = call.key(index);
            }
            call = call
                .arg(self.timeouts.idle)
                .arg(self.timeouts.absolute)
                .arg(user.unwrap_or(""))
                .arg(&digest)
                .arg(created_ms.map(|c| c.to_string()).unwrap_or_default());
            for (name, value) in fields {
                call = call.arg(name).arg(value.as_slice());
            }
            let created: i64 = call.invoke(&self.redis).await?;
            if created == 1 {
                return Ok(id);
            }
            tracing::warn!("session id collision, drawing another id");
        }
        Err(unexpected("could not draw an unused session id"))
    }

    /// Loads a live session and records the access (at most once per touch interval).
    ///
    /// A missing, expired, revoked, rotated-away, tampered or malformed id gives `Ok(None)`.
    ///
    /// # Errors
    /// [`Error::Core`] when Redis fails or answers with an unexpected shape.
    pub async fn load(&self, id: impl AsRef<str>) -> Result<Option<Session<C>>> {
        let Some(id) = SessionId::parse(id.as_ref()) else {
            return Ok(None);
        };
        let (key, _) = self.session_key(&id)?;
        let reply: Option<Vec<Vec<u8>>> = ACCESS
            .call()
            .key(&key)
            .arg(self.timeouts.idle)
            .arg(self.timeouts.absolute)
            .arg(self.timeouts.touch)
            .arg("1")
            .invoke(&self.redis)
            .await?;
        let Some(reply) = reply else {
            return Ok(None);
        };
        let mut items = reply.into_iter();
        let created = parse_ms(items.next())?;
        let seen = parse_ms(items.next())?;
        let mut user = None;
        let mut fields = BTreeMap::new();
        while let (Some(name), Some(value)) = (items.next(), items.next()) {
            let name = String::from_utf8(name).map_err(|_| unexpected("non-UTF-8 field name"))?;
            if name == USER_FIELD {
                user = Some(String::from_utf8_lossy(&value).into_owned());
            } else {
                fields.insert(name, value);
            }
        }
        Ok(Some(Session {
            id,
            user,
            created_at: at(created),
            last_seen: at(seen),
            expires_at: at(self.deadline(created, seen)),
            fields,
            codec: self.codec.clone(),
        }))
    }

    /// Records an access without reading the data (at most one write per touch interval).
    /// Returns whether the session is live.
    ///
    /// # Errors
    /// [`Error::Core`] when Redis fails.
    pub async fn touch(&self, id: impl AsRef<str>) -> Result<bool> {
        let Some(id) = SessionId::parse(id.as_ref()) else {
            return Ok(false);
        };
        let (key, _) = self.session_key(&id)?;
        let reply: Option<Vec<Vec<u8>>> = ACCESS
            .call()
            .key(&key)
            .arg(self.timeouts.idle)
            .arg(self.timeouts.absolute)
            .arg(self.timeouts.touch)
            .arg("0")
            .invoke(&self.redis)
            .await?;
        Ok(reply.is_some())
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
        check_field(name)?;
        let value = self.codec.encode(value)?;
        self.write(id.as_ref(), &[(name.to_owned(), value)], &[])
            .await
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
        let fields = self.to_fields(data)?;
        self.write(id.as_ref(), &fields, &[]).await
    }

    /// Removes one field. Returns `false` when there is no live session.
    ///
    /// # Errors
    /// [`Error::InvalidField`] for a reserved name, [`Error::Core`] when Redis fails.
    pub async fn remove_field(&self, id: impl AsRef<str>, name: &str) -> Result<bool> {
        check_field(name)?;
        self.write(id.as_ref(), &[], &[name]).await
    }

    async fn write(&self, id: &str, set: &[(String, Vec<u8>)], remove: &[&str]) -> Result<bool> {
        let Some(id) = SessionId::parse(id) else {
            return Ok(false);
        };
        let (key, _) = self.session_key(&id)?;
        let mut call = UPDATE
            .call()
            .key(&key)
            .arg(self.timeouts.idle)
            .arg(self.timeouts.absolute)
            .arg(set.len());
        for (name, value) in set {
            call = call.arg(name).arg(value.as_slice());
        }
        for name in remove {
            call = call.arg(*name);
        }
        let updated: i64 = call.invoke(&self.redis).await?;
        Ok(updated == 1)
    }

    /// Gives a live session a new id, atomically: the old id stops working in the same step,
    /// the data, owner and creation time stay (the absolute timeout still counts from creation).
    /// Call it whenever the privilege level changes (fixation defence). `None` when there is no
    /// live session.
    ///
    /// # Errors
    /// [`Error::Core`] when Redis fails.
    pub async fn rotate(&self, id: impl AsRef<str>) -> Result<Option<SessionId>> {
        let Some(id) = SessionId::parse(id.as_ref()) else {
            return Ok(None);
        };
        let (key, digest) = self.session_key(&id)?;
        for _ in 0..ATTEMPTS {
            // A session's owner never changes, so reading it first and checking it again inside
            // the script is enough to name the owner's index among the script's keys.
            let user: Option<String> = self
                .redis
                .query(redis::cmd("HGET").arg(&key).arg(USER_FIELD))
                .await?;
            let new_id = SessionId::generate(id.bucket());
            let (new_key, new_digest) = self.session_key(&new_id)?;
            let mut call = ROTATE.call().key(&key).key(&new_key);
            if let Some(user) = &user {
                call = call.key(self.user_index(user)?.1);
            }
            let outcome: i64 = call
                .arg(self.timeouts.idle)
                .arg(self.timeouts.absolute)
                .arg(user.as_deref().unwrap_or(""))
                .arg(&digest)
                .arg(&new_digest)
                .invoke(&self.redis)
                .await?;
            match outcome {
                1 => return Ok(Some(new_id)),
                0 => return Ok(None),
                _ => continue,
            }
        }
        Err(unexpected("session rotation did not settle"))
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
        let Some(id) = SessionId::parse(id.as_ref()) else {
            return Ok(None);
        };
        self.user_index(user)?;
        let (key, digest) = self.session_key(&id)?;
        for _ in 0..ATTEMPTS {
            // As in `rotate`: read the current owner to name its index, the script checks it.
            let owner: Option<String> = self
                .redis
                .query(redis::cmd("HGET").arg(&key).arg(USER_FIELD))
                .await?;
            let mut call = TAKE.call().key(&key);
            if let Some(owner) = &owner {
                call = call.key(self.user_index(owner)?.1);
            }
            let taken: Option<Vec<Vec<u8>>> = call
                .arg(self.timeouts.idle)
                .arg(self.timeouts.absolute)
                .arg(owner.as_deref().unwrap_or(""))
                .arg(&digest)
                .invoke(&self.redis)
                .await?;
            let Some(taken) = taken else {
                return Ok(None);
            };
            if taken.is_empty() {
                continue;
            }
            let mut fields = Vec::with_capacity(taken.len() / 2);
            let mut items = taken.into_iter().skip(1);
            while let (Some(name), Some(value)) = (items.next(), items.next()) {
                let name =
                    String::from_utf8(name).map_err(|_| unexpected("non-UTF-8 field name"))?;
                fields.push((name, value));
            }
            return self
                .create_fields(Some(user), &fields, None)
                .await
                .map(Some);
        }
        Err(unexpected("session login did not settle"))
    }

    /// Ends a session. Returns whether there was one.
    ///
    /// # Errors
    /// [`Error::Core`] when Redis fails.
    pub async fn destroy(&self, id: impl AsRef<str>) -> Result<bool> {
        let Some(id) = SessionId::parse(id.as_ref()) else {
            return Ok(false);
        };
        let (key, digest) = self.session_key(&id)?;
        let user: Option<String> = self
            .redis
            .query(redis::cmd("HGET").arg(&key).arg(USER_FIELD))
            .await?;
        match user {
            Some(user) => {
                let (bucket, index) = self.user_index(&user)?;
                let (revoked, _) = self.revoke_batch(&user, bucket, &index, &[digest]).await?;
                Ok(revoked > 0)
            }
            None => {
                let removed: i64 = self.redis.query(redis::cmd("DEL").arg(&key)).await?;
                Ok(removed > 0)
            }
        }
    }

    /// The live sessions of `user`, oldest first. Expired members are dropped from the index on
    /// the way. Each entry carries a [`handle`](SessionInfo::handle) (the key digest, not a
    /// usable id) for [`revoke`](Self::revoke).
    ///
    /// # Errors
    /// [`Error::Core`] when Redis fails or the user id is empty.
    pub async fn list_user(&self, user: &str) -> Result<Vec<SessionInfo>> {
        let (bucket, index) = self.user_index(user)?;
        let members: Vec<String> = self
            .redis
            .query(redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1))
            .await?;
        let mut out = Vec::with_capacity(members.len());
        for chunk in members.chunks(BATCH) {
            let mut call = LIST.call().key(&index);
            for digest in chunk {
                call = call.key(self.keys.tagged(&bucket_tag(bucket), digest)?);
            }
            call = call.arg(self.timeouts.idle).arg(self.timeouts.absolute);
            for digest in chunk {
                call = call.arg(digest);
            }
            let reply: Vec<String> = call.invoke(&self.redis).await?;
            for entry in reply.chunks(3) {
                let [handle, created, seen] = entry else {
                    return Err(unexpected("session list entry of the wrong size"));
                };
                let created = parse_num(created)?;
                let seen = parse_num(seen)?;
                out.push(SessionInfo {
                    handle: handle.clone(),
                    created_at: at(created),
                    last_seen: at(seen),
                    expires_at: at(self.deadline(created, seen)),
                });
            }
        }
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }

    /// Ends every session of `user` (for example after a password change) and returns how many
    /// were live. Sessions created while this runs are ended too.
    ///
    /// # Errors
    /// [`Error::Core`] when Redis fails or the user id is empty.
    pub async fn revoke_user(&self, user: &str) -> Result<usize> {
        let (bucket, index) = self.user_index(user)?;
        let mut total = 0;
        for _ in 0..64 {
            let members: Vec<String> = self
                .redis
                .query(redis::cmd("ZRANGE").arg(&index).arg(0).arg(BATCH - 1))
                .await?;
            if members.is_empty() {
                return Ok(total);
            }
            let (revoked, left) = self.revoke_batch(user, bucket, &index, &members).await?;
            total += revoked;
            if left == 0 {
                return Ok(total);
            }
        }
        Err(unexpected(
            "sessions are created faster than they are revoked",
        ))
    }

    /// Ends one session of `user` by the [`handle`](SessionInfo::handle) that
    /// [`list_user`](Self::list_user) gave. Returns whether it was live. A handle that does not
    /// name a session of `user` (another user's, an anonymous one) ends nothing and gives `false`.
    ///
    /// # Errors
    /// [`Error::Core`] when Redis fails or the user id is empty.
    pub async fn revoke(&self, user: &str, handle: &str) -> Result<bool> {
        let (bucket, index) = self.user_index(user)?;
        if handle.len() != 43
            || !handle
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Ok(false);
        }
        let (revoked, _) = self
            .revoke_batch(user, bucket, &index, &[handle.to_owned()])
            .await?;
        Ok(revoked > 0)
    }

    /// Deletes those of `digests` that are sessions of `user` and drops them from its index.
    async fn revoke_batch(
        &self,
        user: &str,
        bucket: u16,
        index: &Key,
        digests: &[String],
    ) -> Result<(usize, usize)> {
        let tag = bucket_tag(bucket);
        let mut call = REVOKE.call().key(index);
        for digest in digests {
            call = call.key(self.keys.tagged(&tag, digest)?);
        }
        call = call.arg(user);
        for digest in digests {
            call = call.arg(digest);
        }
        let (revoked, left): (usize, usize) = call.invoke(&self.redis).await?;
        Ok((revoked, left))
    }

    /// The key and digest of a session id.
    fn session_key(&self, id: &SessionId) -> Result<(Key, String)> {
        let digest = self.hasher.session_digest(id.as_str());
        let key = self.keys.tagged(&bucket_tag(id.bucket()), &digest)?;
        Ok((key, digest))
    }

    /// The bucket and index key of a user.
    fn user_index(&self, user: &str) -> Result<(u16, Key)> {
        if user.is_empty() {
            return Err(redis_core::Error::from(KeyError::Empty("user id")).into());
        }
        let bucket = self.hasher.user_bucket(user);
        let key = self
            .keys
            .tagged(&bucket_tag(bucket), &format!("user:{user}"))?;
        Ok((bucket, key))
    }

    fn deadline(&self, created: u64, seen: u64) -> u64 {
        (seen.saturating_add(self.timeouts.idle))
            .min(created.saturating_add(self.timeouts.absolute))
    }

    fn to_fields<T: Serialize + ?Sized>(&self, data: &T) -> Result<Vec<(String, Vec<u8>)>> {
        let value =
            serde_json::to_value(data).map_err(|e| redis_core::Error::Encode(Box::new(e)))?;
        let map = match value {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Null => return Ok(Vec::new()),
            serde_json::Value::Bool(_) => return Err(Error::NotAMap("a boolean")),
            serde_json::Value::Number(_) => return Err(Error::NotAMap("a number")),
            serde_json::Value::String(_) => return Err(Error::NotAMap("a string")),
            serde_json::Value::Array(_) => return Err(Error::NotAMap("a sequence")),
        };
        map.into_iter()
            .map(|(name, value)| {
                check_field(&name)?;
                Ok((name, self.codec.encode(&value)?))
            })
            .collect()
    }
}

fn check_field(name: &str) -> Result<()> {
    if name.is_empty() || name.starts_with(RESERVED_PREFIX) {
        return Err(Error::InvalidField(name.to_owned()));
    }
    Ok(())
}

fn unexpected(what: &str) -> Error {
    redis_core::Error::UnexpectedReply(what.to_owned()).into()
}

fn parse_ms(item: Option<Vec<u8>>) -> Result<u64> {
    let item = item.ok_or_else(|| unexpected("missing timestamp"))?;
    std::str::from_utf8(&item)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| unexpected("malformed timestamp"))
}

fn parse_num(s: &str) -> Result<u64> {
    s.parse().map_err(|_| unexpected("malformed timestamp"))
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A live session as loaded: its id, owner, timestamps and fields.
pub struct Session<C: Codec = Json> {
    id: SessionId,
    user: Option<String>,
    created_at: SystemTime,
    last_seen: SystemTime,
    expires_at: SystemTime,
    fields: BTreeMap<String, Vec<u8>>,
    codec: C,
}

impl<C: Codec> fmt::Debug for Session<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("created_at", &self.created_at)
            .field("last_seen", &self.last_seen)
            .field("expires_at", &self.expires_at)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<C: Codec> Session<C> {
    /// The id it was loaded by.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The owner, for sessions created with [`SessionStore::create_for_user`] or logged in with
    /// [`SessionStore::rotate_for_user`].
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// When it was created (server clock).
    pub fn created_at(&self) -> SystemTime {
        self.created_at
    }

    /// The last recorded access (server clock; recorded at most once per touch interval).
    pub fn last_seen(&self) -> SystemTime {
        self.last_seen
    }

    /// When it ends unless accessed again: the earlier of the idle and absolute deadlines.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// One field, decoded; `None` when absent.
    ///
    /// # Errors
    /// [`Error::Core`] with a decode error when the stored bytes are not a `T`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self.fields.get(name) {
            Some(bytes) => Ok(Some(self.codec.decode(bytes)?)),
            None => Ok(None),
        }
    }

    /// The raw bytes of one field.
    pub fn get_raw(&self, name: &str) -> Option<&[u8]> {
        self.fields.get(name).map(Vec::as_slice)
    }

    /// The names of the fields, sorted.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// All fields as one typed value (a struct whose fields are the session's fields).
    ///
    /// # Errors
    /// [`Error::Core`] with a decode error when the fields do not form a `T`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        let mut map = serde_json::Map::with_capacity(self.fields.len());
        for (name, bytes) in &self.fields {
            map.insert(name.clone(), self.codec.decode::<serde_json::Value>(bytes)?);
        }
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| redis_core::Error::Decode(Box::new(e)).into())
    }
}

/// One live session of a user, as [`SessionStore::list_user`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// A handle for [`SessionStore::revoke`]: the digest that names the session's key. It cannot
    /// be used as a session id.
    pub handle: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// The last recorded access.
    pub last_seen: SystemTime,
    /// When it ends unless accessed again.
    pub expires_at: SystemTime,
}

impl<C: Codec> SessionStore<C> {
    #[cfg(feature = "tower-sessions")]
    pub(crate) fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    #[cfg(feature = "tower-sessions")]
    pub(crate) fn keys(&self) -> &KeySpace {
        &self.keys
    }

    #[cfg(feature = "tower-sessions")]
    pub(crate) fn absolute_ms(&self) -> u64 {
        self.timeouts.absolute
    }
}

#[cfg(test)]
mod tests {
    use redis_test_support::TestContext;

    use super::*;

    #[tokio::test]
    async fn the_create_script_never_overwrites_an_existing_session() {
        let ctx = TestContext::new().await;
        let store = SessionStore::builder(ctx.redis().clone(), &ctx.keyspace())
            .build()
            .unwrap();
        let id = store
            .create_for_user("olga", &serde_json::json!({ "a": 1 }))
            .await
            .unwrap();
        let (key, digest) = store.session_key(&id).unwrap();
        let before = store.load(&id).await.unwrap().unwrap();
        // What create_fields sends when it draws an id that is taken.
        let created: i64 = CREATE
            .call()
            .key(&key)
            .arg(store.timeouts.idle)
            .arg(store.timeouts.absolute)
            .arg("")
            .arg(&digest)
            .arg("")
            .arg("a")
            .arg("2")
            .arg("b")
            .arg("3")
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
