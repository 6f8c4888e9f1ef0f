//! What the store hands out: a loaded [`Session`] and the [`SessionInfo`] of a listed one, and the
//! rules for the field names of session data.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis_core::{Codec, codec::Json};
use serde::de::DeserializeOwned;

use crate::{
    config::Timeouts,
    error::{Error, Result},
    id::SessionId,
    layout::{self, FieldRange},
};

/// Prefix of field names the store keeps for itself (refused in session data).
pub const RESERVED_PREFIX: &str = "__";

/// A live session as loaded: its id, owner, timestamps and fields.
pub struct Session<C: Codec = Json> {
    id: SessionId,
    user: Option<String>,
    created_at: SystemTime,
    last_seen: SystemTime,
    expires_at: SystemTime,
    /// The stored value, which the fields are read from in place.
    value: Vec<u8>,
    /// Each field's name and value in `value`, sorted by name.
    fields: Vec<FieldRange>,
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
            .field("fields", &self.field_names().collect::<Vec<_>>())
            .finish()
    }
}

impl<C: Codec> Session<C> {
    /// A session from its stored `value` (a session's, see `crate::layout`), found live with its
    /// last recorded access at `seen`.
    ///
    /// # Errors
    /// [`Error::Core`] (an unexpected reply) when the value is not a session or its fields are
    /// corrupt.
    pub(crate) fn from_value(
        id: SessionId,
        value: Vec<u8>,
        seen: u64,
        timeouts: &Timeouts,
        codec: C,
    ) -> Result<Self> {
        let stored = layout::parse(&value, layout::SESSION)
            .ok_or_else(|| Error::unexpected_reply("corrupt session value"))?;
        let head = Head::of(&value, &stored);
        Self::from_parts(id, value, head, seen, timeouts, codec)
    }

    /// A session from a value already parsed into `head` (see [`Head::of`]).
    ///
    /// # Errors
    /// [`Error::Core`] (an unexpected reply) when its fields are corrupt.
    pub(crate) fn from_parts(
        id: SessionId,
        value: Vec<u8>,
        head: Head,
        seen: u64,
        timeouts: &Timeouts,
        codec: C,
    ) -> Result<Self> {
        let Head {
            created,
            user,
            fields_start,
        } = head;
        let fields = layout::field_ranges(&value, fields_start)?;
        Ok(Self {
            id,
            user,
            created_at: at(created),
            last_seen: at(seen),
            expires_at: at(timeouts.deadline(created, seen)),
            value,
            fields,
            codec,
        })
    }

    /// The id it was loaded by.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The owner, for sessions created with [`SessionStore::create_for_user`] or logged in with
    /// [`SessionStore::rotate_for_user`].
    ///
    /// [`SessionStore::create_for_user`]: crate::SessionStore::create_for_user
    /// [`SessionStore::rotate_for_user`]: crate::SessionStore::rotate_for_user
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
        match self.get_raw(name) {
            Some(bytes) => Ok(Some(self.codec.decode(bytes)?)),
            None => Ok(None),
        }
    }

    /// The raw bytes of one field.
    pub fn get_raw(&self, name: &str) -> Option<&[u8]> {
        let found = self
            .fields
            .binary_search_by(|field| self.value[field.name.clone()].cmp(name.as_bytes()))
            .ok()?;
        Some(&self.value[self.fields[found].value.clone()])
    }

    /// The names of the fields, sorted.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .map(|field| std::str::from_utf8(&self.value[field.name.clone()]).unwrap_or_default())
    }

    /// All fields as one typed value (a struct whose fields are the session's fields).
    ///
    /// # Errors
    /// [`Error::Core`] with a decode error when the fields do not form a `T`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        let mut map = serde_json::Map::with_capacity(self.fields.len());
        for field in &self.fields {
            let name = std::str::from_utf8(&self.value[field.name.clone()]).unwrap_or_default();
            let bytes = &self.value[field.value.clone()];
            map.insert(
                name.to_owned(),
                self.codec.decode::<serde_json::Value>(bytes)?,
            );
        }
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| redis_core::Error::Decode(Box::new(e)).into())
    }
}

/// What a session's header says, taken from a parsed value before the value moves into its
/// [`Session`].
pub(crate) struct Head {
    pub(crate) created: u64,
    pub(crate) user: Option<String>,
    /// Where the fields' map starts in the value.
    pub(crate) fields_start: usize,
}

impl Head {
    /// The header of `value`, which `stored` was parsed from.
    pub(crate) fn of(value: &[u8], stored: &layout::Stored<'_>) -> Self {
        Self {
            created: stored.created,
            user: stored.owner.map(str::to_owned),
            fields_start: value.len() - stored.fields.len(),
        }
    }
}

/// One live session of a user, as [`SessionStore::list_user`] reports it.
///
/// [`SessionStore::list_user`]: crate::SessionStore::list_user
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// A handle for [`SessionStore::revoke`](crate::SessionStore::revoke): the digest that names
    /// the session's key. It cannot be used as a session id.
    pub handle: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// The last recorded access.
    pub last_seen: SystemTime,
    /// When it ends unless accessed again.
    pub expires_at: SystemTime,
}

impl SessionInfo {
    /// Reads one `{digest, created, seen}` entry of the `list` script's reply.
    pub(crate) fn from_list_entry(entry: &[String], timeouts: &Timeouts) -> Result<Self> {
        let [handle, created, seen] = entry else {
            return Err(Error::unexpected_reply(
                "session list entry of the wrong size",
            ));
        };
        let created = parse_num(created)?;
        let seen = parse_num(seen)?;
        Ok(Self {
            handle: handle.clone(),
            created_at: at(created),
            last_seen: at(seen),
            expires_at: at(timeouts.deadline(created, seen)),
        })
    }
}

/// Refuses empty names and names in the store's reserved `__` space.
pub(crate) fn check_field(name: &str) -> Result<()> {
    if name.is_empty() || name.starts_with(RESERVED_PREFIX) {
        return Err(Error::InvalidField(name.to_owned()));
    }
    Ok(())
}

fn parse_num(s: &str) -> Result<u64> {
    s.parse()
        .map_err(|_| Error::unexpected_reply("malformed timestamp"))
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}
