//! Handler-side deduplication: remember which messages were processed, for a while.

use std::time::Duration;

use redis_core::{Key, KeySpace, Redis, duration_millis, random_token, redis};

use super::stream_key;
use crate::{
    error::{Error, Result},
    scripts::{LEASE_ACQUIRE, LEASE_RELEASE},
};

/// Remembers processed message ids, so a handler can skip a redelivered message.
///
/// Delivery is at-least-once: a consumer that dies after its handler's side effect but before
/// `XACK` gets its entry redelivered. Two ways to guard a handler whose effect is not naturally
/// idempotent:
///
/// - **[`acquire`](Self::acquire) (keeps at-least-once).** Takes a short in-progress lease on the
///   id (`SET NX PX lease` with a random token) before the work; [`Lease::complete`] turns it into
///   the long-lived done marker (TTL `ttl`) only if the token still owns it, [`Lease::abandon`]
///   deletes it only if the token still owns it. A later delivery sees [`Claim::Done`] (skip and
///   acknowledge), [`Claim::Busy`] (another attempt holds a live lease: leave the entry pending
///   and retry later) or, once a crashed attempt's lease has expired, [`Claim::Run`] again. The
///   work can run more than once only when an attempt outlives its lease (crash after the side
///   effect but before `complete`, or a handler slower than the lease): set the lease above the
///   slowest handler.
/// - **[`begin`](Self::begin) / [`abandon`](Self::abandon) (at-most-once).** Marks the id done
///   before the work, described below.
///
/// `begin` trades at-least-once for at-most-once: the id is recorded *before* the work, so whenever
/// the record outlives an attempt that did not finish, every later delivery is skipped and
/// acknowledged, and the message is never processed. That happens when the process dies between
/// `begin` and the end of the work, when the handler panics or returns without calling `abandon`,
/// when `abandon` fails, and when a handler runs longer than the consumer's `min_idle` (another
/// consumer claims the entry, its `begin` says `false` and it acknowledges the entry while the
/// first attempt may still fail). Use it where doing the work twice is worse than not doing it;
/// otherwise use `acquire`, or make the side effect itself idempotent (an upsert keyed by the
/// entry id).
///
/// Keys are `<keys>:messaging:{<stream>}:done:<id>`, companions of the stream's key (the same
/// slot); every key has a TTL: a lease its lease time, a done marker `ttl`, which must outlive
/// the longest redelivery window (`min_idle × max_deliveries`, plus margin). Both ways share the keys: an id marked by
/// `begin` is [`Claim::Done`] for `acquire`.
///
/// ```no_run
/// use std::time::Duration;
/// use redis_messaging::Idempotency;
/// # async fn demo(redis: redis_core::Redis, keys: redis_core::KeySpace) -> redis_messaging::Result<()> {
/// let seen = Idempotency::new(redis, &keys, "orders", Duration::from_secs(24 * 3600))?;
/// if seen.begin("1700000000000-0").await? {
///     // first time: do the work; on failure call `seen.abandon(id)` so a retry may run
/// } else {
///     // a redelivery of something already done: just acknowledge it
/// }
/// # Ok(()) }
/// ```
///
/// With a lease:
///
/// ```no_run
/// use std::time::Duration;
/// use redis_messaging::{Claim, Idempotency};
/// # async fn work() -> Result<(), std::io::Error> { Ok(()) }
/// # async fn demo(redis: redis_core::Redis, keys: redis_core::KeySpace) -> redis_messaging::Result<()> {
/// let seen = Idempotency::new(redis, &keys, "orders", Duration::from_secs(24 * 3600))?;
/// match seen.acquire("1700000000000-0", Duration::from_secs(30)).await? {
///     Claim::Run(lease) => match work().await {
///         Ok(()) => {
///             lease.complete().await?; // done: later deliveries are skipped
///         }
///         Err(_) => {
///             lease.abandon().await?; // failed: a retry may run at once
///         }
///     },
///     Claim::Done => { /* already done: acknowledge */ }
///     Claim::Busy { .. } => { /* in progress elsewhere: leave it pending, retry later */ }
///     _ => {}
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Idempotency {
    redis: Redis,
    stream: Key,
    ttl: Duration,
}

impl Idempotency {
    /// Remembers the ids of the stream named `stream` for `ttl`, under
    /// `<keys>:messaging:{<stream>}:done:<id>`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `ttl` is below one millisecond; [`Error::Core`] for a stream
    /// name that makes no valid key.
    pub fn new(redis: Redis, keys: &KeySpace, stream: &str, ttl: Duration) -> Result<Self> {
        if ttl.as_millis() == 0 {
            return Err(Error::invalid_config(
                "idempotency ttl below one millisecond",
            ));
        }
        Ok(Self {
            stream: stream_key(keys, stream)?,
            redis,
            ttl,
        })
    }

