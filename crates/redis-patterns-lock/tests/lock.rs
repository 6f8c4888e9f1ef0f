//! The single-server lock against a real Redis: exclusion, fencing, ownership, leases, watchdog.

mod support;

use std::{sync::Arc, time::Duration};

use redis_core::{Backoff, Config, KeySpace, Redis, redis};
use redis_lock::{AcquireOptions, Error, ErrorPredicates, Lock, LockGuard};
use redis_test_support::{FaultProxy, TestContext, wait_until};
use support::{backoff, ms, race_counter, take_and_release};

fn lock(redis: &Redis, keys: &KeySpace) -> Lock {
    Lock::builder(redis.clone(), keys)
        .ttl(Duration::from_secs(30))
        .retry_delay(backoff(ms(1), ms(5)))
        .wait(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One attempt with `options` that must succeed.
async fn take(lock: &Lock, resource: &str, options: AcquireOptions) -> LockGuard {
    lock.try_acquire_with_options(resource, &options)
        .await
        .unwrap()
        .expect("the resource is free")
}

async fn owner(redis: &Redis, lock: &Lock, resource: &str) -> Option<String> {
    redis
        .query(redis::cmd("GET").arg(lock.key(resource).unwrap()))
        .await
        .unwrap()
}

#[tokio::test]
async fn try_acquire_returns_none_while_held_and_fences_increase() {
    let ctx = TestContext::new().await;
    let lock = lock(ctx.redis(), &ctx.keyspace());
    let first = lock.try_acquire("job").await.unwrap().expect("free lock");
    assert_eq!(first.resource(), "job");
    assert_eq!(first.token().len(), 32, "128-bit hex token");
    assert_eq!(
        owner(ctx.redis(), &lock, "job").await.as_deref(),
        Some(first.token())
    );
    assert!(lock.try_acquire("job").await.unwrap().is_none());
    // Key layout: the lock key carries the lease, the fencing counter never expires.
    let key = lock.key("job").unwrap();
    assert_eq!(key.as_str(), format!("{}:lock:{{job}}", ctx.prefix()));
    let pttl = |k: redis_core::Key| {
        let redis = ctx.redis().clone();
        async move {
            redis
                .query::<i64>(redis::cmd("PTTL").arg(&k))
                .await
                .unwrap()
        }
    };
    let lease = pttl(key.clone()).await;
    assert!(lease > 0 && lease <= 30_000, "lease pttl {lease}");
    // The default fence counter expires a day after its last grant.
    let counter = pttl(key.companion("fence")).await;
    let day = i64::try_from(redis_lock::DEFAULT_HORIZON.as_millis()).unwrap();
    assert!(
        counter > day - 60_000 && counter <= day,
        "counter pttl {counter}"
    );
    // Another resource is independent.
    let other = lock.try_acquire("other-job").await.unwrap().expect("free");
    let fence = first.fence();
    first.release().await.unwrap();
    assert_eq!(owner(ctx.redis(), &lock, "job").await, None);

    let second = lock.try_acquire("job").await.unwrap().expect("released");
    assert!(second.fence() > fence, "{} > {fence}", second.fence());
    assert_eq!(lock.last_fence("job").await.unwrap(), second.fence());
    second.release().await.unwrap();
    other.release().await.unwrap();
}

/// 16 tasks x 500 critical sections, each a non-atomic GET then SET on a Redis value: the count
/// is exact and fences strictly increase in the order the lock was held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contended_read_modify_write_is_exact_and_fences_strictly_increase() {
    let ctx = TestContext::new().await;
    let lock = Arc::new(lock(ctx.redis(), &ctx.keyspace()));
    let counter = ctx.keyspace().key("counter").unwrap();
    let race = race_counter(16, 500, ctx.redis(), &counter, move || {
        let lock = lock.clone();
        async move { lock.acquire("counter").await }
    })
    .await;
    assert_eq!(race.sections(), 16 * 500);
    race.assert_exclusive_in_fence_order();
}

#[tokio::test]
async fn release_and_extend_by_a_former_owner_are_rejected() {
    let ctx = TestContext::new().await;
    let lock = lock(ctx.redis(), &ctx.keyspace());
    let stale = take(&lock, "doc", AcquireOptions::new().ttl(ms(100))).await;
    let current = wait_for_lock(&lock, "doc").await;
    assert!(current.fence() > stale.fence());

    let err = stale.extend(Duration::from_secs(10)).await.unwrap_err();
    assert!(err.is_lost(), "{err}");
    assert!(stale.is_lost());
    let err = stale.release().await.unwrap_err();
    assert!(
        matches!(err, Error::Lost { ref resource } if resource == "doc"),
        "{err}"
    );

    // The real owner is untouched and keeps working.
    assert_eq!(
        owner(ctx.redis(), &lock, "doc").await.as_deref(),
        Some(current.token())
    );
    current.extend(Duration::from_secs(20)).await.unwrap();
    let pttl: i64 = ctx
        .redis()
        .query(redis::cmd("PTTL").arg(lock.key("doc").unwrap()))
        .await
        .unwrap();
    assert!(pttl > 10_000, "extended lease, pttl {pttl}");
    current.release().await.unwrap();
}

async fn wait_for_lock(lock: &Lock, resource: &str) -> LockGuard {
    redis_test_support::wait_for("the lease to run out", Duration::from_secs(20), || async {
        lock.try_acquire(resource).await.unwrap()
    })
    .await
}

#[tokio::test]
async fn a_holder_pausing_past_its_ttl_loses_the_lock_and_is_told() {
    let ctx = TestContext::new().await;
    let lock = lock(ctx.redis(), &ctx.keyspace());
    let paused = take(&lock, "report", AcquireOptions::new().ttl(ms(300))).await;
    let lost = tokio::spawn(paused.lost());
    let handle = paused.handle();
    assert!(!paused.is_lost());

    // The holder "pauses" (GC, swap, a slow call); another process gets the lock.
    let taker = wait_for_lock(&lock, "report").await;
    tokio::time::timeout(Duration::from_secs(10), lost)
        .await
        .expect("lost signal fired")
        .unwrap();
    assert!(paused.is_lost());
    assert!(handle.is_lost());
    assert!(
        paused
            .extend(Duration::from_secs(5))
            .await
            .unwrap_err()
            .is_lost()
    );
    assert!(taker.fence() > paused.fence());
    assert_eq!(
        owner(ctx.redis(), &lock, "report").await.as_deref(),
        Some(taker.token())
    );
    taker.release().await.unwrap();
}

#[tokio::test]
async fn the_watchdog_keeps_a_lease_alive_past_its_ttl() {
    let ctx = TestContext::new().await;
    let lock = lock(ctx.redis(), &ctx.keyspace());
    let guard = take(
        &lock,
        "long-job",
        AcquireOptions::new().ttl(ms(600)).auto_extend(true),
    )
    .await;
    // Hold for several TTLs on purpose: without renewal the lease would be gone.
    tokio::time::sleep(ms(2000)).await;
    assert!(!guard.is_lost(), "remaining {:?}", guard.remaining());
    assert!(lock.try_acquire("long-job").await.unwrap().is_none());
    assert_eq!(
        owner(ctx.redis(), &lock, "long-job").await.as_deref(),
        Some(guard.token())
    );
    guard.release().await.unwrap();
    assert!(lock.try_acquire("long-job").await.unwrap().is_some());
}

#[tokio::test]
async fn the_watchdog_stops_at_the_hold_cap_and_the_lease_runs_out() {
    let ctx = TestContext::new().await;
    let lock = lock(ctx.redis(), &ctx.keyspace());
    let guard = take(
        &lock,
        "capped",
        AcquireOptions::new()
            .ttl(ms(200))
            .auto_extend(true)
            .max_hold(ms(500)),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(10), guard.lost())
        .await
        .expect("capped lease ran out");
    assert!(guard.is_lost());
    let next = wait_for_lock(&lock, "capped").await;
    assert!(guard.release().await.unwrap_err().is_lost());
    next.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_lock_runs_the_work_and_releases() {
    let ctx = TestContext::new().await;
    let lock = lock(ctx.redis(), &ctx.keyspace());
    let fence = lock
        .with_lock("nightly", |lease| async move {
            assert!(!lease.is_lost());
            lease.fence()
        })
        .await
        .unwrap();
    assert!(fence >= 1);
    assert_eq!(owner(ctx.redis(), &lock, "nightly").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_lock_cancels_the_work_when_the_lease_is_lost() {
    let ctx = TestContext::new().await;
    let lock = Lock::builder(ctx.redis().clone(), &ctx.keyspace())
        .ttl(ms(300))
        .build()
        .unwrap();
    let key = lock.key("migration").unwrap();
    let redis = ctx.redis().clone();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        lock.with_lock("migration", |_lease| async move {
            // Someone deletes the key under us (an operator, a failover to a stale replica).
            let _: () = redis.query(redis::cmd("DEL").arg(&key)).await.unwrap();
            std::future::pending::<()>().await;
        }),
    )
    .await
    .expect("work was cancelled");
    let err = result.unwrap_err();
    assert!(err.is_lost(), "{err}");
}

#[tokio::test]
async fn a_dropped_guard_releases_in_the_background() {
    let ctx = TestContext::new().await;
    let lock = lock(ctx.redis(), &ctx.keyspace());
    let guard = lock.try_acquire("cache-warmup").await.unwrap().unwrap();
    let lost = guard.lost();
    drop(guard);
    tokio::time::timeout(Duration::from_secs(10), lost)
        .await
        .expect("a dropped guard no longer counts as held");
    // The lease is 30 s, so only the background release can free it this soon.
    let again = wait_for_lock(&lock, "cache-warmup").await;
    again.release().await.unwrap();
}

#[tokio::test]
async fn a_detached_guard_keeps_the_lock_until_it_expires() {
    let ctx = TestContext::new().await;
    let lock = lock(ctx.redis(), &ctx.keyspace());
    let guard = take(&lock, "crashy", AcquireOptions::new().ttl(ms(300))).await;
    let token = guard.token().to_owned();
    guard.detach();
    assert_eq!(owner(ctx.redis(), &lock, "crashy").await, Some(token));
    wait_for_lock(&lock, "crashy")
        .await
        .release()
        .await
        .unwrap();
}

#[tokio::test]
async fn acquire_waits_for_a_release_and_gives_up_at_its_deadline() {
    let ctx = TestContext::new().await;
    let lock = lock(ctx.redis(), &ctx.keyspace());
    let held = lock.try_acquire("slot").await.unwrap().unwrap();
    let err = lock
        .acquire_with_options("slot", &AcquireOptions::new().wait(ms(200)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(err.is_timeout() && err.is_retryable());

    let waiter = {
        let lock = lock.clone();
        tokio::spawn(async move { lock.acquire("slot").await })
    };
    let fence = held.fence();
    held.release().await.unwrap();
    let guard = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(guard.fence() > fence);
    guard.release().await.unwrap();
}

#[tokio::test]
async fn bad_settings_and_names_are_typed_errors() {
    let ctx = TestContext::new().await;
    let build = |f: fn(redis_lock::LockBuilder) -> redis_lock::LockBuilder| {
        f(Lock::builder(ctx.redis().clone(), &ctx.keyspace())).build()
    };
    assert!(matches!(
        build(|b| b.ttl(ms(0))),
        Err(Error::InvalidConfig(_))
    ));
    // A zero or inverted retry delay is refused before a builder can take it.
    for (min, max) in [(ms(50), ms(10)), (ms(0), ms(10))] {
        let refused = Backoff::new(min, max).map_err(Error::from);
        assert!(
            matches!(
                refused,
                Err(Error::Core(redis_core::Error::InvalidConfig(_)))
            ),
            "{min:?}..{max:?}"
        );
    }
    assert!(matches!(
        build(|b| b.max_hold(ms(0))),
        Err(Error::InvalidConfig(_))
    ));
    let lock = build(|b| b).unwrap();
    assert!(matches!(
        lock.try_acquire("").await,
        Err(Error::Core(redis_core::Error::InvalidKey(_)))
    ));
    assert!(matches!(
        lock.try_acquire_with_options("x", &AcquireOptions::new().ttl(ms(1)))
            .await,
        Err(Error::InvalidConfig(_))
    ));
    let guard = lock.try_acquire("x").await.unwrap().unwrap();
    assert!(matches!(
        guard.extend(ms(0)).await,
        Err(Error::InvalidConfig(_))
    ));
    guard.release().await.unwrap();
    // Limits too large to add to an instant mean "no limit", not a panic.
    let unbounded = AcquireOptions::new()
        .wait(Duration::MAX)
        .auto_extend(true)
        .max_hold(Duration::MAX);
    let guard = lock.acquire_with_options("x", &unbounded).await.unwrap();
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_dead_server_is_an_error_not_a_denial() {
    let mut ctx = TestContext::private().await;
    let lock = Lock::builder(ctx.redis().clone(), &ctx.keyspace())
        .wait(ms(300))
        .build()
        .unwrap();
    ctx.server().unwrap().kill();
    let err = lock.try_acquire("anything").await.unwrap_err();
    assert!(err.is_connection_error() || err.is_timeout(), "{err}");
    let err = lock.acquire("anything").await.unwrap_err();
    assert!(
        !matches!(err, Error::Timeout(_)),
        "reports the cause: {err}"
    );
    assert!(err.is_retryable(), "{err}");
}

/// An `acquire` whose future is dropped while its request is on the wire, or whose reply timed
/// out, may still have taken the lock on the server. Nobody holds a guard for it, so the token
/// is given back in the background instead of blocking the resource for the whole 30 s lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_or_timed_out_acquire_does_not_leave_the_lock_held() {
    let mut ctx = TestContext::private().await;
    let proxy = FaultProxy::start(ctx.server().unwrap().port()).await;
    let config = Config::builder()
        .url(proxy.url())
        .response_timeout(Some(ms(300)))
        .build()
        .unwrap();
    let slow = lock(&Redis::connect(&config).await.unwrap(), &ctx.keyspace());
    let direct = lock(ctx.redis(), &ctx.keyspace());
    // Scripts loaded, connection up: the next requests are single EVALSHAs.
    take_and_release(slow.try_acquire("warm")).await;
    let held = slow
        .try_acquire("release-cancelled")
        .await
        .unwrap()
        .unwrap();
    proxy.set_latency(ms(500));

    let cancelled = tokio::time::timeout(ms(50), slow.acquire("cancelled")).await;
    assert!(cancelled.is_err(), "dropped before the reply");
    let timed_out = slow.try_acquire("timed-out").await.unwrap_err();
    assert!(timed_out.is_timeout(), "{timed_out}");

    let cancelled = tokio::time::timeout(ms(50), held.release()).await;
    assert!(cancelled.is_err(), "release dropped before the reply");
    wait_until("the cancelled release", Duration::from_secs(10), || async {
        owner(ctx.redis(), &direct, "release-cancelled")
            .await
            .is_none()
    })
    .await;

    for resource in ["cancelled", "timed-out"] {
        // The request did reach the server and took the lock ...
        wait_until("the late grant", Duration::from_secs(10), || async {
            direct.last_fence(resource).await.unwrap() > 0
        })
        .await;
        // ... and the background release frees it long before its 30 s lease ends.
        wait_until(
            "the orphaned lock's release",
            Duration::from_secs(10),
            || async { owner(ctx.redis(), &direct, resource).await.is_none() },
        )
        .await;
    }
    take_and_release(direct.try_acquire("cancelled")).await;
}

/// A watchdog whose renewals fail because the server is gone reports the lease lost by its
/// deadline, without waiting for a renewal to succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lost_signal_fires_when_renewals_fail_with_errors() {
    let mut ctx = TestContext::private().await;
    let lock = lock(ctx.redis(), &ctx.keyspace());
    let guard = take(
        &lock,
        "renewed",
        AcquireOptions::new().ttl(ms(600)).auto_extend(true),
    )
    .await;
    let handle = guard.handle();
    ctx.server().unwrap().kill();
    tokio::time::timeout(Duration::from_secs(10), handle.lost())
        .await
        .expect("lost signal fired while renewals failed");
    assert!(guard.is_lost() && handle.is_lost());
    let err = guard.extend(Duration::from_secs(5)).await.unwrap_err();
    assert!(err.is_lost(), "{err}");
}
