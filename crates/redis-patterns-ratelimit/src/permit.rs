//! [`Permit`]: one slot of a [`ConcurrencyLimiter`](crate::ConcurrencyLimiter), given back on
//! release, on drop, or when its lease runs out.

use std::{fmt, sync::Arc, time::Duration};

use redis_core::{Key, Redis};
use tracing::Instrument;

use crate::{
    decision::Decision, error::Result, limit::micros, metrics::ConcurrencyMetrics,
    scripts::CONCURRENCY_RELEASE,
};

/// One slot of a [`ConcurrencyLimiter`](crate::ConcurrencyLimiter). Release it when done;
/// dropping it releases it in the background (on the current Tokio runtime, if any); otherwise
/// the lease runs out.
#[must_use = "a permit holds a slot until released, dropped or expired"]
pub struct Permit {
    redis: Redis,
    name: Arc<str>,
    /// Set once granted: the in-flight gauge this permit counts in until released or dropped.
    held: Option<Arc<ConcurrencyMetrics>>,
    key: Key,
    id: String,
    lease: Duration,
    decision: Decision,
    released: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("id", &self.id)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

impl Permit {
    /// A permit for lease `id` on `key`, armed before the acquiring request is sent: dropped, it
    /// releases whatever that request may have taken.
    pub(crate) fn armed(
        redis: Redis,
        name: Arc<str>,
        key: Key,
        id: String,
        lease: Duration,
        decision: Decision,
    ) -> Self {
        Self {
            redis,
            name,
            held: None,
            key,
            id,
            lease,
            decision,
            released: false,
        }
    }

    /// The server granted the lease with `decision`; the permit counts in `metrics`' in-flight
    /// gauge (already raised) until released or dropped.
    pub(crate) fn granted(&mut self, decision: Decision, metrics: Arc<ConcurrencyMetrics>) {
        self.decision = decision;
        self.held = Some(metrics);
    }

    /// This process no longer holds the slot.
    fn given_back(&mut self) {
        if let Some(metrics) = self.held.take() {
            metrics.in_flight.decrement(1.0);
        }
    }

    /// The server granted nothing: there is nothing to release.
    pub(crate) fn disarm(&mut self) {
        self.released = true;
    }

    pub(crate) fn key(&self) -> &Key {
        &self.key
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The decision that granted this permit (`remaining` = slots still free then).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Pushes the lease's end to a full lease from now.
    ///
    /// # Errors
    /// Redis failures. `Ok(false)` when the lease had already run out (the slot may be someone else's).
    pub async fn extend(&self) -> Result<bool> {
        let span = redis_core::operation_span!(
            self.redis,
            "ratelimit.extend",
            name = %self.name,
            alive = tracing::field::Empty,
        );
        async {
            let alive = self.send(micros(self.lease)).await?;
            span.record("alive", alive);
            Ok(alive)
        }
        .instrument(span.clone())
        .await
    }

    /// Frees the slot now.
    ///
    /// Cancellation-safe: if this future is dropped before Redis answers, the permit is released
    /// in the background as on drop.
    ///
    /// # Errors
    /// Redis failures (one more release is tried in the background, else the lease runs out by
    /// itself). `Ok(false)` when it had already expired.
    pub async fn release(mut self) -> Result<bool> {
        let span = redis_core::operation_span!(
            self.redis,
            "ratelimit.release",
            name = %self.name,
            alive = tracing::field::Empty,
        );
        async {
            let alive = self.send(0).await?;
            // Only once Redis has answered: a release cut short leaves it to `Drop`.
            self.released = true;
            self.given_back();
            span.record("alive", alive);
            Ok(alive)
        }
        .instrument(span.clone())
        .await
    }

    /// Releases (`lease_us` 0) or extends the lease; true when it was alive.
    async fn send(&self, lease_us: u64) -> Result<bool> {
        Ok(release(&self.redis, &self.key, &self.id, lease_us).await? == 1)
    }
}

/// Runs the release script: `lease_us` 0 releases, anything else extends.
async fn release(redis: &Redis, key: &Key, id: &str, lease_us: u64) -> redis_core::Result<i64> {
    CONCURRENCY_RELEASE
        .call()
        .key(key)
        .arg(lease_us)
        .arg(id)
        .invoke(redis)
        .await
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.given_back();
        let redis = self.redis.clone();
        let key = self.key.clone();
        let id = std::mem::take(&mut self.id);
        redis_core::release_in_background(self.key.as_str(), async move {
            release(&redis, &key, &id, 0).await
        });
    }
}
