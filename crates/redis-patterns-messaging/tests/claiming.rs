//! Reclaiming entries stuck with dead consumers: redelivery after `min_idle`, a pass that scans
//! past fresh entries, and pending entries whose stream entry was deleted.

mod support;

use std::{convert::Infallible, sync::Arc, time::Duration};

use redis_core::redis;
use redis_messaging::{
    Consumer, Delivery, Producer, read_dead_letters, remove_idle_consumers, stream_key,
};
use redis_test_support::{TestContext, wait_until};
use support::{DEADLINE, Order, Running, orders, pending, pending_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_of_a_killed_consumer_is_redelivered_to_another_after_min_idle() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let producer = Producer::builder(ctx.redis().clone(), &keys, "jobs")
        .build()
        .unwrap();
    let build = |name: &str| {
        Consumer::builder(ctx.redis().clone(), &keys, "jobs", "workers", name)
            .block(Duration::from_millis(100))
            .min_idle(Duration::from_millis(800))
            .claim_interval(Duration::from_millis(100))
            .build()
            .unwrap()
    };

    // Consumer A takes the message and hangs in its handler; then it is killed (task aborted).
    let started = Arc::new(tokio::sync::Notify::new());
    let a = Running::start(&build("a"), {
        let started = started.clone();
        move |_d: Delivery<Order>| {
            let started = started.clone();
            async move {
                started.notify_one();
                std::future::pending::<()>().await;
                Ok::<_, Infallible>(())
            }
        }
    });
    // The first delivery happens after the XADD starts, and the handler may only notice it much
    // later on a loaded machine: measure from before the write, a bound that cannot be late.
    let first_delivery = std::time::Instant::now();
    let id = producer.send(&Order { n: 7 }).await.unwrap();
    tokio::time::timeout(DEADLINE, started.notified())
        .await
        .unwrap();
    a.kill().await;
    assert_eq!(pending(ctx.redis(), producer.stream(), "workers").await, 1);

    // Consumer B reclaims it once it has been idle for min_idle, as a second delivery.
    let consumer_b = build("b");
    let (b, handled) = Running::counting::<Order>(&consumer_b);
    wait_until("the message redelivered to b", DEADLINE, || async {
        handled.count() > 0
    })
    .await;
    b.stop().await;
    let d = handled.deliveries().remove(0);
    assert_eq!((d.id, d.attempt, d.payload.n), (id, 2, 7));
    // Not before min_idle (800 ms) after the first delivery (10 ms for the server's clock).
    let after = handled.first_at().unwrap() - first_delivery;
    assert!(
        after >= Duration::from_millis(790),
        "redelivered after {after:?}"
    );
    assert_eq!(consumer_b.stats().claimed, 1);
    assert_eq!(pending(ctx.redis(), producer.stream(), "workers").await, 0);

    // "a" has nothing pending and is idle: it may be removed; "b" too once idle long enough.
    let mut removed = remove_idle_consumers(ctx.redis(), &keys, "jobs", "workers", Duration::ZERO)
        .await
        .unwrap();
    removed.sort();
    assert_eq!(removed, ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_entry_behind_many_fresh_pending_ones_is_claimed_in_one_pass() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let stream = stream_key(&keys, "backlog").unwrap();
    let redis = ctx.redis();
    let ids = pending_with(redis, &stream, "busy", orders(0..55)).await;
    // The first 50 pending ids are fresh (being worked on); the last 5, behind them in the
    // pending list, have been idle for an hour (their consumer died).
    let _: redis::Value = redis
        .query(
            redis::cmd("XCLAIM")
                .arg(&stream)
                .arg("g")
                .arg("busy")
                .arg(0)
                .arg(&ids[..50])
                .arg("JUSTID"),
        )
        .await
        .unwrap();
    let _: redis::Value = redis
        .query(
            redis::cmd("XCLAIM")
                .arg(&stream)
                .arg("g")
                .arg("gone")
                .arg(0)
                .arg(&ids[50..])
                .arg("IDLE")
                .arg(3_600_000)
                .arg("RETRYCOUNT")
                .arg(1)
                .arg("JUSTID"),
        )
        .await
        .unwrap();

    // One entry per XAUTOCLAIM step, which looks at 10 pending ids: five steps of fresh entries
    // come before the stalled ones. With a claim interval of a minute, only a pass that keeps
    // scanning past them gets the stalled entries before the deadline.
    let consumer = Consumer::builder(redis.clone(), &keys, "backlog", "g", "c")
        .batch_size(1)
        .block(Duration::from_millis(100))
        .min_idle(Duration::from_secs(60))
        .claim_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let (run, handled) = Running::counting::<Order>(&consumer);
    wait_until("the stalled entries claimed", DEADLINE, || async {
        handled.count() >= 5
    })
    .await;
    run.stop().await;
    assert_eq!(
        handled.numbers_and_attempts(),
        (50..55).map(|n| (n, 2)).collect::<Vec<_>>()
    );
    assert_eq!(consumer.stats().claimed, 5);
    // The fresh ones were left alone.
    assert_eq!(pending(redis, &stream, "g").await, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_entry_deleted_from_the_stream_is_dropped_by_the_claim() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let stream = stream_key(&keys, "trimmed").unwrap();
    let redis = ctx.redis();
    // A consumer took all three and died; then the first and the last were deleted (trimmed,
    // XDEL) while still pending.
    let ids = pending_with(redis, &stream, "dead", orders(0..3)).await;
    let deleted: i64 = redis
        .query(redis::cmd("XDEL").arg(&stream).arg(&ids[0]).arg(&ids[2]))
        .await
        .unwrap();
    assert_eq!(deleted, 2);

    let consumer = Consumer::builder(redis.clone(), &keys, "trimmed", "g", "c")
        .block(Duration::from_millis(100))
        .min_idle(Duration::from_millis(1))
        .claim_interval(Duration::from_millis(1))
        .build()
        .unwrap();
    let (run, handled) = Running::counting::<Order>(&consumer);
    wait_until(
        "the surviving entry handled, nothing pending",
        DEADLINE,
        || async { handled.count() > 0 && pending(redis, &stream, "g").await == 0 },
    )
    .await;
    let stats = run.stop().await;
    assert_eq!(handled.numbers_and_attempts(), [(1, 2)]);
    assert_eq!(
        (stats.claimed, stats.dead_lettered, stats.failed),
        (1, 0, 0)
    );
    assert!(
        read_dead_letters(redis, &keys, "trimmed", "-", 10)
            .await
            .unwrap()
            .is_empty()
    );
}
