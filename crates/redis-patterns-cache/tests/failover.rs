//! The cache through a Sentinel failover, a Cluster failover and a live slot migration, under
//! concurrent load: `get_or_load` (plain and tagged), `get`, every kind of write, tagged sets and
//! tag invalidations on one cache; a near cache reading what another process's cache writes.
//!
//! What holds by design and is asserted: every value read is whole (loaded or written, never
//! mixed); no read returns a version older than a write acknowledged on the master of the time,
//! nor an entry older than an acknowledged invalidation of its tag (generation and tag fencing);
//! no caller sees a redirect, `TRYAGAIN` or `CROSSSLOT`, every error is typed and retryable, no
//! call takes longer than [`CALL_BOUND`](support::failover::CALL_BOUND); loads coalesce again
//! after the switch (one load for callers on two processes); a migration shows callers no error
//! at all. The near cache tracks the new master within about a second of it answering, and a
//! remote write evicts its copy within [`NEAR_LAG`] of the switch.
//!
//! What cannot hold and is counted: a write acknowledged by a master that dies before
//! replicating it is lost, and reads return the version before it until the next write.

use std::time::{Duration, Instant};

use redis_cache::Cache;
use redis_core::{KeySpace, Redis};
use redis_test_support::{MigrateOptions, TestCluster, TestSentinel, wait_for, wait_until};

mod support;

use support::failover::{Caches, Item, Load, NEAR, NEAR_LAG, PLAIN, TAG, coalesced_loads, patient};

/// A short node time-out so a killed master's replica takes over within seconds.
const NODE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How soon after the new master answers the near cache must track it again.
const TRACK_RESUME: Duration = Duration::from_secs(1);
/// Successful calls to wait for before a switch and after it.
const CALLS: usize = 300;

fn keys() -> KeySpace {
    KeySpace::new("fo").unwrap()
}

/// Whether `cache`'s near cache tracks.
fn tracking(cache: &Cache) -> bool {
    cache.near_cache_stats().unwrap().tracking
}

/// Writes `version` of `name` through `other`, retrying while the deployment settles.
async fn write_probe(caches: &Caches, name: &str, version: u64) -> Instant {
    let item = Item::new(name, version, 0);
    wait_for("a write of the probe", Duration::from_secs(20), || async {
        caches
            .other
            .set(name, &item)
            .await
            .ok()
            .map(|()| Instant::now())
    })
    .await
}

/// After a switch: the probe's near cache holds `name` (a hit without a round trip), then a
/// write through the other process evicts it. Returns how long after `switched` the probe
/// tracked again, and how long the eviction took after the write was acknowledged.
async fn probe_after_switch(
    caches: &Caches,
    name: &str,
    switched: Instant,
) -> (Duration, Duration) {
    wait_until(
        "near cache tracking after the switch",
        Duration::from_secs(20),
        || async { tracking(&caches.probe) },
    )
    .await;
    let resumed = switched.elapsed();
    write_probe(caches, name, 10).await;
    // A fill can be refused by the push of that write arriving late: read until one is held.
    wait_until(
        "the probe's entry held near",
        Duration::from_secs(10),
        || async {
            let hits = caches.probe.near_cache_stats().unwrap().hits;
            let first = caches.probe.get::<Item>(name).await.unwrap();
            let second = caches.probe.get::<Item>(name).await.unwrap();
            first.is_some_and(|i| i.version == 10)
                && second.is_some_and(|i| i.version == 10)
                && caches.probe.near_cache_stats().unwrap().hits > hits
        },
    )
    .await;
    let written = write_probe(caches, name, 11).await;
    wait_until("a remote write evicts the near entry", NEAR_LAG, || async {
        let read = caches.probe.get::<Item>(name).await.unwrap();
        read.is_some_and(|i| i.version == 11)
    })
    .await;
    (resumed, written.elapsed())
}

