//! Fencing modes against a real Redis: the expiring counter (every key has a TTL, tokens keep
//! increasing across its expiry and its loss), the unfenced lock, and the server commands each
//! acquire + release sends (`INFO commandstats`).

mod support;

use std::{collections::HashMap, time::Duration};

use futures_util::future::join_all;
use redis_core::{KeySpace, Redis, redis};
use redis_lock::{Fencing, Lock};
use redis_test_support::{TestContext, command_calls, wait_until};
use support::ms;

fn lock(redis: &Redis, keys: &KeySpace, fencing: Fencing) -> Lock {
    Lock::builder(redis.clone(), keys)
        .ttl(Duration::from_secs(30))
        .fencing(fencing)
        .build()
        .unwrap()
}

/// Every key under `keys`, with its PTTL.
async fn keys_with_pttl(redis: &Redis, keys: &KeySpace) -> Vec<(String, i64)> {
    let mut cursor = 0u64;
    let mut out = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis
            .query(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(keys.scan_pattern())
                    .arg("COUNT")
                    .arg(1000),
            )
            .await
            .unwrap();
        for key in batch {
            let pttl: i64 = redis.query(redis::cmd("PTTL").arg(&key)).await.unwrap();
            out.push((key, pttl));
        }
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

/// Takes and gives back each name once, 50 at a time; the fence of each.
async fn lock_each(lock: &Lock, names: &[String]) -> HashMap<String, u64> {
    let mut fences = HashMap::new();
    for chunk in names.chunks(50) {
        let taken = join_all(chunk.iter().map(|name| async move {
            let guard = lock.try_acquire(name).await.unwrap().expect("free");
            let fence = guard.fence();
            guard.release().await.unwrap();
            (name.clone(), fence)
        }))
        .await;
        fences.extend(taken);
    }
    fences
}

/// 1,000 distinct names locked and released with an expiring counter: every key the lock wrote
/// has a TTL, nothing is left once the horizon has passed, and the names' next fences are larger
/// than their last ones although their counters are gone. A counter lost outright (deleted, as
/// in a failover that lost its last write) does not make a fence repeat either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_fences_leave_no_key_without_ttl_and_keep_increasing_across_expiry() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let horizon = ms(1500);
    let lock = lock(ctx.redis(), &keys, Fencing::expiring(horizon));
    let names: Vec<String> = (0..1000).map(|i| format!("order:{i}")).collect();

    let before = lock_each(&lock, &names).await;
    let written = keys_with_pttl(ctx.redis(), &keys).await;
    assert!(!written.is_empty(), "the counters are there");
    for (key, pttl) in &written {
        assert!(*pttl > 0, "{key} has no TTL ({pttl})");
        assert!(
            *pttl <= 1500,
            "{key} lives no longer than the horizon ({pttl})"
        );
    }
    // A name locked again before the horizon continues its counter.
    let again = lock.try_acquire("order:7").await.unwrap().unwrap();
    assert_eq!(again.fence(), lock.last_fence("order:7").await.unwrap());
    assert!(again.fence() > before["order:7"]);
    let order_7 = again.fence();
    again.release().await.unwrap();

    wait_until(
        "every lock key expired",
        Duration::from_secs(10),
        || async { keys_with_pttl(ctx.redis(), &keys).await.is_empty() },
    )
    .await;
    assert_eq!(lock.last_fence("order:7").await.unwrap(), 0, "counter gone");

    let after = lock_each(&lock, &names).await;
    for name in &names {
        assert!(
            after[name] > before[name],
            "{name}: {} after expiry, {} before",
            after[name],
            before[name]
        );
    }
    assert!(after["order:7"] > order_7);

    // A counter lost while its resource is in use: the next fence is still larger.
    let guard = lock.try_acquire("order:7").await.unwrap().unwrap();
    let held = guard.fence();
    guard.release().await.unwrap();
    let counter = lock.key("order:7").unwrap().companion("fence");
    let _: i64 = ctx
        .redis()
        .query(redis::cmd("DEL").arg(&counter))
        .await
        .unwrap();
    let guard = lock.try_acquire("order:7").await.unwrap().unwrap();
    assert!(guard.fence() > held, "{} > {held}", guard.fence());
    guard.release().await.unwrap();
}

