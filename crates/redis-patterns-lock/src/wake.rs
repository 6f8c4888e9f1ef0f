//! Wake-ups for `Lock::acquire` calls that wait: instead of sleeping out a backoff, a waiter is
//! woken when the lock is released.
//!
//! - An attempt that finds the lock held and will wait marks the resource (a waiters key with a
//!   TTL, in the acquire script itself). A release that deletes a marked lock publishes the lock
//!   key on the lock's channel (`<prefix>:lock:released`), in the release script itself.
//! - Each [`Lock`](crate::Lock) (and its clones) subscribes to that channel once, on a
//!   connection of its own, the first time one of its `acquire` calls waits; a message wakes one
//!   of this process's waiters on that key.
//! - A release by a guard of the same `Lock` wakes one local waiter at once, without waiting for
//!   its own message (which is then skipped).
//! - A waiter of the same `Lock` that found the lock held offers to take it over (its place in
//!   a queue, kept until it is served or gives up): a release by a guard of that `Lock` then
//!   hands the lock straight to it ([`LOCK_HANDOVER`]: owner checked, the waiter's token
//!   written, the fence moved on), one round trip instead of a release and an acquire. Waiters of this process are served first that way; waiters elsewhere get the lock
//!   when no local waiter is ready. Not with `replica_ack` (the grant must wait for a replica).
//! - Nothing is lost if a message is: waiters still retry on their backoff and at the end of the
//!   holder's lease, as before; notifications only make the hand-over early.
//! - After a failover the subscription follows the new master: reconnects pause on a
//!   [`TopologyBackoff`] (back to its minimum, and cut short, when the topology changes), and a
//!   single-server subscription is renewed on every topology change.
//!
//! [`LOCK_HANDOVER`]: crate::scripts::LOCK_HANDOVER

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use redis_core::{
    Backoff, Endpoint, Redis, TopologyBackoff,
    redis::{self, ProtocolVersion, PushInfo, PushKind, Value, aio::ConnectionLike},
};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::{config::LeaseConfig, fencing::Fencing, guard::LockGuard, metrics::Metrics};

/// Time-out for connecting and subscribing the notification connection, and for its health check.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the notification connection is checked.
const HEALTH_CHECK: Duration = Duration::from_secs(5);
/// Pauses between reconnects of the notification connection; they restart from the minimum when
/// the topology changes.
const RECONNECT: Backoff = Backoff::clamped(Duration::from_millis(100), Duration::from_secs(2));

/// The waiters of one [`Lock`](crate::Lock) (shared by its clones and its guards) and its
/// notification subscription.
#[derive(Debug)]
pub(crate) struct Waiters {
    redis: Redis,
    channel: String,
    waiting: WaitList,
    /// Hand-overs to local waiters: how to make their fence and guards; `None` when off.
    handover: Option<HandOver>,
    started: AtomicBool,
    /// Dropped with the last `Lock` clone: stops the subscriber task.
    _stop: oneshot::Sender<()>,
    stopped: Mutex<Option<oneshot::Receiver<()>>>,
}

/// What a release needs to hand a lock over to a local waiter.
#[derive(Debug)]
pub(crate) struct HandOver {
    pub(crate) fencing: Fencing,
    pub(crate) metrics: Arc<Metrics>,
}

/// A pausing waiter's offer to take the lock over: where to send the guard, and its settings.
#[derive(Debug)]
pub(crate) struct Offer {
    pub(crate) guard: oneshot::Sender<LockGuard>,
    pub(crate) resource: Arc<str>,
    pub(crate) config: LeaseConfig,
}

/// The keys local `acquire` calls wait for, with a count of them that a release reads without
/// taking the lock (every lock of a `Lock` shares one list). A release that reads 0 while a waiter
/// registers is as if it came first: the waiter's next attempt, made after it registered, sees the
/// lock free or marks it for the release's message.
#[derive(Debug, Default)]
struct WaitList {
    entries: Mutex<HashMap<String, Entry>>,
    /// How many keys `entries` holds, written under its lock.
    keys: AtomicUsize,
}

