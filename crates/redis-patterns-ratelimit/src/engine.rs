//! Checks sent through the batch script: one call for many checks, each all or nothing over its
//! limits, and the coalescer that gathers concurrent checks of one process into such calls.
//!
//! Coalescing adds no timer: the first check of an idle coalescer is sent at once; the checks
//! that arrive while a call is in flight queue up and go out together as soon as it returns. On
//! a cluster the queue is split by slot (a script touches one slot), one call per slot, all
//! slots at once; on a single server (or a Sentinel master) the whole queue is one call.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use redis_core::{Key, Redis, TopologyKind};
use tokio::sync::oneshot;

use crate::{
    error::{Error, Result},
    limit::{Algorithm, Limit},
    scripts::{BATCH, batch_code},
};

/// Most checks sent in one call: bounds how long one script holds the server.
pub(crate) const MAX_BATCH: usize = 256;

/// One check: `cost` against every `(key, limit)`, all on the key's slot.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(crate) parts: Vec<(Key, Limit)>,
    pub(crate) cost: u64,
}

impl Check {
    fn slot(&self) -> u16 {
        self.parts.first().map_or(0, |(key, _)| key.slot())
    }
}

/// A script reply for one limit: `{code, remaining, retry_after_us, reset_after_us}`.
pub(crate) type Reply = [i64; 4];

/// Adds `check`'s keys and arguments to a batch call being built.
fn push(keys: &mut Vec<Key>, args: &mut Vec<u64>, check: &Check) {
    args.push(check.parts.len() as u64);
    args.push(check.cost);
    for (key, limit) in &check.parts {
        keys.push(key.clone());
        if limit.algorithm() == Algorithm::SlidingLog {
            keys.push(key.companion("seq"));
        }
        args.extend([
            u64::from(batch_code(limit.algorithm())),
            limit.capacity(),
            limit.period_us(),
            limit.rate(),
        ]);
    }
}

/// Runs `checks` in one script call. `one_slot` says whether the keys must share a slot (a
/// cluster, or an unknown backend); otherwise they may span slots (one server).
pub(crate) async fn run(redis: &Redis, checks: &[&Check], one_slot: bool) -> Result<Vec<Reply>> {
    let mut keys = Vec::new();
    let mut args = vec![checks.len() as u64];
    for check in checks {
        push(&mut keys, &mut args, check);
    }
    let values: Vec<i64> = if one_slot {
        {
            let mut call = BATCH.call();
            for key in &keys {
                call = call.key(key);
            }
            for arg in &args {
                call = call.arg(*arg);
            }
            call.invoke(redis)
        }
        .await?
    } else {
        // One server holds every slot: the keys of many identities in one call are fine there.
        // Through redis-rs directly, since core's call refuses keys of several slots everywhere.
        let mut call = BATCH.inner().prepare_invoke();
        for key in &keys {
            call.key(key.as_str());
        }
        for arg in &args {
            call.arg(*arg);
        }
        call.invoke_async(&mut redis.clone())
            .await
            .map_err(redis_core::Error::from)?
    };
    let limits: usize = checks.iter().map(|c| c.parts.len()).sum();
    if values.len() != 4 * limits {
        return Err(Error::unexpected_reply(&values));
    }
    Ok(values
        .chunks_exact(4)
        .map(|r| [r[0], r[1], r[2], r[3]])
        .collect())
}

/// Whether checks of `redis` must be sent one slot per call.
pub(crate) fn one_slot(redis: &Redis) -> bool {
    !matches!(
        redis.topology(),
        TopologyKind::Standalone | TopologyKind::Sentinel
    )
}

/// A check waiting for the next call.
struct Pending {
    check: Check,
    reply: oneshot::Sender<Result<Vec<Reply>>>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// A driver task is sending; new checks only queue.
    busy: bool,
}

/// Gathers concurrent checks into batch calls. Shared by the clones of one limiter.
pub(crate) struct Coalescer {
    redis: Redis,
    one_slot: bool,
    queue: Mutex<Queue>,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("one_slot", &self.one_slot)
            .finish_non_exhaustive()
    }
}

