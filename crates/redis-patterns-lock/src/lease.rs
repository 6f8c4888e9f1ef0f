//! The server side of a lease: the [`Lease`] trait (renew, give back) every primitive implements,
//! and [`ScriptLease`], the semaphore's lease on one deployment.

use std::{fmt, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use redis_core::{Key, Redis, Script, TopologyWatch, duration_millis};
use tokio::time::Instant;

use crate::{
    acquire::{Attempt, PendingLease},
    config::LeaseConfig,
    error::{Error, Result},
    guard::LockGuard,
    metrics::Metrics,
    scripts::{FENCE_SUFFIX, SEM_ACQUIRE, SEM_EXTEND, SEM_RELEASE},
};

/// What a primitive does on the server for a lease it handed out. Object safe: yes.
pub(crate) trait Lease: Send + Sync + fmt::Debug + 'static {
    /// Renews the lease to `ttl`. `Ok(false)` when it is no longer ours.
    fn extend<'a>(&'a self, token: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>>;
    /// Gives the lease back. `Ok(false)` when it was no longer ours.
    fn release<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// Topology changes of the deployment holding the lease, seen from before the grant was
    /// requested: the watchdog renews at once on each (a grant lost with a demoted master is
    /// found lost within a round trip of the new master answering). Default: none.
    fn topology(&self) -> Option<TopologyWatch> {
        None
    }
}

/// The three scripts of one kind of lease held in one key.
#[derive(Debug)]
pub(crate) struct LeaseScripts {
    /// KEYS: key, fence; ARGV: token, ttl ms, then kind-specific arguments; reply `{1, fence}`
    /// when taken, `{0, ms until a holder's lease ends}` when held.
    acquire: &'static Script,
    /// KEYS: key; ARGV: token, ttl ms; reply `1` renewed, `0` not ours.
    extend: &'static Script,
    /// KEYS: key; ARGV: token; reply `1` given back, `0` not ours.
    release: &'static Script,
}

/// A semaphore permit: one member of a sorted set scored by expiry.
pub(crate) static SEMAPHORE: LeaseScripts = LeaseScripts {
    acquire: &SEM_ACQUIRE,
    extend: &SEM_EXTEND,
    release: &SEM_RELEASE,
};

/// A lease held in one key of one deployment (a server, a Sentinel master, or a cluster slot).
#[derive(Debug)]
pub(crate) struct ScriptLease {
    redis: Redis,
    key: Key,
    scripts: &'static LeaseScripts,
    /// The topology epoch, read before the acquiring request: a change while it is in flight
    /// counts too. A watch is made from it only when a watchdog asks.
    epoch: u64,
}

impl ScriptLease {
    pub(crate) fn new(redis: Redis, key: Key, scripts: &'static LeaseScripts) -> Self {
        let epoch = redis.topology_epoch();
        Self {
            redis,
            key,
            scripts,
            epoch,
        }
    }

    /// One attempt to take the lease on `resource`; `extra` is appended to the acquire script's
    /// arguments (the semaphore's permit count).
    pub(crate) async fn try_once(
        self,
        resource: &str,
        config: &LeaseConfig,
        extra: Option<u32>,
        metrics: &Arc<Metrics>,
    ) -> Result<Attempt> {
        let this = Arc::new(self);
        // Armed until the reply is in: a cancelled or failed request gives its token back.
        let pending = PendingLease::new(resource, Arc::clone(&this) as Arc<dyn Lease>);
        // The lease counts from before the send (see `LockLease::try_once`).
        let start = Instant::now();
        let mut call = this
            .scripts
            .acquire
            .call()
            .key(&this.key)
            .companion(&this.key, FENCE_SUFFIX)
            .arg(pending.token())
            .arg(duration_millis(config.ttl));
        if let Some(extra) = extra {
            call = call.arg(extra);
        }
        let (taken, value): (i64, i64) = call.invoke(&this.redis).await?;
        if taken != 1 {
            drop(pending.settle());
            let hint = u64::try_from(value).ok().map(Duration::from_millis);
            return Ok(Attempt::Held(hint));
        }
        let fence = u64::try_from(value)
            .map_err(|_| Error::unexpected_reply(format!("fencing counter {value}")))?;
        let (lease, token) = pending.settle();
        Ok(Attempt::Acquired(LockGuard::new(
            resource,
            token,
            fence,
            start,
            config,
            lease,
            Arc::clone(metrics),
        )))
    }
}

impl Lease for ScriptLease {
    fn extend<'a>(&'a self, token: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let n: i64 = self
                .scripts
                .extend
                .call()
                .key(&self.key)
                .arg(token)
                .arg(duration_millis(ttl))
                .invoke(&self.redis)
                .await?;
            Ok(n == 1)
        })
    }

    fn release<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let n: i64 = self
                .scripts
                .release
                .call()
                .key(&self.key)
                .arg(token)
                .invoke(&self.redis)
                .await?;
            Ok(n == 1)
        })
    }

    fn topology(&self) -> Option<TopologyWatch> {
        Some(self.redis.topology_watch_since(self.epoch))
    }
}