impl WaitList {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        lock(&self.entries)
    }

    /// Registers one more waiter on `key`; returns its wake-up signal.
    fn enter(&self, key: &str) -> Arc<Notify> {
        let mut entries = self.lock();
        let entry = entries.entry(key.to_owned()).or_default();
        entry.count += 1;
        let notify = Arc::clone(&entry.notify);
        self.keys.store(entries.len(), Ordering::Release);
        notify
    }

    /// Deregisters one waiter on `key`.
    fn leave(&self, key: &str) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(key) {
            entry.count -= 1;
            if entry.count == 0 {
                entries.remove(key);
                self.keys.store(entries.len(), Ordering::Release);
            }
        }
    }

    /// Whether anyone waits for any key, without taking the lock.
    fn any(&self) -> bool {
        self.keys.load(Ordering::Acquire) > 0
    }

    /// A release of `key` by this process: wakes one waiter on it, if any. `published`: the
    /// release's message will come back, and is then skipped.
    fn wake_one(&self, key: &str, published: bool) {
        if !self.any() {
            return;
        }
        if let Some(entry) = self.lock().get_mut(key) {
            entry.notify.notify_one();
            entry.handoff = true;
            if published {
                entry.skip += 1;
            }
        }
    }
}

#[derive(Debug, Default)]
struct Entry {
    notify: Arc<Notify>,
    /// Waiting `acquire` calls of this process on the key.
    count: usize,
    /// Local releases that woke a waiter and published too: their messages are skipped.
    skip: usize,
    /// A local release woke a waiter whose attempt has not answered yet: a newly arriving
    /// `acquire` queues behind it instead of racing it.
    handoff: bool,
    /// Offers of pausing waiters, oldest first (some may be withdrawn: their receiver is gone).
    offers: VecDeque<Offer>,
    /// Hand-overs in a row since a release last went through the server's channel.
    streak: u32,
}

/// How a release by this process goes (see [`Waiters::release_turn`]).
#[derive(Debug)]
pub(crate) enum ReleaseTurn {
    /// Straight to a local waiter, in one script.
    HandOver(Offer),
    /// An ordinary release that wakes one local waiter at once.
    Release,
    /// An ordinary release after [`MAX_HANDOVERS_IN_A_ROW`]: when it is published, the message
    /// wakes this process's waiters as it wakes everyone else's, so all race on equal terms.
    Open,
}

/// Most local hand-overs in a row: the next release is an ordinary one (published, every waiter
/// of every process may take the lock), so waiters of other processes are not starved while this
/// one has waiters of its own.
pub(crate) const MAX_HANDOVERS_IN_A_ROW: u32 = 8;

impl Waiters {
    pub(crate) fn new(redis: Redis, channel: String, handover: Option<HandOver>) -> Arc<Self> {
        let (stop, stopped) = oneshot::channel();
        Arc::new(Self {
            redis,
            channel,
            waiting: WaitList::default(),
            handover,
            started: AtomicBool::new(false),
            _stop: stop,
            stopped: Mutex::new(Some(stopped)),
        })
    }

    /// The channel releases publish on.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// Registers a waiter on `resource`, whose lock key is `key`, until the returned value is
    /// dropped.
    pub(crate) fn enter(self: &Arc<Self>, resource: &str, key: &str) -> Waiter {
        let notify = self.waiting.enter(key);
        Waiter {
            waiters: Arc::clone(self),
            resource: resource.into(),
            key: key.to_owned(),
            notify,
        }
    }

    /// How to hand a lock over to a local waiter; `None` when hand-overs are off.
    pub(crate) fn handover(&self) -> Option<&HandOver> {
        self.handover.as_ref()
    }

    /// How a release of `key` by this process goes: to the oldest standing offer, if any (a
    /// newly arriving `acquire` then queues behind the waiter the lock goes to, as after a
    /// wake-up), unless [`MAX_HANDOVERS_IN_A_ROW`] were just made: that release is an open one.
    pub(crate) fn release_turn(&self, key: &str) -> ReleaseTurn {
        if self.handover.is_none() || !self.waiting.any() {
            return ReleaseTurn::Release;
        }
        let mut waiting = self.waiting.lock();
        let Some(entry) = waiting.get_mut(key) else {
            return ReleaseTurn::Release;
        };
        if entry.streak >= MAX_HANDOVERS_IN_A_ROW {
            entry.streak = 0;
            // An `acquire` of this process arriving now queues too: it must not win the race
            // before the message reaches anyone.
            entry.handoff = true;
            return ReleaseTurn::Open;
        }
        while let Some(offer) = entry.offers.pop_front() {
            if !offer.guard.is_closed() {
                entry.handoff = true;
                entry.streak += 1;
                return ReleaseTurn::HandOver(offer);
            }
        }
        entry.streak = 0;
        ReleaseTurn::Release
    }