impl Coalescer {
    pub(crate) fn new(redis: Redis) -> Arc<Self> {
        Arc::new(Self {
            one_slot: one_slot(&redis),
            redis,
            queue: Mutex::new(Queue::default()),
        })
    }

    /// Queues `check` and waits for its replies, one per limit.
    pub(crate) async fn check(self: &Arc<Self>, check: Check) -> Result<Vec<Reply>> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.pending.push(Pending { check, reply: tx });
            !std::mem::replace(&mut queue.busy, true)
        };
        if start {
            tokio::spawn(self.clone().drive());
        }
        rx.await.unwrap_or_else(|_| {
            Err(Error::Core(redis_core::Error::UnexpectedReply(
                "coalesced check dropped without a reply".to_owned(),
            )))
        })
    }

    /// Sends what is queued, again and again, until the queue is empty.
    async fn drive(self: Arc<Self>) {
        loop {
            let batch = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if queue.pending.is_empty() {
                    queue.busy = false;
                    return;
                }
                std::mem::take(&mut queue.pending)
            };
            self.send(batch).await;
        }
    }

    /// One call per slot (all slots at once; one call on a single server), at most
    /// [`MAX_BATCH`] checks each, then every check gets its replies.
    async fn send(self: &Arc<Self>, batch: Vec<Pending>) {
        let groups: Vec<Vec<Pending>> = if self.one_slot {
            let mut by_slot: HashMap<u16, Vec<Pending>> = HashMap::new();
            for pending in batch {
                by_slot
                    .entry(pending.check.slot())
                    .or_default()
                    .push(pending);
            }
            by_slot.into_values().collect()
        } else {
            vec![batch]
        };
        let calls = groups.into_iter().flat_map(|group| {
            let mut chunks = Vec::new();
            let mut group = group.into_iter().peekable();
            while group.peek().is_some() {
                chunks.push(group.by_ref().take(MAX_BATCH).collect::<Vec<_>>());
            }
            chunks
        });
        join_all(calls.map(|chunk| {
            let this = self.clone();
            async move { this.answer(chunk).await }
        }))
        .await;
    }

    async fn answer(&self, chunk: Vec<Pending>) {
        let checks: Vec<&Check> = chunk.iter().map(|p| &p.check).collect();
        match run(&self.redis, &checks, self.one_slot).await {
            Ok(replies) => {
                let mut replies = replies.into_iter();
                for pending in chunk {
                    let mine = replies.by_ref().take(pending.check.parts.len()).collect();
                    let _ = pending.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                for pending in chunk {
                    let _ = pending.reply.send(Err(replicate(&e)));
                }
            }
        }
    }
}

/// Runs futures concurrently and waits for all (no dependency beyond tokio).
async fn join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let mut set = tokio::task::JoinSet::new();
    let mut futures = futures.peekable();
    let Some(first) = futures.next() else {
        return;
    };
    if futures.peek().is_none() {
        // The usual case: one call, awaited right here.
        return first.await;
    }
    set.spawn(first);
    for future in futures {
        set.spawn(future);
    }
    while set.join_next().await.is_some() {}
}

/// The same error for every check of a failed call.
fn replicate(e: &Error) -> Error {
    use redis_core::Error as Core;
    match e {
        Error::Core(core) => Error::Core(match core {
            Core::Redis(e) => Core::Redis(e.clone()),
            Core::Timeout(d) => Core::Timeout(*d),
            Core::PoolTimeout(d) => Core::PoolTimeout(*d),
            Core::CrossSlot(s) => Core::CrossSlot(s.clone()),
            Core::UnexpectedReply(s) => Core::UnexpectedReply(s.clone()),
            Core::InvalidKey(k) => Core::InvalidKey(k.clone()),
            other => Core::UnexpectedReply(other.to_string()),
        }),
        Error::InvalidConfig(s) => Error::InvalidConfig(s.clone()),
        Error::InvalidArgument(s) => Error::InvalidArgument(s),
    }
}