/// The checks after any switch: loads coalesce, the near cache followed.
async fn after_switch(caches: &Caches, redis: &Redis, other: &Redis, what: &str) {
    let (a, b) = patient(redis, other, &keys());
    let loads = coalesced_loads(&a, &b, &format!("cold-{what}")).await;
    assert_eq!(loads, 1, "{what}: callers on two processes share one load");
    wait_until("the loaded near cache tracks", TRACK_RESUME, || async {
        tracking(&caches.near)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_kill() {
    let mut group = TestSentinel::spawn();
    let (redis, other) = (group.redis().await, group.redis().await);
    let caches = Caches::new(&redis, &other, &keys());
    caches.tracking().await;
    let load = Load::start(&caches);
    load.succeeds(CALLS, "load before the kill").await;
    let event = Instant::now();
    let switch = group.kill_master_and_wait_switch().await;
    let switched = Instant::now();
    let (resumed, evicted) = probe_after_switch(&caches, "probe", switched).await;
    let settled = Instant::now();
    load.recovers(CALLS, settled, "load after the switch").await;
    after_switch(&caches, &redis, &other, "sentinel").await;
    let (window, _) = load
        .stop("sentinel master kill", event, settled, event)
        .await;
    eprintln!(
        "sentinel: :{} killed, +switch-master to :{} after {:?}; near cache tracking again \
         {resumed:?} after it, a remote write evicted in {evicted:?}; errors for {:?}",
        switch.old, switch.new, switch.took, window.errors_for
    );
    assert!(
        resumed < TRACK_RESUME,
        "the near cache tracks the new master within about a second: {resumed:?}"
    );
}

/// A name of an entry on the same master as `PLAIN[0]`, for the probe.
async fn probe_beside(cluster: &mut TestCluster, cache: &Cache) -> String {
    let owner = cluster.owner_of(cache.key(PLAIN[0]).unwrap().slot()).await;
    for i in 0.. {
        let name = format!("probe-{i}");
        if owner.serves(cache.key(&name).unwrap().slot()) {
            return name;
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_kill() {
    let mut cluster = TestCluster::spawn_with_node_timeout(3, 1, NODE_TIMEOUT);
    let (redis, other) = (cluster.redis().await, cluster.redis().await);
    let caches = Caches::new(&redis, &other, &keys());
    caches.tracking().await;
    let probe = probe_beside(&mut cluster, &caches.main).await;
    let load = Load::start(&caches);
    load.succeeds(CALLS, "load before the kill").await;
    let event = Instant::now();
    let promotion = cluster
        .kill_master_of(caches.main.key(PLAIN[0]).unwrap().as_str().as_bytes())
        .await;
    let promoted = Instant::now();
    let (resumed, evicted) = probe_after_switch(&caches, &probe, promoted).await;
    let settled = Instant::now();
    load.recovers(CALLS, settled, "load after the promotion")
        .await;
    after_switch(&caches, &redis, &other, "cluster").await;
    let (window, _) = load
        .stop("cluster master kill", event, settled, event)
        .await;
    eprintln!(
        "cluster: :{} killed, :{} promoted after {:?}; near cache tracking again {resumed:?} \
         after it, a remote write evicted in {evicted:?}; errors for {:?}",
        promotion.killed, promotion.promoted, promotion.took, window.errors_for
    );
    assert!(
        resumed < TRACK_RESUME,
        "the near cache tracks the promoted replica within about a second: {resumed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_slot_migration() {
    let mut cluster = TestCluster::spawn_with_node_timeout(3, 0, NODE_TIMEOUT);
    let (redis, other) = (cluster.redis().await, cluster.redis().await);
    let caches = Caches::new(&redis, &other, &keys());
    caches.tracking().await;
    // The slots of an entry, of the tag's version and of a near-cached entry; each with keys
    // besides the cache's own, so it stays split for a while.
    let moved = [
        caches.main.key(PLAIN[0]).unwrap(),
        caches.main.tag_key(TAG).unwrap(),
        caches.main.key(NEAR[0]).unwrap(),
    ];
    for key in &moved {
        let tag = key
            .as_str()
            .split_once('{')
            .unwrap()
            .1
            .split_once('}')
            .unwrap()
            .0;
        cluster.fill_slot(&format!("{{{tag}}}"), 40).await;
    }
    let start = Instant::now();
    let load = Load::start(&caches);
    load.succeeds(CALLS, "load before the migrations").await;
    let event = Instant::now();
    for key in &moved {
        let key = key.as_str().as_bytes();
        let (there, back) = cluster
            .migrate_slot_there_and_back(key, MigrateOptions::default())
            .await;
        assert!(there.keys >= 40, "the migration moved the slot's keys");
        eprintln!(
            "slot {} moved :{} -> :{} ({} keys, {:?}) and back ({} keys, {:?})",
            there.slot, there.from, there.to, there.keys, there.took, back.keys, back.took
        );
    }
    let migrated = Instant::now();
    let (resumed, evicted) = probe_after_switch(&caches, "probe", migrated).await;
    let settled = Instant::now();
    load.recovers(CALLS, settled, "load after the migrations")
        .await;
    after_switch(&caches, &redis, &other, "migration").await;
    let (window, verdict) = load
        .stop("live slot migration", event, settled, start)
        .await;
    eprintln!(
        "migration: near cache tracking {resumed:?} after the last move, a remote write \
         evicted in {evicted:?}"
    );
    assert_eq!(window.failed, 0, "a migration is invisible to callers");
    assert_eq!(verdict.behind_lost, 0, "a migration loses no write");
}
