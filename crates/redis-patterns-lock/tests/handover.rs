//! Waiting `acquire` calls are woken by the release: in another process (a `Lock` on its own
//! connection, told through pub/sub), in the same `Lock` (woken locally), on a 3-master cluster;
//! and a wait is kept even when an attempt is stuck on a blackholed connection; a local waiter is
//! handed the lock directly, with the next fence.

mod support;

use std::time::{Duration, Instant};

use redis_core::{Config, KeySpace, Redis, redis};
use redis_lock::{AcquireOptions, ErrorPredicates, Fencing, Lock, WAIT_MARGIN};
use redis_test_support::{FaultProxy, TestCluster, TestContext, TestServer, wait_until};
use support::{backoff, ms};

/// A lock whose retry backoff is 5 s: a waiter that got the lock sooner was woken.
fn slow_polling_lock(redis: &Redis, keys: &KeySpace) -> Lock {
    Lock::builder(redis.clone(), keys)
        .ttl(Duration::from_secs(30))
        .wait(Duration::from_secs(30))
        .retry_delay(backoff(Duration::from_secs(5), Duration::from_secs(5)))
        .build()
        .unwrap()
}

async fn exists(redis: &Redis, key: &str) -> bool {
    redis
        .query::<i64>(redis::cmd("EXISTS").arg(key))
        .await
        .unwrap()
        == 1
}

/// Subscribers of `channel` on `servers`, summed.
fn subscribers(servers: &[&TestServer], channel: &str) -> i64 {
    servers
        .iter()
        .map(|s| {
            let (_, n): (String, i64) = s
                .cmd(redis::cmd("PUBSUB").arg("NUMSUB").arg(channel))
                .unwrap();
            n
        })
        .sum()
}

/// `holder` takes `resource`, `waiter` waits for it; once the waiter has marked the lock and
/// (with `servers`) a subscription is up, the holder releases. Returns the time from the start of
/// the release to the waiter's grant.
async fn hand_over(
    redis: &Redis,
    holder: &Lock,
    waiter: &Lock,
    resource: &str,
    servers: &[&TestServer],
) -> Duration {
    let held = holder.try_acquire(resource).await.unwrap().expect("free");
    let waiting = {
        let (waiter, resource) = (waiter.clone(), resource.to_owned());
        tokio::spawn(async move { waiter.acquire(&resource).await })
    };
    let marker = holder.key(resource).unwrap().companion("waiters");
    let channel = format!("{}:released", marker.as_str().split(":{").next().unwrap());
    wait_until("the waiter is ready", Duration::from_secs(10), || async {
        exists(redis, marker.as_str()).await
            && (servers.is_empty() || subscribers(servers, &channel) > 0)
    })
    .await;
    let released = Instant::now();
    held.release().await.unwrap();
    let guard = waiting.await.unwrap().unwrap();
    let took = released.elapsed();
    guard.release().await.unwrap();
    took
}

