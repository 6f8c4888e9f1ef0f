//! Reading a session: `load` and `touch`. A read whose access need not be recorded is a plain
//! `HGETALL` (or `HMGET`) + `PTTL` pipeline; the `access` script runs only when the touch is due
//! (or the plain read cannot tell, see `crate::plain`).

use redis_core::{Codec, Key, redis};

use super::{SessionStore, found};
use crate::{
    error::Result,
    id::SessionId,
    metrics::{Operation, session_span},
    plain::{self, CREATED, DEADLINE, Read, SEEN, Times, parse_ms},
    scripts::ACCESS,
    session::Session,
};

impl<C: Codec> SessionStore<C> {
    /// Loads a live session and records the access (at most once per touch interval).
    ///
    /// A missing, expired, revoked, rotated-away, tampered or malformed id gives `Ok(None)`.
    ///
    /// One round trip: a plain `HGETALL` + `PTTL` while the last recorded access is less than the
    /// touch interval old (no script), the store's `access` script when the access is due to be
    /// recorded (with a zero interval, always).
    ///
    /// # Errors
    /// [`Error::Core`](crate::Error::Core) when Redis fails or answers with an unexpected shape.
    pub async fn load(&self, id: impl AsRef<str>) -> Result<Option<Session<C>>> {
        let span = session_span!(self.redis, self.name, "session.load");
        let id = id.as_ref();
        let load = async {
            let Some(id) = SessionId::parse(id) else {
                return Ok(None);
            };
            let (key, _) = self.session_key(&id)?;
            if self.timeouts.touch > 0 {
                let (hash, pttl) = plain::hash_and_ttl(&self.redis, &key).await?;
                let meta = |name: &str| plain::field(&hash, name).and_then(parse_ms);
                let read = plain::session(
                    !hash.is_empty(),
                    meta(CREATED),
                    meta(SEEN),
                    meta(DEADLINE),
                    pttl,
                    &self.timeouts,
                );
                match read {
                    Read::Missing => return Ok(None),
                    Read::Live(times) => {
                        return Session::from_hash(
                            id,
                            hash,
                            &times,
                            &self.timeouts,
                            self.codec.clone(),
                        )
                        .map(Some);
                    }
                    Read::Script => {}
                }
            }
            match self.access(&key, true).await? {
                Some(reply) => {
                    Session::from_access_reply(id, reply, &self.timeouts, self.codec.clone())
                        .map(Some)
                }
                None => Ok(None),
            }
        };
        self.metrics
            .observe(Operation::Load, span, load, |s| found(s.is_some()))
            .await
    }

    /// Records an access without reading the data (at most one write per touch interval).
    /// Returns whether the session is live.
    ///
    /// Like [`load`](Self::load): a plain `HMGET` + `PTTL` of the metadata unless the access is
    /// due to be recorded.
    ///
    /// # Errors
    /// [`Error::Core`](crate::Error::Core) when Redis fails.
    pub async fn touch(&self, id: impl AsRef<str>) -> Result<bool> {
        let span = session_span!(self.redis, self.name, "session.touch");
        let id = id.as_ref();
        let touch = async {
            let Some(id) = SessionId::parse(id) else {
                return Ok(false);
            };
            let (key, _) = self.session_key(&id)?;
            if self.timeouts.touch > 0 {
                let (meta, pttl): (Vec<Option<Vec<u8>>>, i64) = self
                    .redis
                    .query_pipeline(
                        redis::pipe()
                            .cmd("HMGET")
                            .arg(&key)
                            .arg(CREATED)
                            .arg(SEEN)
                            .arg(DEADLINE)
                            .cmd("PTTL")
                            .arg(&key),
                    )
                    .await?;
                let field = |i: usize| meta.get(i).and_then(Option::as_deref);
                let read = plain::session(
                    meta.iter().any(Option::is_some),
                    field(0).and_then(parse_ms),
                    field(1).and_then(parse_ms),
                    field(2).and_then(parse_ms),
                    pttl,
                    &self.timeouts,
                );
                match read {
                    Read::Missing => return Ok(false),
                    Read::Live(Times { .. }) => return Ok(true),
                    Read::Script => {}
                }
            }
            Ok(self.access(&key, false).await?.is_some())
        };
        self.metrics
            .observe(Operation::Load, span, touch, |live| found(*live))
            .await
    }

    /// Runs the `access` script: `None` when the session is not live, else its timestamps and,
    /// `with_data`, its fields.
    async fn access(&self, key: &Key, with_data: bool) -> Result<Option<Vec<Vec<u8>>>> {
        let reply = ACCESS
            .call()
            .key(key)
            .arg(self.timeouts.idle)
            .arg(self.timeouts.absolute)
            .arg(self.timeouts.touch)
            .arg(if with_data { "1" } else { "0" })
            .invoke(&self.redis)
            .await?;
        Ok(reply)
    }
}
