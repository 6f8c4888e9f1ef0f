//! The lease-based idempotency guard against a real server: done ids are skipped, a crashed
//! attempt's lease expires and the id runs again, a stale holder cannot touch a newer lease, and
//! of concurrent attempts exactly one runs; the at-most-once `begin` lets each id through once
//! until abandoned. Every key carries a TTL.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use redis_core::{Key, redis};
use redis_messaging::{Claim, Error, Idempotency, Lease, stream_key};
use redis_test_support::{TestContext, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);
const DAY: Duration = Duration::from_secs(24 * 3600);

async fn pttl(ctx: &TestContext, key: &Key) -> i64 {
    ctx.redis()
        .query(redis::cmd("PTTL").arg(key))
        .await
        .unwrap()
}

fn run(claim: Claim) -> Lease {
    match claim {
        Claim::Run(lease) => lease,
        other => panic!("expected to run, got {other:?}"),
    }
}

#[tokio::test]
async fn a_completed_id_is_skipped_and_every_key_has_a_ttl() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let seen = Idempotency::new(ctx.redis().clone(), &keys, "orders", DAY).unwrap();
    let stream = stream_key(&keys, "orders").unwrap();
    let lease_time = Duration::from_secs(30);

    let lease = run(seen.acquire("1-0", lease_time).await.unwrap());
    assert_eq!(lease.key(), &seen.key("1-0"));
    assert_eq!(seen.key("1-0").as_str(), format!("{stream}:done:1-0"));
    assert_eq!(seen.key("1-0").slot(), stream.slot());
    // The lease is short-lived...
    let ttl = pttl(&ctx, lease.key()).await;
    assert!(ttl > 0 && ttl <= 30_000, "lease pttl {ttl}");
    // ...and while it is live, another attempt is told to come back later.
    match seen.acquire("1-0", lease_time).await.unwrap() {
        Claim::Busy { retry_after } => {
            assert!(retry_after > Duration::ZERO && retry_after <= lease_time);
        }
        other => panic!("expected busy, got {other:?}"),
    }
    assert!(lease.complete().await.unwrap());
    // The done marker lives for the long TTL.
    let ttl = pttl(&ctx, &seen.key("1-0")).await;
    assert!(
        ttl > 30_000 && ttl <= DAY.as_millis() as i64,
        "done pttl {ttl}"
    );
    assert!(matches!(
        seen.acquire("1-0", lease_time).await.unwrap(),
        Claim::Done
    ));
    // Completing twice is harmless and reports that the lease is no longer held.
    assert!(!lease.complete().await.unwrap());
    assert!(!lease.abandon().await.unwrap());
    assert!(matches!(
        seen.acquire("1-0", lease_time).await.unwrap(),
        Claim::Done
    ));

    // An abandoned lease lets the next attempt run at once.
    let lease = run(seen.acquire("2-0", lease_time).await.unwrap());
    assert!(lease.abandon().await.unwrap());
    let lease = run(seen.acquire("2-0", lease_time).await.unwrap());
    assert!(lease.complete().await.unwrap());

    // An id marked by the at-most-once `begin` counts as done.
    assert!(seen.begin("3-0").await.unwrap());
    assert!(matches!(
        seen.acquire("3-0", lease_time).await.unwrap(),
        Claim::Done
    ));

    assert!(matches!(
        seen.acquire("4-0", Duration::ZERO).await,
        Err(Error::InvalidConfig(_))
    ));
}