fn assert_fast(what: &str, times: &[Duration]) {
    let max = times.iter().max().unwrap();
    eprintln!("{what}: hand-overs {times:?}");
    // Polling alone would take 2.5 s or more; a wake-up takes a few round trips.
    assert!(*max < Duration::from_secs(1), "{what}: {max:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_waiter_in_another_process_and_in_the_same_one() {
    let mut ctx = TestContext::private().await;
    let keys = ctx.keyspace();
    let holder = slow_polling_lock(ctx.redis(), &keys);
    // Another process: its own connections, its own subscription.
    let other = Redis::open(ctx.url()).await.unwrap();
    let waiter = slow_polling_lock(&other, &keys);
    let redis = ctx.redis().clone();
    let server = ctx.server().unwrap();
    let mut remote = Vec::new();
    for round in 0..10 {
        let resource = format!("job-{}", round % 3);
        remote.push(hand_over(&redis, &holder, &waiter, &resource, &[&*server]).await);
    }
    assert_fast("another process", &remote);

    let mut local = Vec::new();
    for round in 0..10 {
        let resource = format!("local-{}", round % 3);
        local.push(hand_over(&redis, &holder, &holder, &resource, &[]).await);
    }
    assert_fast("same process", &local);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_waiter_on_a_cluster() {
    let mut cluster = TestCluster::spawn(3, 0);
    let redis = cluster.redis().await;
    let keys = KeySpace::new("handover").unwrap();
    let holder = slow_polling_lock(&redis, &keys);
    let other = Redis::connect(&cluster.config()).await.unwrap();
    let waiter = slow_polling_lock(&other, &keys);
    // Names on every master.
    let names: Vec<String> = (0..12).map(|i| format!("res-{i}")).collect();
    let ranges: std::collections::HashSet<u16> = names
        .iter()
        .map(|n| holder.key(n).unwrap().slot() / (16_384 / 3 + 1))
        .collect();
    assert_eq!(ranges.len(), 3, "resources span all masters");
    let nodes = cluster.nodes();
    let servers: Vec<&TestServer> = nodes.iter().collect();
    let mut times = Vec::new();
    for name in &names {
        times.push(hand_over(&redis, &holder, &waiter, name, &servers).await);
    }
    assert_fast("cluster", &times);
}

/// An attempt stuck on a connection that stopped answering does not hold `acquire` past its wait:
/// it returns within the wait plus [`WAIT_MARGIN`] (plus scheduling slack), with a time-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_keeps_its_wait_with_an_attempt_stuck_on_a_blackholed_connection() {
    let mut ctx = TestContext::private().await;
    let proxy = FaultProxy::start(ctx.server().unwrap().port()).await;
    let config = Config::builder()
        .url(proxy.url())
        .response_timeout(Some(Duration::from_secs(30)))
        .build()
        .unwrap();
    let keys = ctx.keyspace();
    let direct = Lock::builder(ctx.redis().clone(), &keys)
        .ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    let through_proxy = Lock::builder(Redis::connect(&config).await.unwrap(), &keys)
        .ttl(Duration::from_secs(30))
        .retry_delay(backoff(ms(20), ms(20)))
        .build()
        .unwrap();
    let held = direct.try_acquire("stuck").await.unwrap().unwrap();
    let wait = ms(400);
    let started = Instant::now();
    let waiting = {
        let lock = through_proxy.clone();
        tokio::spawn(async move {
            let result = lock
                .acquire_with_options("stuck", &AcquireOptions::new().wait(wait))
                .await;
            (result, started.elapsed())
        })
    };
    // The first attempt has answered (held, marked); the next ones go into the void.
    let marker = direct.key("stuck").unwrap().companion("waiters");
    wait_until("the first attempt", Duration::from_secs(10), || {
        exists(ctx.redis(), marker.as_str())
    })
    .await;
    proxy.set_blackhole(true);
    let (result, took) = waiting.await.unwrap();
    let err = result.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(took >= wait, "{took:?}");
    assert!(
        took < wait + WAIT_MARGIN + ms(400),
        "returned after {took:?} for a wait of {wait:?}"
    );
    held.release().await.unwrap();
    proxy.reset_all();
}

/// The safer grant waits for a replica: granted while one acknowledges; refused, and given back,
/// when none does within the time-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_with_replica_ack_needs_a_replica_and_is_given_back_without_one() {
    let master = TestServer::spawn();
    let mut replica = TestServer::spawn_replica_of(&master);
    let redis = Redis::open(&master.url()).await.unwrap();
    let keys = KeySpace::new("replicated").unwrap();
    let lock = Lock::builder(redis.clone(), &keys)
        .ttl(Duration::from_secs(30))
        .replica_ack(ms(500))
        .build()
        .unwrap();
    let guard = lock.try_acquire("job").await.unwrap().expect("free");
    assert!(guard.fence() >= 1);
    guard.release().await.unwrap();

    replica.kill();
    wait_until(
        "the master sees no replica",
        Duration::from_secs(10),
        || async {
            let info: String = master.cmd(redis::cmd("INFO").arg("replication")).unwrap();
            info.contains("connected_slaves:0")
        },
    )
    .await;
    let err = lock.try_acquire("job").await.unwrap_err();
    assert!(
        matches!(err, redis_lock::Error::NotReplicated { .. }) && err.is_retryable(),
        "{err}"
    );
    let key = lock.key("job").unwrap();
    wait_until(
        "the unacknowledged grant is given back",
        Duration::from_secs(10),
        || async { !exists(&redis, key.as_str()).await },
    )
    .await;
    assert!(
        Lock::builder(redis.clone(), &keys)
            .replica_ack(Duration::ZERO)
            .build()
            .is_err()
    );
}

