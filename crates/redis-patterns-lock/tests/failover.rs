//! The lock and the semaphore through a Sentinel failover, a Cluster failover and a live slot
//! migration, under load from several tasks (acquire with a wait, work, release; see
//! `support/failover.rs`).
//!
//! What holds by design and is asserted: every error is typed and retryable, no call hangs, no
//! caller sees a redirect; every `acquire` returns within its wait + `WAIT_MARGIN` (plus slack
//! for a loaded machine); a slot migration costs nothing (no error, no overlap, no fence
//! regression, no lost lease); clock-based fences never go back. What a master kill can cost by
//! design (replication is asynchronous) is counted and printed: overlaps caused by a grant lost
//! with the old master, regressions of the fencing counter, leases found lost. The watchdog
//! re-checks every lease on a topology change, and release wake-ups resume after a switch.

mod support;

use std::time::{Duration, Instant};

use redis_core::{Backoff, KeySpace, Redis, redis};
use redis_lock::{AcquireOptions, Lock};
use redis_test_support::{
    MigrateOptions, TestCluster, TestSentinel, TestServer, wait_for, wait_until,
};
use support::failover::{Load, SLACK};

/// Leases of the load (kept by the watchdog).
const TTL: Duration = Duration::from_secs(2);
/// How long an `acquire` of the load waits.
const WAIT: Duration = Duration::from_millis(1500);
/// A short node time-out so a killed master's replica takes over within seconds.
const NODE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How soon after a switch a lease re-check and the wake-up subscription must have happened.
const PROMPT: Duration = Duration::from_secs(1);

/// Flushes every live node's script cache, so scripts take the `NOSCRIPT` path during the switch.
fn flush_scripts(cluster: &mut TestCluster) {
    for node in cluster.nodes() {
        if node.is_running() {
            let _: redis::RedisResult<()> = node.cmd(redis::cmd("SCRIPT").arg("FLUSH"));
        }
    }
}

/// Pauses writes on `master` (scripts then hang in flight) and waits until an `acquire` of the
/// load has run into its deadline with its attempt unanswered: the master is "dying" before it
/// is killed. The pause lasts until the kill.
async fn stall(load: &Load, master: &TestServer) {
    let before = load.deadlines();
    let () = master
        .cmd(redis::cmd("CLIENT").arg("PAUSE").arg(30_000).arg("WRITE"))
        .unwrap();
    wait_until(
        "an acquire cut at its deadline while its attempt hangs",
        Duration::from_secs(10),
        || async { load.deadlines() > before },
    )
    .await;
}

/// A holder and a waiter that are separate `Lock`s: a release reaches the waiter only through
/// its subscription, and the waiter's own retries are at least 1.5 s apart.
struct Handover {
    redis: Redis,
    holder: Lock,
    waiter: Lock,
    channel: String,
}

const HANDOVER: &str = "handover";

impl Handover {
    fn new(redis: &Redis) -> Self {
        let keys = KeySpace::new("fo-hand").unwrap();
        let lock = |retry| {
            Lock::builder(redis.clone(), &keys)
                .ttl(Duration::from_secs(10))
                .retry_delay(retry)
                .build()
                .unwrap()
        };
        Self {
            redis: redis.clone(),
            holder: lock(Backoff::default()),
            waiter: lock(Backoff::clamped(
                Duration::from_secs(3),
                Duration::from_secs(5),
            )),
            channel: "fo-hand:lock:released".to_owned(),
        }
    }

    /// Subscriptions to the release channel on the current master.
    async fn subscribers(&self) -> i64 {
        let reply: redis_core::Result<(String, i64)> = self
            .redis
            .query(redis::cmd("PUBSUB").arg("NUMSUB").arg(&self.channel))
            .await;
        reply.map_or(0, |(_, n)| n)
    }