#[tokio::test]
async fn a_crashed_attempt_lets_a_later_one_run_after_the_lease() {
    let ctx = TestContext::new().await;
    let seen = Idempotency::new(ctx.redis().clone(), &ctx.keyspace(), "orders", DAY).unwrap();
    // Long enough that the checks below run before it expires, even on a loaded machine.
    let lease_time = Duration::from_secs(2);

    // The attempt "crashes": its lease is never completed nor abandoned.
    drop(run(seen.acquire("1-0", lease_time).await.unwrap()));
    let ttl = pttl(&ctx, &seen.key("1-0")).await;
    assert!(ttl > 0 && ttl <= 2_000, "lease pttl {ttl}");
    assert!(matches!(
        seen.acquire("1-0", lease_time).await.unwrap(),
        Claim::Busy { .. }
    ));
    // Once the lease has expired, a redelivery runs the work again and can finish it.
    let lease = wait_for("the crashed lease to expire", DEADLINE, || async {
        match seen.acquire("1-0", Duration::from_secs(30)).await.unwrap() {
            Claim::Run(lease) => Some(lease),
            Claim::Busy { .. } => None,
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
    assert!(lease.complete().await.unwrap());
    assert!(matches!(
        seen.acquire("1-0", lease_time).await.unwrap(),
        Claim::Done
    ));
}

#[tokio::test]
async fn a_stale_holder_cannot_complete_or_abandon_a_newer_lease() {
    let ctx = TestContext::new().await;
    let seen = Idempotency::new(ctx.redis().clone(), &ctx.keyspace(), "orders", DAY).unwrap();

    let stale = run(seen
        .acquire("1-0", Duration::from_millis(200))
        .await
        .unwrap());
    // The stale holder is too slow: its lease expires and another attempt takes the id.
    let current = wait_for("the first lease to expire", DEADLINE, || async {
        match seen.acquire("1-0", Duration::from_secs(30)).await.unwrap() {
            Claim::Run(lease) => Some(lease),
            Claim::Busy { .. } => None,
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
    // Neither marking done nor abandoning touches the new holder's lease.
    assert!(!stale.complete().await.unwrap());
    assert!(!stale.abandon().await.unwrap());
    match seen.acquire("1-0", Duration::from_secs(30)).await.unwrap() {
        Claim::Busy { retry_after } => assert!(retry_after > Duration::from_secs(1)),
        other => panic!("the new lease was disturbed: {other:?}"),
    }
    let ttl = pttl(&ctx, current.key()).await;
    assert!(ttl > 1_000 && ttl <= 30_000, "lease pttl {ttl}");
    // The new holder finishes normally.
    assert!(current.complete().await.unwrap());
    assert!(matches!(
        seen.acquire("1-0", Duration::from_secs(30)).await.unwrap(),
        Claim::Done
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_attempts_exactly_one_runs() {
    let ctx = TestContext::new().await;
    let seen = Idempotency::new(ctx.redis().clone(), &ctx.keyspace(), "orders", DAY).unwrap();

    for round in 0..20 {
        let id = format!("{round}-0");
        let runs = Arc::new(AtomicU32::new(0));
        let busy = Arc::new(AtomicU32::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (seen, id, runs, busy, barrier) = (
                seen.clone(),
                id.clone(),
                Arc::clone(&runs),
                Arc::clone(&busy),
                Arc::clone(&barrier),
            );
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                match seen.acquire(&id, Duration::from_secs(30)).await.unwrap() {
                    Claim::Run(lease) => {
                        runs.fetch_add(1, Ordering::SeqCst);
                        assert!(lease.complete().await.unwrap());
                    }
                    // Either still in progress or already completed by the winner.
                    Claim::Busy { .. } | Claim::Done => {
                        busy.fetch_add(1, Ordering::SeqCst);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "round {round}");
        assert_eq!(busy.load(Ordering::SeqCst), 7, "round {round}");
        assert!(matches!(
            seen.acquire(&id, Duration::from_secs(30)).await.unwrap(),
            Claim::Done
        ));
    }
}

#[tokio::test]
async fn idempotency_lets_each_id_through_once_until_abandoned() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let seen = Idempotency::new(
        ctx.redis().clone(),
        &keys,
        "orders",
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(seen.begin("1-0").await.unwrap());
    assert!(!seen.begin("1-0").await.unwrap());
    assert!(seen.begin("2-0").await.unwrap());
    seen.abandon("1-0").await.unwrap();
    assert!(seen.begin("1-0").await.unwrap());
    assert_eq!(
        seen.key("1-0").slot(),
        stream_key(&keys, "orders").unwrap().slot()
    );
    let ttl: i64 = ctx
        .redis()
        .query(redis::cmd("PTTL").arg(seen.key("1-0")))
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000);
    assert!(Idempotency::new(ctx.redis().clone(), &keys, "orders", Duration::ZERO).is_err());
}
