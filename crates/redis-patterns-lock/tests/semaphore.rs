//! The counting semaphore against a real Redis.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use redis_core::{Redis, redis};
use redis_lock::{AcquireOptions, Error, Semaphore, SemaphoreBuilder};
use redis_test_support::{FaultProxy, TestContext, wait_for, wait_until};
use support::{assert_refused_as_lost, backoff, ms, take_and_release};

/// A semaphore for many tasks racing for `permits` permits: short retries, a long wait.
fn contended(ctx: &TestContext, permits: usize) -> SemaphoreBuilder {
    Semaphore::builder(ctx.redis().clone(), &ctx.keyspace(), permits as u32)
        .retry_delay(backoff(ms(1), ms(5)))
        .wait(Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_semaphore_never_has_more_than_n_holders() {
    const PERMITS: usize = 3;
    let ctx = TestContext::new().await;
    let sem = Arc::new(contended(&ctx, PERMITS).build().unwrap());
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (sem, inside, peak) = (sem.clone(), inside.clone(), peak.clone());
            tokio::spawn(async move {
                let mut fences = Vec::new();
                for _ in 0..60 {
                    let permit = sem.acquire("exports").await.unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    assert!(now <= PERMITS, "{now} holders");
                    tokio::task::yield_now().await;
                    fences.push(permit.fence());
                    inside.fetch_sub(1, Ordering::SeqCst);
                    permit.release().await.unwrap();
                }
                fences
            })
        })
        .collect();
    let mut fences = Vec::new();
    for t in tasks {
        fences.extend(t.await.unwrap());
    }
    assert!(peak.load(Ordering::SeqCst) <= PERMITS);
    assert!(peak.load(Ordering::SeqCst) >= 2, "permits were shared");
    fences.sort_unstable();
    fences.dedup();
    assert_eq!(fences.len(), 16 * 60, "fences are unique");
    assert_eq!(sem.holders("exports").await.unwrap(), 0);
}

/// Permits that expire under contention: holders that release, crash (never release) or
/// overstay their 100 ms lease. Each holder's trusted window runs from the moment `acquire`
/// returned to its local deadline (or its release): no more than N windows may ever overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiring_permits_never_leave_more_than_n_valid_holders() {
    const PERMITS: usize = 2;
    let ctx = TestContext::new().await;
    let sem = Arc::new(contended(&ctx, PERMITS).ttl(ms(100)).build().unwrap());
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let sem = sem.clone();
            tokio::spawn(async move {
                let mut windows = Vec::new();
                for round in 0..15 {
                    let permit = sem.acquire("expiring").await.unwrap();
                    let from = tokio::time::Instant::now();
                    // `remaining` is read after `from`, so this never overstates the deadline.
                    let until = from + permit.remaining();
                    let hold = match (t + round) % 3 {
                        0 => ms(10),
                        1 => ms(40),
                        _ => ms(150), // past the lease
                    };
                    tokio::time::sleep(hold).await;
                    let end = tokio::time::Instant::now().min(until);
                    if end > from {
                        windows.push((from, end));
                    }
                    if round % 4 == 0 {
                        permit.detach(); // crashed: the permit has to expire
                    } else {
                        let _ = permit.release().await; // `Lost` after an overstay
                    }
                }
                windows
            })
        })
        .collect();
    let mut events = Vec::new();
    for task in tasks {
        for (from, end) in task.await.unwrap() {
            events.push((from, 1i32));
            events.push((end, -1i32));
        }
    }
    // At equal instants, ends before starts.
    events.sort();
    let (mut valid, mut peak) = (0i32, 0i32);
    for (_, delta) in events {
        valid += delta;
        peak = peak.max(valid);
    }
    assert!(
        peak <= PERMITS as i32,
        "{peak} holders trusted their permit at once"
    );
    assert!(peak >= 2, "permits were shared");
}

#[tokio::test]
async fn permits_live_in_a_sorted_set_nested_under_the_lock_pattern() {
    let ctx = TestContext::new().await;
    let sem = Semaphore::builder(ctx.redis().clone(), &ctx.keyspace(), 2)
        .build()
        .unwrap();
    let key = sem.key("jobs").unwrap();
    assert_eq!(
        key.as_str(),
        format!("{}:lock:semaphore:{{jobs}}", ctx.prefix())
    );
    let permit = sem.try_acquire("jobs").await.unwrap().unwrap();
    let query = |cmd: &str, key: redis_core::Key| {
        let (redis, cmd) = (ctx.redis().clone(), redis::cmd(cmd).arg(&key).clone());
        async move { redis.query::<redis::Value>(&cmd).await.unwrap() }
    };
    assert_eq!(
        query("TYPE", key.clone()).await,
        redis::Value::SimpleString("zset".into())
    );
    let redis::Value::Int(lease) = query("PTTL", key.clone()).await else {
        panic!("PTTL is an integer");
    };
    assert!(lease > 0 && lease <= 30_000, "holders pttl {lease}");
    assert_eq!(
        query("PTTL", key.companion("fence")).await,
        redis::Value::Int(-1),
        "the fencing counter has no TTL"
    );
    permit.release().await.unwrap();
}