    /// The holder takes the lock, the waiter waits for it (subscribed, marked on the server),
    /// the holder releases: how long until the waiter holds it.
    async fn measure(&self) -> Duration {
        let options = AcquireOptions::new().wait(Duration::from_secs(10));
        let held = self
            .holder
            .acquire_with_options(HANDOVER, &options)
            .await
            .unwrap();
        let marker = format!("{}:waiters", self.holder.key(HANDOVER).unwrap().as_str());
        let _: i64 = self
            .redis
            .query(redis::cmd("DEL").arg(&marker))
            .await
            .unwrap();
        let waiting = {
            let (waiter, options) = (self.waiter.clone(), options.clone());
            tokio::spawn(async move {
                let guard = waiter.acquire_with_options(HANDOVER, &options).await;
                (Instant::now(), guard)
            })
        };
        wait_until(
            "the waiter marks the lock",
            Duration::from_secs(5),
            || async {
                let n: redis_core::Result<i64> =
                    self.redis.query(redis::cmd("EXISTS").arg(&marker)).await;
                n.is_ok_and(|n| n == 1)
            },
        )
        .await;
        wait_until("the waiter subscribes", Duration::from_secs(5), || async {
            self.subscribers().await >= 1
        })
        .await;
        let released = Instant::now();
        held.release().await.unwrap();
        let (got, guard) = waiting.await.unwrap();
        guard.unwrap().release().await.unwrap();
        got - released
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_kill() {
    let mut group = TestSentinel::spawn();
    let redis = group.redis().await;
    let handover = Handover::new(&redis);
    let before = handover.measure().await;
    let load = Load::start(&redis, "fo-sen", TTL, WAIT);
    load.succeeds(100, "load before the kill").await;

    // A grant the promoted replica will not have: taken, replicated, then deleted on the replica
    // alone (a writable replica keeps its own writes to itself).
    let doomed_lock = Lock::builder(redis.clone(), &KeySpace::new("fo-doomed").unwrap())
        .ttl(Duration::from_secs(30))
        .auto_extend(true)
        .build()
        .unwrap();
    let doomed = doomed_lock.acquire("doomed").await.unwrap();
    let key = doomed_lock.key("doomed").unwrap();
    let exists = |on: &TestServer| {
        on.cmd::<i64>(redis::cmd("EXISTS").arg(key.as_str()))
            .unwrap()
    };
    wait_until(
        "the grant reaches the replica",
        Duration::from_secs(5),
        || {
            let replicated = exists(group.replica()) == 1;
            async move { replicated }
        },
    )
    .await;
    let replica = group.replica();
    let () = replica
        .cmd(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("replica-read-only")
                .arg("no"),
        )
        .unwrap();
    let _: i64 = replica.cmd(redis::cmd("DEL").arg(key.as_str())).unwrap();
    assert_eq!(exists(group.replica()), 0);
    assert_eq!(exists(group.master()), 1, "the master still has the grant");

    stall(&load, group.master()).await;
    let event = Instant::now();
    let switch = group.kill_master_and_wait_switch().await;
    let switched = Instant::now();

    // A rival takes the resource on the new master at once; the holder of the lost grant learns
    // it at the switch (its watchdog re-checks), not at its next renewal 10 s later.
    let rival = {
        let lock = doomed_lock.clone();
        tokio::spawn(async move {
            let options = AcquireOptions::new().wait(Duration::from_secs(5));
            let guard = lock.acquire_with_options("doomed", &options).await;
            (Instant::now(), guard)
        })
    };
    tokio::time::timeout(Duration::from_secs(5), doomed.lost())
        .await
        .expect("a grant the new master does not have is found lost");
    let lost_at = Instant::now();
    let lost_after = lost_at - switched;
    assert!(doomed.is_lost());
    assert!(doomed.release().await.unwrap_err().is_lost());
    let (granted, rival) = rival.await.unwrap();
    rival.unwrap().release().await.unwrap();
    let overlap = lost_at.saturating_duration_since(granted);

    // Wake-ups: the waiter's subscription follows the new master, and a release wakes it.
    let resubscribed = wait_for(
        "the waiter resubscribes",
        Duration::from_secs(5),
        || async { (handover.subscribers().await >= 1).then(Instant::now) },
    )
    .await
    .saturating_duration_since(switched);
    let after = handover.measure().await;
    let settled = Instant::now();
    load.succeeds(100, "load after the switch").await;
    let tally = load.stop("sentinel master kill", event, settled).await;
    eprintln!(
        "sentinel: :{} killed, +switch-master to :{} after {:?}; the deleted grant was found lost \
         {lost_after:?} after it (a rival held it meanwhile for {overlap:?}); wake-ups resubscribed after {resubscribed:?}; hand-over {before:?} \
         before the switch, {after:?} after it",
        switch.old, switch.new, switch.took
    );
    assert!(
        lost_after < PROMPT,
        "found lost {lost_after:?} after the switch"
    );
    assert!(
        overlap < PROMPT,
        "the lost grant overlapped a rival for {overlap:?}"
    );
    assert!(
        resubscribed < PROMPT,
        "resubscribed {resubscribed:?} after the switch"
    );
    for (when, took) in [("before", before), ("after", after)] {
        assert!(took < PROMPT, "hand-over {when} the switch took {took:?}");
    }
    tally.assert_acquires_bounded("sentinel master kill");
    tally.assert_only_failover_losses("sentinel master kill", event, switched);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_kill() {
    let mut cluster = TestCluster::spawn_with_node_timeout(3, 1, NODE_TIMEOUT);
    let redis = cluster.redis().await;
    let load = Load::start(&redis, "fo-clu", TTL, WAIT);
    let slot_key = load.keys()[0].clone();
    // A lease on the same slot whose next scheduled renewal is 10 s away.
    let kept_lock = Lock::builder(redis.clone(), &KeySpace::new("fo-kept").unwrap())
        .ttl(Duration::from_secs(30))
        .auto_extend(true)
        .build()
        .unwrap();
    let resource = support::failover::RESOURCE;
    let kept = kept_lock.acquire(resource).await.unwrap();
    assert_eq!(
        kept_lock.key(resource).unwrap().slot(),
        redis_core::keys::slot(slot_key.as_bytes())
    );
    load.succeeds(100, "load before the kill").await;
    flush_scripts(&mut cluster);
    let owner = cluster
        .owner_of(redis_core::keys::slot(slot_key.as_bytes()))
        .await
        .port;
    let master = cluster.nodes().iter().find(|n| n.port() == owner).unwrap();
    stall(&load, master).await;
    let epoch = redis.topology_epoch();
    let event = Instant::now();
    let promotion = cluster.kill_master_of(slot_key.as_bytes()).await;
    let settled = Instant::now();
    wait_until(
        "the topology epoch to move after the promotion",
        redis_core::CLUSTER_POLL * 4,
        || async { redis.topology_epoch() > epoch },
    )
    .await;
    let heard = Instant::now();
    // The watchdog renewed at the change: the lease is as long as new (or found lost, had its
    // grant not reached the replica).
    wait_until("the watchdog re-checks the lease", PROMPT, || async {
        kept.is_lost() || kept.remaining() > Duration::from_millis(29_000)
    })
    .await;
    let rechecked = heard.elapsed();
    load.succeeds(100, "load after the promotion").await;
    let tally = load.stop("cluster master kill", event, settled).await;
    eprintln!(
        "cluster: master :{} killed, replica :{} promoted after {:?}; the lease re-checked \
         {rechecked:?} after the epoch moved (kept: {})",
        promotion.killed,
        promotion.promoted,
        promotion.took,
        !kept.is_lost()
    );
    tally.assert_acquires_bounded("cluster master kill");
    tally.assert_only_failover_losses("cluster master kill", event, settled);
    if !kept.is_lost() {
        kept.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_slot_migration() {
    let mut cluster = TestCluster::spawn_with_node_timeout(3, 0, NODE_TIMEOUT);
    let redis = cluster.redis().await;
    // A migration stalls nobody: waits long enough that contention alone never times out.
    let load = Load::start(&redis, "fo-mig", TTL, Duration::from_secs(5));
    let slot_key = load.keys()[0].clone();
    load.succeeds(100, "load before the migration").await;
    flush_scripts(&mut cluster);
    let event = Instant::now();
    // A second in the migrating state: longer than the connection layer sends `TRYAGAIN` again.
    let (there, back) = cluster
        .migrate_slot_there_and_back(
            slot_key.as_bytes(),
            MigrateOptions::default().dwell(Duration::from_secs(1)),
        )
        .await;
    let settled = Instant::now();
    load.succeeds(100, "load after the migrations").await;
    let tally = load.stop("live slot migration", event, settled).await;
    eprintln!(
        "slot {} moved :{} -> :{} ({} keys, {:?}) and back ({} keys, {:?}); acquires within \
         wait + margin + {SLACK:?}",
        there.slot, there.from, there.to, there.keys, there.took, back.keys, back.took
    );
    assert!(there.keys > 0, "the migration moved the resource's keys");
    assert_eq!(
        tally.window.failed, 0,
        "a migration is invisible to callers"
    );
    tally.assert_nothing_lost("live slot migration");
    tally.assert_acquires_bounded("live slot migration");
}
