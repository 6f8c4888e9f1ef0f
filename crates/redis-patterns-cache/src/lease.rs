//! The refresh lease: a companion key (`<entry>:lease`) that lets one process load a key while
//! the others wait or serve stale. Taken by `begin.lua`, given back by the fill (`store.lua`), by
//! a delete (its write pipeline), or by this guard.

use redis_core::{Key, Redis};

use crate::scripts::RELEASE;

/// Companion suffix of the refresh lease.
pub(crate) const LEASE: &str = "lease";

/// A refresh lease this caller holds.
///
/// Released by the fill script, or explicitly with [`release`](Lease::release). Dropped while
/// still held (the caller was cancelled or the loader panicked), it releases itself in a
/// background task, so that other callers need not wait out `lease_ttl`.
pub(crate) struct Lease {
    redis: Redis,
    key: Key,
    token: String,
    armed: bool,
}

impl Lease {
    /// A lease `begin.lua` just took under `token`.
    pub(crate) fn held(redis: Redis, key: Key, token: String) -> Self {
        Self {
            redis,
            key,
            token,
            armed: true,
        }
    }

    /// The owner token, for the fill script to release the lease with.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// The fill script ran: it released the lease if it still held our token.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    /// Releases the lease now (a failure is logged: the lease then expires by itself).
    pub(crate) async fn release(mut self) {
        if let Err(e) = release(&self.redis, &self.key, &self.token).await {
            tracing::debug!(key = %self.key, error = %e, "could not release refresh lease");
        }
        self.armed = false;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Outside a runtime (or while it shuts down) the lease simply expires.
        let (redis, key, token) = (
            self.redis.clone(),
            self.key.clone(),
            std::mem::take(&mut self.token),
        );
        redis_core::release_in_background(self.key.as_str(), async move {
            release(&redis, &key, &token).await
        });
    }
}

/// Releases a refresh lease if `token` still holds it (1 when it did).
async fn release(redis: &Redis, lease_key: &Key, token: &str) -> redis_core::Result<i64> {
    RELEASE.call().key(lease_key).arg(token).invoke(redis).await
}
