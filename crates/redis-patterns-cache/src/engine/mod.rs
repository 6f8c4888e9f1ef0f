//! The engine behind [`Cache`](crate::Cache): what a cache's clones share, and the three paths
//! every public call goes through.
//!
//! - [`commands`]: the read path's command buffers, reused per thread.
//! - [`read`]: one route for every hit, from the near cache or from Redis: decode, tag check,
//!   freshness; corrupt entries removed.
//! - [`load`]: `get_or_load`'s in-process single flight, then the leader's path: refresh lease,
//!   versions, load, conditional fill.
//! - [`write`]: writes with a generation bump, tag versions, envelopes.
//! - [`tags`]: the tag versions this process last saw, for tagged writes in one round trip.

mod commands;
mod load;
mod read;
mod tags;
mod write;

use std::sync::Arc;

use redis_core::{Codec, KeySpace, Redis};

use crate::{
    config::{FailurePolicy, Settings},
    error::{Error, Result},
    flight::Flights,
    metrics::Metrics,
    near::{self, Near},
};
use tags::TagMemo;

/// Companion suffix of the per-key generation.
const GEN: &str = "gen";

/// What a cache's clones share.
pub(crate) struct Engine<C> {
    pub(crate) redis: Redis,
    pub(crate) entries: KeySpace,
    pub(crate) tags: KeySpace,
    pub(crate) codec: C,
    pub(crate) settings: Settings,
    pub(crate) flights: Flights,
    /// The tag versions last seen.
    tag_memo: TagMemo,
    /// Handles registered when the cache was built.
    pub(crate) metrics: Metrics,
    /// The near cache, when on.
    pub(crate) near: Option<Arc<Near>>,
    /// Dropped with the last clone: stops the near cache's tracking task.
    _stop_tracking: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<C: Codec> Engine<C> {
    /// Builds the key spaces (`<keys>:cache`, `<keys>:cache:tag`) and starts the near cache's
    /// tracking task when the settings ask for one.
    pub(crate) fn new(redis: Redis, keys: &KeySpace, codec: C, settings: Settings) -> Result<Self> {
        let entries = keys.pattern("cache")?;
        let tags = entries.pattern("tag")?;
        let metrics = Metrics::new(&settings.name);
        let (near, stop) = match settings.near {
            Some(config) => {
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                    Error::invalid_config("a near cache must be built inside a Tokio runtime")
                })?;
                let near = Arc::new(
                    Near::new(
                        config,
                        format!("{}:", entries.prefix()),
                        format!("{}:", tags.prefix()),
                    )
                    .metered(metrics.near.clone()),
                );
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
                near::spawn(&runtime, near.clone(), redis.clone(), stop_rx);
                (Some(near), Some(stop_tx))
            }
            None => (None, None),
        };
        Ok(Self {
            redis,
            entries,
            tags,
            codec,
            settings,
            flights: Flights::default(),
            tag_memo: TagMemo::default(),
            metrics,
            near,
            _stop_tracking: stop,
        })
    }

    /// A uniform number in `[0, 1)` from the configured source.
    fn random(&self) -> f64 {
        (self.settings.random)()
    }

    /// Applies the failure policy to a Redis error: `Ok(())` means "carry on without Redis".
    fn tolerate(&self, e: redis_core::Error, what: &str) -> Result<()> {
        let down = e.is_retryable() || e.is_connection_error() || e.is_timeout();
        if self.settings.failure_policy == FailurePolicy::FailOpen && down {
            tracing::warn!(error = %e, "redis unavailable during cache {what}; failing open");
            Ok(())
        } else {
            Err(e.into())
        }
    }
}

/// The server the unit tests talk to (`REDIS_URL`, set by `cargo xtask test`) and a key space no
/// other test uses. These unit tests ship in the package, so they take no test-only dependency.
#[cfg(test)]
pub(crate) async fn unit_test_server() -> (redis_core::Redis, redis_core::KeySpace) {
    let redis = redis_core::Redis::from_env()
        .await
        .expect("a Redis at REDIS_URL");
    let keys = redis_core::KeySpace::new(&format!("unit{}", redis_core::random_token()));
    (redis, keys.expect("a valid prefix"))
}