#[tokio::test]
async fn an_unfenced_lock_is_a_plain_lease_with_fence_zero() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let lock = lock(ctx.redis(), &keys, Fencing::Off);
    assert_eq!(lock.fencing(), Fencing::Off);
    let guard = lock.try_acquire("job").await.unwrap().expect("free");
    assert_eq!(guard.fence(), 0);
    assert!(
        lock.try_acquire("job").await.unwrap().is_none(),
        "exclusive"
    );
    let written = keys_with_pttl(ctx.redis(), &keys).await;
    assert_eq!(written.len(), 1, "only the lock key: {written:?}");
    assert!(written[0].1 > 0, "with its lease as TTL");
    guard.release().await.unwrap();
    assert!(keys_with_pttl(ctx.redis(), &keys).await.is_empty());
    // Waiting works as for a fenced lock.
    let held = lock.try_acquire("job").await.unwrap().unwrap();
    let waiter = {
        let lock = lock.clone();
        tokio::spawn(async move { lock.acquire("job").await })
    };
    let marker = lock.key("job").unwrap().companion("waiters");
    wait_until(
        "the waiter marked the lock",
        Duration::from_secs(10),
        || {
            let (redis, marker) = (ctx.redis().clone(), marker.clone());
            async move {
                redis
                    .query::<i64>(redis::cmd("EXISTS").arg(&marker))
                    .await
                    .unwrap()
                    == 1
            }
        },
    )
    .await;
    held.release().await.unwrap();
    let next = waiter.await.unwrap().unwrap();
    assert_eq!(next.fence(), 0);
    next.release().await.unwrap();
    assert!(
        Lock::builder(ctx.redis().clone(), &keys)
            .fencing(Fencing::expiring(ms(1)))
            .build()
            .is_err(),
        "a horizon below the minimum is refused"
    );
}

/// What one uncontended acquire + release sends in each mode, counted by the server: two round
/// trips, and only the commands listed in the README.
#[tokio::test]
async fn each_mode_sends_the_documented_commands() {
    let ctx = TestContext::private().await;
    let keys = ctx.keyspace();
    let expected: [(Fencing, &[(&str, u64)]); 3] = [
        (
            Fencing::Counter,
            &[
                ("evalsha", 2),
                ("set", 1),
                ("incr", 1),
                ("get", 1),
                ("del", 1),
            ],
        ),
        (
            Fencing::expiring(Duration::from_secs(3600)),
            &[
                ("evalsha", 2),
                ("set", 2),
                ("time", 1),
                ("get", 2),
                ("del", 1),
            ],
        ),
        (
            Fencing::Off,
            &[("evalsha", 1), ("set", 1), ("get", 1), ("del", 1)],
        ),
    ];
    const ROUNDS: u64 = 10;
    for (fencing, per_op) in expected {
        let lock = lock(ctx.redis(), &keys, fencing);
        // Scripts loaded, connection up.
        let warm = lock.try_acquire("warm").await.unwrap().unwrap();
        warm.release().await.unwrap();
        let _: () = ctx
            .redis()
            .query(redis::cmd("CONFIG").arg("RESETSTAT"))
            .await
            .unwrap();
        for _ in 0..ROUNDS {
            let guard = lock.try_acquire("job").await.unwrap().unwrap();
            guard.release().await.unwrap();
        }
        let calls = command_calls(ctx.redis()).await;
        for name in ["evalsha", "set", "incr", "get", "del", "time", "publish"] {
            let want = per_op
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, n)| n * ROUNDS);
            assert_eq!(
                calls.get(name).copied().unwrap_or(0),
                want,
                "{fencing:?}: {name} in {calls:?}"
            );
        }
    }
}
