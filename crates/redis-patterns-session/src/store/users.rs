//! A user's sessions: the per-user index, listing and revocation.

use redis_core::{Codec, Key, KeyError, redis};

use super::SessionStore;
use crate::{
    error::{Error, Result},
    id::bucket_tag,
    metrics::{Event, Operation, Outcome, observed, session_span},
    scripts::{LIST, REVOKE},
    session::SessionInfo,
};

/// Most keys sent in one list or revoke script call.
const BATCH: usize = 256;

impl<C: Codec> SessionStore<C> {
    /// The live sessions of `user`, oldest first. Expired members are dropped from the index on
    /// the way. Each entry carries a [`handle`](SessionInfo::handle) (the key digest, not a
    /// usable id) for [`revoke`](Self::revoke).
    ///
    /// # Errors
    /// [`Error::Core`] when Redis fails or the user id is empty.
    pub async fn list_user(&self, user: &str) -> Result<Vec<SessionInfo>> {
        let span = session_span!(
            self.parts.redis,
            self.parts.name,
            "session.list_user",
            sessions
        );
        observed!(
            self.parts.metrics,
            Operation::List,
            span,
            self.list(user),
            |listed| { Outcome::sessions("listed", None, listed.len()) }
        )
    }

    async fn list(&self, user: &str) -> Result<Vec<SessionInfo>> {
        let (bucket, index) = self.user_index(user)?;
        let members: Vec<String> = self
            .parts
            .redis
            .query(redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1))
            .await?;
        let mut out = Vec::with_capacity(members.len());
        for chunk in members.chunks(BATCH) {
            let keys = chunk
                .iter()
                .map(|digest| self.parts.keys.tagged(&bucket_tag(bucket), digest))
                .collect::<redis_core::Result<Vec<_>>>()?;
            let reply: Vec<String> = {
                let mut call = LIST.call().key(&index);
                for key in &keys {
                    call = call.key(key);
                }
                call = call
                    .arg(self.parts.timeouts.idle)
                    .arg(self.parts.timeouts.absolute);
                for digest in chunk {
                    call = call.arg(digest);
                }
                call.invoke(&self.parts.redis)
            }
            .await?;
            for entry in reply.chunks(3) {
                out.push(SessionInfo::from_list_entry(entry, &self.parts.timeouts)?);
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
        let span = session_span!(
            self.parts.redis,
            self.parts.name,
            "session.revoke_user",
            sessions
        );
        observed!(
            self.parts.metrics,
            Operation::Revoke,
            span,
            self.revoke_all(user),
            |&n| { Outcome::sessions("revoked", Some(Event::Revoked), n) }
        )
    }

    async fn revoke_all(&self, user: &str) -> Result<usize> {
        let (bucket, index) = self.user_index(user)?;
        let mut total = 0;
        for _ in 0..64 {
            let members: Vec<String> = self
                .parts
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
        Err(Error::unexpected_reply(
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
        let span = session_span!(self.parts.redis, self.parts.name, "session.revoke");
        observed!(
            self.parts.metrics,
            Operation::Revoke,
            span,
            self.revoke_one(user, handle),
            |&ended| {
                if ended {
                    Outcome::event("revoked", Event::Revoked)
                } else {
                    Outcome::plain("missing")
                }
            },
        )
    }

    async fn revoke_one(&self, user: &str, handle: &str) -> Result<bool> {
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
    pub(super) async fn revoke_batch(
        &self,
        user: &str,
        bucket: u16,
        index: &Key,
        digests: &[String],
    ) -> Result<(usize, usize)> {
        let tag = bucket_tag(bucket);
        let keys = digests
            .iter()
            .map(|digest| self.parts.keys.tagged(&tag, digest))
            .collect::<redis_core::Result<Vec<_>>>()?;
        let (revoked, left): (usize, usize) = {
            let mut call = REVOKE.call().key(index);
            for key in &keys {
                call = call.key(key);
            }
            call = call.arg(user);
            for digest in digests {
                call = call.arg(digest);
            }
            call.invoke(&self.parts.redis)
        }
        .await?;
        Ok((revoked, left))
    }

    /// The bucket and index key of a user.
    pub(super) fn user_index(&self, user: &str) -> Result<(u16, Key)> {
        if user.is_empty() {
            return Err(redis_core::Error::from(KeyError::Empty("user id")).into());
        }
        let bucket = self.parts.hasher.user_bucket(user);
        let key = self
            .parts
            .keys
            .tagged(&bucket_tag(bucket), &format!("user:{user}"))?;
        Ok((bucket, key))
    }
}
