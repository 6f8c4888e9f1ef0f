//! Handler-side deduplication: remember which messages were processed, for a while.

use std::time::Duration;

use redis_core::{Key, Redis};

use crate::{
    error::{Error, Result},
    producer::millis,
};

/// Remembers processed message ids with `SET NX PX`, so a handler can skip a redelivered message.
///
/// Delivery is at-least-once: a consumer that dies after its handler's side effect but before
/// `XACK` gets its entry redelivered. Handlers whose effect is not naturally idempotent call
/// [`begin`](Self::begin) first and [`abandon`](Self::abandon) when they fail, so a retry can run.
///
/// This trades at-least-once for at-most-once: the id is recorded *before* the work, so whenever
/// the record outlives an attempt that did not finish, every later delivery is skipped and
/// acknowledged, and the message is never processed. That happens when the process dies between
/// `begin` and the end of the work, when the handler panics or returns without calling `abandon`,
/// when `abandon` fails, and when a handler runs longer than the consumer's `min_idle` (another
/// consumer claims the entry, its `begin` says `false` and it acknowledges the entry while the
/// first attempt may still fail). Use it where doing the work twice is worse than not doing it;
/// otherwise make the side effect itself idempotent (an upsert keyed by the entry id).
///
/// Keys are `<scope>:done:<id>`, companions of `scope` (usually the stream key), with a TTL that
/// must outlive the longest redelivery window (`min_idle × max_deliveries`, plus margin).
///
/// ```no_run
/// use std::time::Duration;
/// use redis_messaging::Idempotency;
/// # async fn demo(redis: redis_core::Redis, stream: redis_core::Key) -> redis_messaging::Result<()> {
/// let seen = Idempotency::new(redis, stream, Duration::from_secs(24 * 3600))?;
/// if seen.begin("1700000000000-0").await? {
///     // first time: do the work; on failure call `seen.abandon(id)` so a retry may run
/// } else {
///     // a redelivery of something already done: just acknowledge it
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Idempotency {
    redis: Redis,
    scope: Key,
    ttl: Duration,
}

impl Idempotency {
    /// Remembers ids under `scope` for `ttl`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `ttl` is below one millisecond.
    pub fn new(redis: Redis, scope: Key, ttl: Duration) -> Result<Self> {
        if ttl.as_millis() == 0 {
            return Err(Error::config("idempotency ttl below one millisecond"));
        }
        Ok(Self { redis, scope, ttl })
    }

    /// The key that records `id`.
    pub fn key(&self, id: &str) -> Key {
        self.scope.companion(&format!("done:{id}"))
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
                    .arg(millis(self.ttl)),
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