    /// A release of `key` by this process: wakes one local waiter. `published` says the release
    /// also published (its message will come back and is skipped when a waiter was woken here).
    pub(crate) fn released_here(&self, key: &str, published: bool) {
        self.waiting.wake_one(key, published);
    }

    /// A release message for `key`.
    fn released_elsewhere(&self, key: &str) {
        if let Some(entry) = self.waiting.lock().get_mut(key) {
            if entry.skip > 0 {
                entry.skip -= 1;
            } else {
                entry.notify.notify_one();
            }
        }
    }

    /// Starts the subscriber task, once (the first time a waiter finds the lock held).
    pub(crate) fn subscribe(self: &Arc<Self>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(stopped) = lock(&self.stopped).take() else {
            return;
        };
        self.started.store(true, Ordering::Release);
        runtime.spawn(subscriber(Arc::downgrade(self), stopped));
    }
}

/// One waiting `acquire` call on a key; deregisters when dropped.
#[derive(Debug)]
pub(crate) struct Waiter {
    waiters: Arc<Waiters>,
    resource: Arc<str>,
    key: String,
    notify: Arc<Notify>,
}

impl Waiter {
    /// The wake-up signal: create (and `enable`) a `notified()` future before each attempt.
    pub(crate) fn notify(&self) -> &Notify {
        &self.notify
    }

    /// Found held: from now on releases should reach this process.
    pub(crate) fn subscribe(&self) {
        self.waiters.subscribe();
    }

    /// Offers to take the lock over (see [`Waiters::release_turn`]), queued behind earlier offers:
    /// the guard arrives on the returned receiver. `None` when hand-overs are off. Dropping the
    /// receiver withdraws the offer; a guard handed over to a withdrawn offer is released in the
    /// background.
    pub(crate) fn offer(&self, config: &LeaseConfig) -> Option<oneshot::Receiver<LockGuard>> {
        self.waiters.handover.as_ref()?;
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.waiters.waiting.lock();
        let entry = waiting.get_mut(&self.key)?;
        entry.offers.retain(|o| !o.guard.is_closed());
        entry.offers.push_back(Offer {
            guard: tx,
            resource: Arc::clone(&self.resource),
            config: config.clone(),
        });
        Some(rx)
    }

    /// True when a local release just woke another waiter on this key: a newly arriving call
    /// waits its turn (it is woken by the next release) instead of racing that waiter.
    pub(crate) fn handoff_pending(&self) -> bool {
        self.waiters
            .waiting
            .lock()
            .get(&self.key)
            .is_some_and(|e| e.handoff)
    }

