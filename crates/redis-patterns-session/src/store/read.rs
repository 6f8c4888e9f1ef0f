//! Reading a session: `load` and `touch`. A read whose access need not be recorded is one plain
//! `GET` (or `GETRANGE` of the header); the `access` script runs only when the touch is due, a
//! timeout of the current settings has passed while the key lives on, or the store does not know
//! the server's clock (see `crate::layout`).

use redis_core::{Codec, Key};

use super::{SessionStore, found};
use crate::{
    error::Result,
    id::SessionId,
    layout::{self, Read, SESSION, TIMES_END},
    metrics::{Operation, observed, session_span},
    scripts::ACCESS,
    session::{Head, Session},
};

/// A plain read's reply: the bytes, or `None` for no key or a key of an older layout (a hash:
/// the scripts treat it as missing too).
pub(super) fn plain_reply(reply: redis_core::Result<Option<Vec<u8>>>) -> Result<Option<Vec<u8>>> {
    match reply {
        Ok(bytes) => Ok(bytes),
        Err(redis_core::Error::Redis(e)) if e.code() == Some("WRONGTYPE") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl<C: Codec> SessionStore<C> {
    /// Loads a live session and records the access (at most once per touch interval).
    ///
    /// A missing, expired, revoked, rotated-away, tampered or malformed id gives `Ok(None)`.
    ///
    /// One round trip: a plain `GET` while the last recorded access is less than the touch
    /// interval old (no script), the store's `access` script when the access is due to be
    /// recorded (with a zero interval, always).
    ///
    /// # Errors
    /// [`Error::Core`](crate::Error::Core) when Redis fails or the stored value is corrupt.
    pub async fn load(&self, id: impl AsRef<str>) -> Result<Option<Session<C>>> {
        let span = session_span!(self.parts.redis, self.parts.name, "session.load");
        let id = id.as_ref();
        let load = async || {
            let Some(id) = SessionId::parse(id) else {
                return Ok(None);
            };
            let (tag, digest) = self.key_parts(&id);
            let key = self.parts.keys.tagged_ref(&tag, &digest)?;
            if self.parts.timeouts.touch > 0 {
                let mut get = redis_core::command("GET", 2, key.byte_len());
                let reply = self.parts.redis.query(get.arg(&key)).await;
                let Some(value) = plain_reply(reply)? else {
                    return Ok(None);
                };
                // The header is parsed once: to decide, then to build the session.
                if let Some(stored) = layout::parse(&value, SESSION) {
                    let (created, seen) = (stored.created, stored.seen);
                    let now = self.parts.clock.now();
                    if layout::session_read(created, seen, now, &self.parts.timeouts) == Read::Live
                    {
                        let head = Head::of(&value, &stored);
                        let codec = self.parts.codec.clone();
                        return Session::from_parts(
                            id,
                            value,
                            head,
                            seen,
                            &self.parts.timeouts,
                            codec,
                        )
                        .map(Some);
                    }
                }
            }
            // Boxed: the script call is the rare path, and would otherwise make every load's
            // future several times larger (each move of it a larger copy).
            let Some((seen, value)) = Box::pin(self.access(&key.to_key(), true)).await? else {
                return Ok(None);
            };
            Session::from_value(
                id,
                value,
                seen,
                &self.parts.timeouts,
                self.parts.codec.clone(),
            )
            .map(Some)
        };
        observed!(
            self.parts.metrics,
            Operation::Load,
            span,
            load(),
            |s| found(s.is_some())
        )
    }

    /// Records an access without reading the data (at most one write per touch interval).
    /// Returns whether the session is live.
    ///
    /// Like [`load`](Self::load): a plain `GETRANGE` of the header unless the access is due to
    /// be recorded.
    ///
    /// # Errors
    /// [`Error::Core`](crate::Error::Core) when Redis fails.
    pub async fn touch(&self, id: impl AsRef<str>) -> Result<bool> {
        let span = session_span!(self.parts.redis, self.parts.name, "session.touch");
        let id = id.as_ref();
        let touch = async || {
            let Some(id) = SessionId::parse(id) else {
                return Ok(false);
            };
            let (tag, digest) = self.key_parts(&id);
            let key = self.parts.keys.tagged_ref(&tag, &digest)?;
            if self.parts.timeouts.touch > 0 {
                let reply = self
                    .parts
                    .redis
                    .query(
                        redis_core::command("GETRANGE", 4, key.byte_len() + 4)
                            .arg(&key)
                            .arg(0)
                            .arg(TIMES_END - 1),
                    )
                    .await;
                // `GETRANGE` of a missing key is empty.
                let head = plain_reply(reply)?.unwrap_or_default();
                if head.is_empty() {
                    return Ok(false);
                }
                if let Some((created, seen)) = layout::times(&head, SESSION) {
                    let now = self.parts.clock.now();
                    if layout::session_read(created, seen, now, &self.parts.timeouts) == Read::Live
                    {
                        return Ok(true);
                    }
                }
            }
            Ok(Box::pin(self.access(&key.to_key(), false)).await?.is_some())
        };
        observed!(self.parts.metrics, Operation::Load, span, touch(), |live| {
            found(*live)
        })
    }

    /// Runs the `access` script: `None` when the session is not live, else the last recorded
    /// access and, `with_data`, the stored value (empty without).
    async fn access(&self, key: &Key, with_data: bool) -> Result<Option<(u64, Vec<u8>)>> {
        let reply: Option<(u64, u64, u64, Vec<u8>)> = ACCESS
            .call()
            .key(key)
            .arg(self.parts.timeouts.idle)
            .arg(self.parts.timeouts.absolute)
            .arg(self.parts.timeouts.touch)
            .arg(if with_data { "1" } else { "0" })
            .invoke(&self.parts.redis)
            .await?;
        Ok(reply.map(|(now, _created, seen, value)| {
            self.parts.clock.observe(now);
            (seen, value)
        }))
    }
}