#[tokio::test]
async fn a_crashed_holders_permit_expires() {
    let ctx = TestContext::new().await;
    let sem = Semaphore::builder(ctx.redis().clone(), &ctx.keyspace(), 2)
        .build()
        .unwrap();
    let short = AcquireOptions::new().ttl(ms(300));
    let a = sem
        .try_acquire_with_options("jobs", &short)
        .await
        .unwrap()
        .unwrap();
    let b = sem.try_acquire("jobs").await.unwrap().unwrap();
    assert!(sem.try_acquire("jobs").await.unwrap().is_none());
    assert_eq!(sem.holders("jobs").await.unwrap(), 2);
    a.detach(); // crash: never released
    let c = wait_for(
        "the crashed permit to expire",
        Duration::from_secs(20),
        || async { sem.try_acquire("jobs").await.unwrap() },
    )
    .await;
    assert!(c.fence() > b.fence());
    assert!(sem.try_acquire("jobs").await.unwrap().is_none());
    b.release().await.unwrap();
    c.release().await.unwrap();
    assert_eq!(sem.holders("jobs").await.unwrap(), 0);
}

#[tokio::test]
async fn an_expired_permit_cannot_be_extended_or_released() {
    let ctx = TestContext::new().await;
    let sem = Semaphore::builder(ctx.redis().clone(), &ctx.keyspace(), 1)
        .build()
        .unwrap();
    let permit = sem
        .try_acquire_with_options("one", &AcquireOptions::new().ttl(ms(200)))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), permit.lost())
        .await
        .unwrap();
    let next = wait_for("the permit to expire", Duration::from_secs(20), || async {
        sem.try_acquire("one").await.unwrap()
    })
    .await;
    assert_refused_as_lost(permit).await;
    next.extend(Duration::from_secs(5)).await.unwrap();
    next.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_permit_runs_the_work_under_a_permit() {
    let ctx = TestContext::new().await;
    let sem = Semaphore::builder(ctx.redis().clone(), &ctx.keyspace(), 1)
        .build()
        .unwrap();
    let sem2 = sem.clone();
    let held_inside = sem
        .with_permit("solo", |_lease| async move {
            sem2.try_acquire("solo").await.unwrap().is_none()
        })
        .await
        .unwrap();
    assert!(held_inside);
    assert_eq!(sem.holders("solo").await.unwrap(), 0);
}

#[tokio::test]
async fn zero_permits_are_rejected() {
    let ctx = TestContext::new().await;
    assert!(matches!(
        Semaphore::builder(ctx.redis().clone(), &ctx.keyspace(), 0).build(),
        Err(Error::InvalidConfig(_))
    ));
}

/// An `acquire` dropped while its request is on the wire may still be granted a permit; nobody
/// holds it, so it is returned in the background instead of staying out for the whole lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_acquire_does_not_keep_a_permit() {
    let mut ctx = TestContext::private().await;
    let proxy = FaultProxy::start(ctx.server().unwrap().port()).await;
    let slow = Redis::open(&proxy.url()).await.unwrap();
    let build = |redis: &Redis| {
        Semaphore::builder(redis.clone(), &ctx.keyspace(), 1)
            .ttl(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let (slow, direct) = (build(&slow), build(ctx.redis()));
    take_and_release(slow.try_acquire("warm")).await;
    proxy.set_latency(ms(500));
    let cancelled = tokio::time::timeout(ms(50), slow.acquire("pool")).await;
    assert!(cancelled.is_err(), "dropped before the reply");
    let fence_key = format!("{}:fence", direct.key("pool").unwrap().as_str());
    wait_until("the late grant", Duration::from_secs(10), || async {
        let fence: Option<u64> = ctx
            .redis()
            .query(redis::cmd("GET").arg(&fence_key))
            .await
            .unwrap();
        fence == Some(1)
    })
    .await;
    wait_until(
        "the orphaned permit's return",
        Duration::from_secs(10),
        || async { direct.holders("pool").await.unwrap() == 0 },
    )
    .await;
    take_and_release(direct.try_acquire("pool")).await;
}