    /// An attempt on this key answered: a woken waiter has had its turn.
    pub(crate) fn attempted(&self) {
        if let Some(entry) = self.waiters.waiting.lock().get_mut(&self.key) {
            entry.handoff = false;
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.waiters.waiting.leave(&self.key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The notification connection of one `Lock`.
enum Conn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    /// A health check: a connection that stopped answering is replaced.
    async fn ping(&mut self) -> bool {
        let cmd = redis::cmd("PING");
        let reply = match self {
            Self::Single(c) => c.req_packed_command(&cmd).await,
            Self::Cluster(c) => c.req_packed_command(&cmd).await,
        };
        reply.is_ok_and(|v| v.extract_error().is_ok())
    }
}

/// Opens a RESP3 connection whose pushes go to `tx` and subscribes to `channel`. On a cluster a
/// plain (not sharded) channel: a release on any master reaches subscribers on every node.
async fn connect(
    redis: &Redis,
    channel: &str,
    tx: mpsc::UnboundedSender<PushInfo>,
) -> redis_core::Result<Conn> {
    match redis.endpoint().await? {
        Endpoint::Single(client) => {
            let mut conn =
                redis_core::connect_with_pushes(client.get_connection_info(), tx, CONNECT_TIMEOUT)
                    .await?;
            conn.subscribe(channel).await?;
            Ok(Conn::Single(conn))
        }
        Endpoint::Cluster { nodes, .. } => {
            let client = redis::cluster::ClusterClient::builder(nodes)
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(tx)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(CONNECT_TIMEOUT)
                .build()?;
            let mut conn = client.get_async_connection().await?;
            conn.subscribe(channel).await?;
            Ok(Conn::Cluster(conn))
        }
        _ => Err(redis_core::Error::Unsupported(
            "lock wake-ups need pub/sub on this endpoint",
        )),
    }
}

/// Subscribes, wakes waiters on every message, reconnects after a loss; ends when the `Lock` and
/// all its clones are gone, or when the backend has no pub/sub (waiters then poll, as before).
async fn subscriber(waiters: Weak<Waiters>, mut stopped: oneshot::Receiver<()>) {
    let Some(this) = waiters.upgrade() else {
        return;
    };
    let (redis, channel) = (this.redis.clone(), this.channel.clone());
    drop(this);
    let mut topology = redis.topology_watch();
    let mut backoff = TopologyBackoff::new(RECONNECT, topology.clone());
    loop {
        if waiters.strong_count() == 0 {
            return;
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Changes before this connection are seen: it reaches the master named now.
        topology.mark_seen();
        let connected = tokio::select! {
            _ = &mut stopped => return,
            c = connect(&redis, &channel, tx) => c,
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(redis_core::Error::Unsupported(what)) => {
                tracing::debug!(what, "no lock wake-ups: waiters poll");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, attempt = backoff.attempt(), "lock wake-up subscription failed");
                tokio::select! {
                    _ = &mut stopped => return,
                    () = backoff.wait() => continue,
                }
            }
        };
        backoff.reset();
        // A cluster client follows slot moves and resubscribes by itself; a single connection
        // (a server, or the master named by Sentinel) is renewed when the topology changes.
        let single = matches!(conn, Conn::Single(_));
        let mut health = tokio::time::interval(HEALTH_CHECK);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.tick().await;
        loop {
            let push = tokio::select! {
                _ = &mut stopped => return,
                push = rx.recv() => push,
                _ = topology.changed(), if single => break,
                _ = health.tick() => {
                    match tokio::time::timeout(CONNECT_TIMEOUT, conn.ping()).await {
                        Ok(true) => continue,
                        _ => break,
                    }
                }
            };
            let Some(push) = push else { break };
            match push.kind {
                PushKind::Message => {
                    if let (Some(key), Some(this)) = (message_key(push.data), waiters.upgrade()) {
                        this.released_elsewhere(&key);
                    }
                }
                PushKind::Disconnection if single => break,
                _ => {}
            }
        }
        tracing::debug!("lock wake-up connection lost or topology changed; resubscribing");
    }
}

/// The payload (a lock key) of a `message` push: `[channel, payload]`.
fn message_key(data: Vec<Value>) -> Option<String> {
    match data.into_iter().nth(1)? {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_payloads_are_lock_keys() {
        let data = vec![
            Value::BulkString(b"app:lock:released".to_vec()),
            Value::BulkString(b"app:lock:{job}".to_vec()),
        ];
        assert_eq!(message_key(data).as_deref(), Some("app:lock:{job}"));
        assert_eq!(message_key(vec![Value::Nil]), None);
        assert_eq!(
            message_key(vec![Value::Nil, Value::BulkString(vec![0xff])]),
            None
        );
    }

    #[tokio::test]
    async fn releases_look_for_waiters_only_while_there_are_some() {
        let list = WaitList::default();
        assert!(!list.any());
        let (_a, b) = (list.enter("k1"), list.enter("k1"));
        list.enter("k2");
        assert!(list.any());
        list.leave("k1");
        list.leave("k2");
        assert!(list.any(), "k1 still has a waiter");
        // A release of a key someone waits for wakes that waiter.
        list.wake_one("k1", false);
        tokio::time::timeout(Duration::from_secs(10), b.notified())
            .await
            .expect("the waiter is woken");
        list.leave("k1");
        assert!(!list.any());
        assert!(list.lock().is_empty());
    }
}
