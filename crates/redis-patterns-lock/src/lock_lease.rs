//! The server side of a [`Lock`](crate::Lock)'s lease: one attempt in each [`Fencing`] mode, and
//! the release that tells waiters.

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use redis_core::{Key, Redis, TopologyWatch, duration_millis, redis};
use tokio::time::Instant;

use crate::{
    acquire::{Attempt, PendingLease},
    config::LeaseConfig,
    error::{Error, Result},
    fencing::Fencing,
    guard::LockGuard,
    lease::Lease,
    metrics::Metrics,
    scripts::{
        EXTEND, FENCE_SUFFIX, LOCK_ACQUIRE, LOCK_HANDOVER, LOCK_RELEASE, LOCK_WAIT, WAITERS_SUFFIX,
    },
    wake::{Offer, ReleaseTurn, Waiters},
};

/// A lock's lease on one resource of one deployment.
#[derive(Debug)]
pub(crate) struct LockLease {
    redis: Redis,
    key: Key,
    waiters: Arc<Waiters>,
    /// The topology epoch, read before the acquiring request: a change while it is in flight
    /// counts too. A watch is made from it only when a watchdog asks.
    epoch: u64,
}

impl LockLease {
    pub(crate) fn new(redis: Redis, key: Key, waiters: Arc<Waiters>) -> Self {
        let epoch = redis.topology_epoch();
        Self {
            redis,
            key,
            waiters,
            epoch,
        }
    }

    /// One attempt on `resource`. `waiting`: the caller will wait for a release, so a held lock
    /// is marked for a wake-up.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn try_once(
        self,
        resource: &str,
        config: &LeaseConfig,
        fencing: Fencing,
        replica_ack: Option<Duration>,
        waiting: bool,
        metrics: &Arc<Metrics>,
    ) -> Result<Attempt> {
        let this = Arc::new(self);
        // Armed until the reply is in: a cancelled or failed request gives its token back.
        let pending = PendingLease::new(resource, Arc::clone(&this) as Arc<dyn Lease>);
        // The lease counts from before the send (a migration's `TRYAGAIN`, waited out by the
        // connection layer, only shortens what this process believes it holds).
        let start = Instant::now();
        let ttl = duration_millis(config.ttl);
        let (taken, value) = if fencing == Fencing::Off {
            this.set_nx(pending.token(), ttl, waiting).await?
        } else {
            LOCK_ACQUIRE
                .call()
                .key(&this.key)
                .companion(&this.key, FENCE_SUFFIX)
                .companion(&this.key, WAITERS_SUFFIX)
                .arg(pending.token())
                .arg(ttl)
                .arg(fencing.horizon_arg())
                .arg(u8::from(waiting))
                .invoke::<(i64, i64)>(&this.redis)
                .await?
        };
        if taken != 1 {
            drop(pending.settle());
            let hint = u64::try_from(value).ok().map(Duration::from_millis);
            return Ok(Attempt::Held(hint));
        }
        let fence = u64::try_from(value)
            .map_err(|_| Error::unexpected_reply(format!("fencing counter {value}")))?;
        if let Some(timeout) = replica_ack {
            // On the connection that sent the grant: waits for its writes to reach a replica. An
            // error or a refusal returns early with the lease still pending, so it is given back.
            let acked: i64 = this
                .redis
                .query(redis::cmd("WAIT").arg(1).arg(duration_millis(timeout)))
                .await?;
            if acked < 1 {
                return Err(Error::NotReplicated {
                    resource: resource.to_owned(),
                    timeout,
                });
            }
        }
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

    /// An unfenced attempt: `SET key token NX PX ttl`; held and waiting, a second request marks
    /// the waiter and reads the holder's lease (a lock freed in between reads as `0` ms left).
    /// Replies as the acquire script: `(1, 0)` taken, `(0, ms left or -1)` held.
    async fn set_nx(&self, token: &str, ttl: u64, waiting: bool) -> Result<(i64, i64)> {
        // `OK` or nil, read without converting the `OK` into a string.
        let set: redis::Value = self
            .redis
            .query(
                // SET key token NX PX ttl: sized ahead (a ttl is at most 20 digits).
                redis_core::command("SET", 6, self.key.as_str().len() + token.len() + 24)
                    .arg(&self.key)
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl),
            )
            .await?;
        if !matches!(set, redis::Value::Nil) {
            return Ok((1, 0));
        }
        if !waiting {
            return Ok((0, -1));
        }
        let pttl: i64 = LOCK_WAIT
            .call()
            .key(&self.key)
            .companion(&self.key, WAITERS_SUFFIX)
            .invoke(&self.redis)
            .await?;
        Ok((0, if pttl == -2 { 0 } else { pttl }))
    }
}

impl LockLease {
    /// Gives the lease held with `token` straight to the local waiter behind `offer`, in one
    /// round trip; `Ok(false)` when it was no longer ours. The waiter's lease counts from before
    /// the request, like an acquire's. Whatever goes wrong drops the offer, which wakes the waiter
    /// to try on its own; a grant that may have happened without reaching it is given back in the
    /// background.
    async fn hand_over(&self, token: &str, offer: Offer) -> Result<bool> {
        let Some(handover) = self.waiters.handover() else {
            return Ok(false);
        };
        let next = Arc::new(Self::new(
            self.redis.clone(),
            self.key.clone(),
            Arc::clone(&self.waiters),
        ));
        let pending = PendingLease::new(&offer.resource, next as Arc<dyn Lease>);
        let start = Instant::now();
        let (handed, value): (i64, i64) = LOCK_HANDOVER
            .call()
            .key(&self.key)
            .companion(&self.key, FENCE_SUFFIX)
            .arg(token)
            .arg(pending.token())
            .arg(duration_millis(offer.config.ttl))
            .arg(handover.fencing.handover_arg())
            .invoke(&self.redis)
            .await?;
        if handed != 1 {
            drop(pending.settle());
            return Ok(false);
        }
        let fence = u64::try_from(value)
            .map_err(|_| Error::unexpected_reply(format!("fencing counter {value}")))?;
        let (lease, token) = pending.settle();
        let guard = LockGuard::new(
            &offer.resource,
            token,
            fence,
            start,
            &offer.config,
            lease,
            Arc::clone(&handover.metrics),
        );
        // A waiter that gave up meanwhile drops the guard, which gives the lock back.
        drop(offer.guard.send(guard));
        Ok(true)
    }
}

impl Lease for LockLease {
    fn extend<'a>(&'a self, token: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let n: i64 = EXTEND
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
            let open = match self.waiters.release_turn(self.key.as_str()) {
                ReleaseTurn::HandOver(offer) => return self.hand_over(token, offer).await,
                ReleaseTurn::Release => false,
                ReleaseTurn::Open => true,
            };
            let n: i64 = LOCK_RELEASE
                .call()
                .key(&self.key)
                .companion(&self.key, WAITERS_SUFFIX)
                .arg(token)
                .arg(self.waiters.channel())
                .invoke(&self.redis)
                .await?;
            // Published (n == 2) after a run of hand-overs: the message wakes the waiters here
            // as everywhere else.
            if n > 0 && !(open && n == 2) {
                self.waiters.released_here(self.key.as_str(), n == 2);
            }
            Ok(n > 0)
        })
    }

    fn topology(&self) -> Option<TopologyWatch> {
        Some(self.redis.topology_watch_since(self.epoch))
    }
}