/// A release by a guard of the same `Lock` hands the lock straight to a waiting `acquire`: the
/// waiter holds it under its own token and lease, with the next fence, and gives it back as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_waiter_is_handed_the_lock_with_the_next_fence_in_every_mode() {
    let ctx = TestContext::new().await;
    for (mode, fencing) in [Fencing::default(), Fencing::Counter, Fencing::Off]
        .into_iter()
        .enumerate()
    {
        let job = format!("job-{mode}");
        let lock = Lock::builder(ctx.redis().clone(), &ctx.keyspace())
            .ttl(Duration::from_secs(30))
            .wait(Duration::from_secs(30))
            .retry_delay(backoff(Duration::from_secs(5), Duration::from_secs(5)))
            .fencing(fencing)
            .build()
            .unwrap();
        let mut previous = lock.try_acquire(&job).await.unwrap().expect("free");
        for _ in 0..5 {
            let waiting = {
                let (lock, job) = (lock.clone(), job.clone());
                tokio::spawn(async move {
                    lock.acquire_with_options(&job, &AcquireOptions::new().ttl(ms(20_000)))
                        .await
                })
            };
            let marker = lock.key(&job).unwrap().companion("waiters");
            wait_until(
                "the waiter marked the lock",
                Duration::from_secs(10),
                || exists(ctx.redis(), marker.as_str()),
            )
            .await;
            let released = Instant::now();
            let fence = previous.fence();
            previous.release().await.unwrap();
            let next = waiting.await.unwrap().unwrap();
            assert!(released.elapsed() < Duration::from_secs(1), "{fencing:?}");
            if fencing == Fencing::Off {
                assert_eq!(next.fence(), 0);
            } else {
                assert!(
                    next.fence() > fence,
                    "{fencing:?}: {} after {fence}",
                    next.fence()
                );
            }
            let key = lock.key(&job).unwrap();
            let (owner, pttl): (Option<String>, i64) = ctx
                .redis()
                .query_pipeline(redis::pipe().get(&key).pttl(&key))
                .await
                .unwrap();
            assert_eq!(owner.as_deref(), Some(next.token()), "{fencing:?}");
            assert!(
                pttl > 15_000 && pttl <= 20_000,
                "{fencing:?}: the waiter's lease, {pttl}"
            );
            previous = next;
        }
        previous.release().await.unwrap();
        let last = lock
            .try_acquire(&job)
            .await
            .unwrap()
            .expect("free once released");
        last.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_hand_overs_do_not_starve_a_waiter_of_another_process() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    };

    let ctx = TestContext::private().await;
    let keys = ctx.keyspace();
    let busy = slow_polling_lock(ctx.redis(), &keys);
    let other = Redis::open(ctx.url()).await.unwrap();
    let outsider = slow_polling_lock(&other, &keys);
    // Four tasks of one process take the resource in turn, each holding it for 2 ms: without
    // a bound on hand-overs in a row it would never be free for anyone else.
    let stop = Arc::new(AtomicBool::new(false));
    let taken = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (busy, stop, taken) = (busy.clone(), stop.clone(), taken.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let guard = busy.acquire("hot").await.unwrap();
                    taken.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(ms(2)).await;
                    guard.release().await.unwrap();
                }
            })
        })
        .collect();
    wait_until(
        "the local tasks to take turns",
        Duration::from_secs(10),
        || {
            let taken = taken.clone();
            async move { taken.load(Ordering::Relaxed) >= 50 }
        },
    )
    .await;

    // The outsider polls every 5 s: it gets the lock by being woken by an open release.
    let started = Instant::now();
    let guard = outsider
        .acquire_with_options("hot", &AcquireOptions::new().wait(Duration::from_secs(20)))
        .await
        .expect("another process's waiter gets its turn");
    let waited = started.elapsed();
    guard.release().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(waited < Duration::from_secs(4), "waited {waited:?}");
}