    /// The key that records `id`.
    pub fn key(&self, id: &str) -> Key {
        self.stream.companion(&format!("done:{id}"))
    }

    /// Takes the in-progress lease on `id` for `lease` (the longest the work may take), unless the
    /// id is done or another attempt holds a live lease. The lease is a random token under
    /// [`key`](Self::key) with a TTL of `lease`: an attempt that crashes leaves nothing behind for
    /// longer than that.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `lease` is below one millisecond; [`Error::Core`] when the
    /// script fails.
    pub async fn acquire(&self, id: &str, lease: Duration) -> Result<Claim> {
        if lease.as_millis() == 0 {
            return Err(Error::invalid_config(
                "idempotency lease below one millisecond",
            ));
        }
        let key = self.key(id);
        // `lease_acquire.lua` tells a lease from a done marker by this prefix.
        let token = format!("lease:{}", random_token());
        let (state, pttl): (i64, i64) = LEASE_ACQUIRE
            .call()
            .key(&key)
            .arg(&token)
            .arg(duration_millis(lease))
            .invoke(&self.redis)
            .await?;
        let remaining = Duration::from_millis(u64::try_from(pttl).unwrap_or(0));
        Ok(match state {
            1 => Claim::Run(Lease {
                redis: self.redis.clone(),
                key,
                token,
                done_ttl: self.ttl,
            }),
            0 => Claim::Busy {
                retry_after: remaining,
            },
            _ => Claim::Done,
        })
    }

    /// Marks `id` as taken: `true` the first time (go ahead), `false` when it was already taken
    /// within the TTL (skip it).
    ///
    /// # Errors
    /// [`Error::Core`] when the command fails.
    pub async fn begin(&self, id: &str) -> Result<bool> {
        let set: Option<String> = self
            .redis
            .query(
                redis::cmd("SET")
                    .arg(self.key(id))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(duration_millis(self.ttl)),
            )
            .await?;
        Ok(set.is_some())
    }

    /// Forgets `id` so that the next delivery runs again (call it when the work failed).
    ///
    /// # Errors
    /// [`Error::Core`] when the command fails.
    pub async fn abandon(&self, id: &str) -> Result<()> {
        let _: i64 = self
            .redis
            .query(redis::cmd("DEL").arg(self.key(id)))
            .await?;
        Ok(())
    }
}

/// What [`Idempotency::acquire`] found.
#[derive(Debug)]
#[non_exhaustive]
#[must_use]
pub enum Claim {
    /// The lease is this attempt's: do the work, then [`Lease::complete`] (or
    /// [`Lease::abandon`] when it failed).
    Run(Lease),
    /// The id is done (within the TTL): skip the work and acknowledge the message.
    Done,
    /// Another attempt holds a live lease: do not run now and do not acknowledge; retry later
    /// (a stream entry left pending comes back after `min_idle`). `retry_after` is what is left
    /// of that lease.
    Busy {
        /// Time left on the other attempt's lease.
        retry_after: Duration,
    },
}

/// An in-progress lease on one id, from [`Idempotency::acquire`]. Dropping it without
/// [`complete`](Self::complete) or [`abandon`](Self::abandon) leaves the lease to expire, after
/// which the id may run again.
#[derive(Debug)]
#[must_use = "complete or abandon the lease"]
pub struct Lease {
    redis: Redis,
    key: Key,
    token: String,
    done_ttl: Duration,
}

impl Lease {
    /// The key the lease is held on.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Marks the id done (the long-lived marker, TTL `ttl` of the [`Idempotency`]) if this lease
    /// still owns the key: `true` then. `false` when the lease had expired (and perhaps another
    /// attempt took it): nothing is changed, and the work may be done again by that attempt.
    ///
    /// # Errors
    /// [`Error::Core`] when the script fails.
    pub async fn complete(&self) -> Result<bool> {
        self.release(Some(self.done_ttl)).await
    }

    /// Removes the lease so a retry may run at once (call it when the work failed), if this lease
    /// still owns the key: `true` then, `false` when it had expired or belongs to another attempt
    /// (which is left alone).
    ///
    /// # Errors
    /// [`Error::Core`] when the script fails.
    pub async fn abandon(&self) -> Result<bool> {
        self.release(None).await
    }

    async fn release(&self, done_ttl: Option<Duration>) -> Result<bool> {
        let released: i64 = LEASE_RELEASE
            .call()
            .key(&self.key)
            .arg(&self.token)
            .arg(
                done_ttl
                    .map(|ttl| duration_millis(ttl).to_string())
                    .unwrap_or_default(),
            )
            .invoke(&self.redis)
            .await?;
        Ok(released == 1)
    }
}
