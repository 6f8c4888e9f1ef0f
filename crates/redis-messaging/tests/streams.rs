//! Streams against a real server: producing with retention, consuming with acknowledgements,
//! redelivery after a consumer dies, dead-lettering, graceful shutdown, idle-consumer removal and
//! the idempotency helper.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis_messaging::{
    CancellationToken, Consumer, Delivery, Error, Idempotency, Producer, Retention,
    read_dead_letters, remove_idle_consumers,
};
use redis_test_support::{TestContext, wait_until};
use serde::{Deserialize, Serialize};

const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    n: u64,
}

async fn pending(ctx: &TestContext, stream: &redis_core::Key, group: &str) -> i64 {
    let summary: redis::Value = ctx
        .redis()
        .query(redis::cmd("XPENDING").arg(stream).arg(group))
        .await
        .unwrap();
    match summary {
        redis::Value::Array(parts) => match &parts[0] {
            redis::Value::Int(n) => *n,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// Creates group `g` on `stream` (MKSTREAM), adds one entry per payload (field `p`) and lets
/// `consumer` read them all without acknowledging, as a consumer that then died would. Returns
/// the entry ids in order.
async fn pending_with(
    redis: &redis_core::Redis,
    stream: &redis_core::Key,
    consumer: &str,
    payloads: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let _: String = redis
        .query(
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg("g")
                .arg("0")
                .arg("MKSTREAM"),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for payload in payloads {
        let id: String = redis
            .query(
                redis::cmd("XADD")
                    .arg(stream)
                    .arg("*")
                    .arg("p")
                    .arg(payload),
            )
            .await
            .unwrap();
        ids.push(id);
    }
    let _: redis::Value = redis
        .query(
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg(consumer)
                .arg("COUNT")
                .arg(ids.len())
                .arg("STREAMS")
                .arg(stream)
                .arg(">"),
        )
        .await
        .unwrap();
    ids
}

fn orders(range: std::ops::Range<u64>) -> impl Iterator<Item = String> {
    range.map(|n| format!(r#"{{"n":{n}}}"#))
}

#[tokio::test]
async fn producer_trims_by_length_and_by_age() {
    let ctx = TestContext::new().await;
    let ks = ctx.keyspace().pattern("stream").unwrap();

    let by_len = Producer::builder(ctx.redis().clone(), ks.key("len").unwrap())
        .retention(Retention::MaxLen(10))
        .build()
        .unwrap();
    let orders: Vec<Order> = (0..1000).map(|n| Order { n }).collect();
    let ids = by_len.send_batch(&orders).await.unwrap();
    assert_eq!(ids.len(), 1000);
    assert!(ids.windows(2).all(|w| w[0] != w[1]));
    let len: u64 = ctx
        .redis()
        .query(redis::cmd("XLEN").arg(by_len.stream()))
        .await
        .unwrap();
    // Approximate trimming keeps at least 10 and far fewer than 1000.
    assert!((10..1000).contains(&len), "len {len}");

    let by_age = Producer::builder(ctx.redis().clone(), ks.key("age").unwrap())
        .retention(Retention::MaxAge(Duration::from_millis(1)))
        .build()
        .unwrap();
    let first = by_age.send(&Order { n: 1 }).await.unwrap();
    assert!(first.contains('-'));
    // Entries older than the age limit go once a later write trims (MINID by the server clock).
    wait_until("old entries trimmed by MINID", DEADLINE, || async {
        let _ = by_age.send_batch(&orders[..200]).await.unwrap();
        let oldest: redis::streams::StreamRangeReply = ctx
            .redis()
            .query(
                redis::cmd("XRANGE")
                    .arg(by_age.stream())
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1),
            )
            .await
            .unwrap();
        oldest.ids.first().is_some_and(|e| e.id != first)
    })
    .await;

    let bad = Producer::builder(ctx.redis().clone(), ks.key("bad").unwrap())
        .retention(Retention::MaxLen(0))
        .build();
    assert!(matches!(bad, Err(Error::InvalidConfig(_))));
}

#[tokio::test]
async fn bad_consumer_settings_are_rejected() {
    let ctx = TestContext::new().await;
    let stream = ctx.keyspace().key("s").unwrap();
    let builder = || Consumer::builder(ctx.redis().clone(), stream.clone(), "g", "c");
    assert!(matches!(
        builder().batch_size(0).build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        builder().concurrency(0).build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        builder().max_deliveries(0).build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        builder().block(Duration::ZERO).build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        builder()
            .min_idle(Duration::from_secs(1))
            .claim_interval(Duration::from_secs(2))
            .build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        Consumer::builder(ctx.redis().clone(), stream.clone(), "", "c").build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(builder().build().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_are_handled_and_acknowledged_and_shutdown_is_graceful() {
    let ctx = TestContext::new().await;
    let stream = ctx
        .keyspace()
        .pattern("stream")
        .unwrap()
        .key("orders")
        .unwrap();
    let producer = Producer::builder(ctx.redis().clone(), stream.clone())
        .build()
        .unwrap();
    let consumer = Consumer::builder(ctx.redis().clone(), stream.clone(), "billing", "b1")
        .batch_size(20)
        .concurrency(4)
        .block(Duration::from_millis(200))
        .build()
        .unwrap();
    // The group starts at "0": entries written before the first run are consumed too.
    let orders: Vec<Order> = (0..200).map(|n| Order { n }).collect();
    producer.send_batch(&orders).await.unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let run = {
        let consumer = consumer.clone();
        let seen = seen.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            consumer
                .run(shutdown, move |d: Delivery<Order>| {
                    let seen = seen.clone();
                    async move {
                        assert_eq!(d.attempt, 1);
                        assert_eq!(&*d.consumer, "b1");
                        // Slow enough that a shutdown lands while handlers are in flight.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        seen.lock().unwrap().push(d.payload.n);
                        Ok::<_, std::convert::Infallible>(())
                    }
                })
                .await
        })
    };
    wait_until("half the orders handled", DEADLINE, || async {
        seen.lock().unwrap().len() >= 100
    })
    .await;
    shutdown.cancel();
    let stats = tokio::time::timeout(DEADLINE, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Graceful: whatever was fetched was handled and acknowledged; nothing is left half-done.
    assert_eq!(stats.delivered, stats.acked, "{stats:?}");
    assert_eq!(pending(&ctx, &stream, "billing").await, 0);
    let handled = seen.lock().unwrap().len() as u64;
    assert_eq!(handled, stats.acked);

    // A second run picks up exactly the rest.
    let shutdown = CancellationToken::new();
    let run = {
        let consumer = consumer.clone();
        let seen = seen.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            consumer
                .run(shutdown, move |d: Delivery<Order>| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push(d.payload.n);
                        Ok::<_, std::convert::Infallible>(())
                    }
                })
                .await
        })
    };
    wait_until("every order handled", DEADLINE, || async {
        seen.lock().unwrap().len() >= 200
    })
    .await;
    shutdown.cancel();
    run.await.unwrap().unwrap();
    let mut all = seen.lock().unwrap().clone();
    all.sort_unstable();
    assert_eq!(all, (0..200).collect::<Vec<_>>(), "each exactly once");
    assert_eq!(pending(&ctx, &stream, "billing").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_of_a_killed_consumer_is_redelivered_to_another_after_min_idle() {
    let ctx = TestContext::new().await;
    let stream = ctx
        .keyspace()
        .pattern("stream")
        .unwrap()
        .key("jobs")
        .unwrap();
    let producer = Producer::builder(ctx.redis().clone(), stream.clone())
        .build()
        .unwrap();
    let build = |name: &str| {
        Consumer::builder(ctx.redis().clone(), stream.clone(), "workers", name)
            .block(Duration::from_millis(100))
            .min_idle(Duration::from_millis(800))
            .claim_interval(Duration::from_millis(100))
            .build()
            .unwrap()
    };

    // Consumer A takes the message and hangs in its handler; then it is killed (task aborted).
    let started = Arc::new(tokio::sync::Notify::new());
    let a = {
        let consumer = build("a");
        let started = started.clone();
        tokio::spawn(async move {
            consumer
                .run(CancellationToken::new(), move |_d: Delivery<Order>| {
                    let started = started.clone();
                    async move {
                        started.notify_one();
                        std::future::pending::<()>().await;
                        Ok::<_, std::convert::Infallible>(())
                    }
                })
                .await
        })
    };
    // The first delivery happens after the XADD starts, and the handler may only notice it much
    // later on a loaded machine: measure from before the write, a bound that cannot be late.
    let first_delivery = std::time::Instant::now();
    let id = producer.send(&Order { n: 7 }).await.unwrap();
    tokio::time::timeout(DEADLINE, started.notified())
        .await
        .unwrap();
    a.abort();
    let _ = a.await;
    assert_eq!(pending(&ctx, &stream, "workers").await, 1);

    // Consumer B reclaims it once it has been idle for min_idle, as a second delivery.
    let got = Arc::new(Mutex::new(None));
    let shutdown = CancellationToken::new();
    let consumer_b = build("b");
    let b = {
        let consumer = consumer_b.clone();
        let got = got.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            consumer
                .run(shutdown, move |d: Delivery<Order>| {
                    let got = got.clone();
                    async move {
                        *got.lock().unwrap() =
                            Some((d.id, d.attempt, d.payload.n, first_delivery.elapsed()));
                        Ok::<_, std::convert::Infallible>(())
                    }
                })
                .await
        })
    };
    wait_until("the message redelivered to b", DEADLINE, || async {
        got.lock().unwrap().is_some()
    })
    .await;
    shutdown.cancel();
    b.await.unwrap().unwrap();
    let (got_id, attempt, n, after) = got.lock().unwrap().clone().unwrap();
    assert_eq!((got_id, attempt, n), (id, 2, 7));
    // Not before min_idle (800 ms) after the first delivery (10 ms for the server's clock).
    assert!(
        after >= Duration::from_millis(790),
        "redelivered after {after:?}"
    );
    assert_eq!(consumer_b.stats().claimed, 1);
    assert_eq!(pending(&ctx, &stream, "workers").await, 0);

    // "a" has nothing pending and is idle: it may be removed; "b" too once idle long enough.
    let removed = remove_idle_consumers(ctx.redis(), &stream, "workers", Duration::ZERO)
        .await
        .unwrap();
    let mut removed = removed;
    removed.sort();
    assert_eq!(removed, ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_entry_behind_many_fresh_pending_ones_is_claimed_in_one_pass() {
    let ctx = TestContext::new().await;
    let stream = ctx.keyspace().key("backlog").unwrap();
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
    let consumer = Consumer::builder(redis.clone(), stream.clone(), "g", "c")
        .batch_size(1)
        .block(Duration::from_millis(100))
        .min_idle(Duration::from_secs(60))
        .claim_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let run = {
        let consumer = consumer.clone();
        let got = got.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            consumer
                .run(shutdown, move |d: Delivery<Order>| {
                    let got = got.clone();
                    async move {
                        got.lock().unwrap().push((d.payload.n, d.attempt));
                        Ok::<_, std::convert::Infallible>(())
                    }
                })
                .await
        })
    };
    wait_until("the stalled entries claimed", DEADLINE, || async {
        got.lock().unwrap().len() >= 5
    })
    .await;
    shutdown.cancel();
    run.await.unwrap().unwrap();
    let mut got = got.lock().unwrap().clone();
    got.sort_unstable();
    assert_eq!(got, (50..55).map(|n| (n, 2)).collect::<Vec<_>>());
    assert_eq!(consumer.stats().claimed, 5);
    // The fresh ones were left alone.
    assert_eq!(pending(&ctx, &stream, "g").await, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_with_pending_entries_are_never_removed() {
    let ctx = TestContext::new().await;
    let stream = ctx.keyspace().key("jobs").unwrap();
    let redis = ctx.redis();
    // "busy" reads the entry and never acknowledges it; "idle" reads nothing.
    pending_with(redis, &stream, "busy", ["1".to_owned()]).await;
    let _: i64 = redis
        .query(
            redis::cmd("XGROUP")
                .arg("CREATECONSUMER")
                .arg(&stream)
                .arg("g")
                .arg("idle"),
        )
        .await
        .unwrap();
    let removed = remove_idle_consumers(redis, &stream, "g", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(removed, ["idle"]);
    // Not idle long enough: kept.
    let removed = remove_idle_consumers(redis, &stream, "g", Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(removed.is_empty());
    assert_eq!(pending(&ctx, &stream, "g").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_message_reaches_the_dead_letter_stream_after_exactly_n_deliveries() {
    let ctx = TestContext::new().await;
    let stream = ctx
        .keyspace()
        .pattern("stream")
        .unwrap()
        .key("poison")
        .unwrap();
    let producer = Producer::builder(ctx.redis().clone(), stream.clone())
        .build()
        .unwrap();
    let consumer = Consumer::builder(ctx.redis().clone(), stream.clone(), "g", "c1")
        .block(Duration::from_millis(100))
        .min_idle(Duration::from_millis(200))
        .claim_interval(Duration::from_millis(50))
        .max_deliveries(3)
        .build()
        .unwrap();
    let poison = producer.send(&Order { n: 666 }).await.unwrap();
    let good = producer.send(&Order { n: 1 }).await.unwrap();
    // A payload no `Order` decodes from: dead-lettered at once, without reaching the handler.
    let garbage: String = ctx
        .redis()
        .query(
            redis::cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("p")
                .arg("{oops"),
        )
        .await
        .unwrap();

    let attempts = Arc::new(Mutex::new(Vec::new()));
    let handled_good = Arc::new(AtomicU64::new(0));
    let shutdown = CancellationToken::new();
    let run = {
        let consumer = consumer.clone();
        let attempts = attempts.clone();
        let handled_good = handled_good.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            consumer
                .run(shutdown, move |d: Delivery<Order>| {
                    let attempts = attempts.clone();
                    let handled_good = handled_good.clone();
                    async move {
                        if d.payload.n == 666 {
                            attempts.lock().unwrap().push(d.attempt);
                            return Err(format!("cannot bill order {}", d.payload.n));
                        }
                        handled_good.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                })
                .await
        })
    };
    wait_until("two dead letters", DEADLINE, || async {
        read_dead_letters(ctx.redis(), &stream, "-", 10)
            .await
            .unwrap()
            .len()
            >= 2
    })
    .await;
    // Give a wrong implementation the chance to deliver a fourth time before checking.
    wait_until("claim passes after dead-lettering", DEADLINE, || async {
        consumer.stats().claimed >= 2
    })
    .await;
    shutdown.cancel();
    let stats = run.await.unwrap().unwrap();

    assert_eq!(*attempts.lock().unwrap(), [1, 2, 3], "exactly N deliveries");
    assert_eq!(handled_good.load(Ordering::SeqCst), 1);
    let dead = read_dead_letters(ctx.redis(), &stream, "-", 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let by_id = |id: &str| dead.iter().find(|d| d.original_id == id).unwrap().clone();
    let p = by_id(&poison);
    assert_eq!(p.attempts, 3);
    assert_eq!(p.reason, "cannot bill order 666");
    assert_eq!(p.group, "g");
    assert_eq!(p.consumer, "c1");
    assert_eq!(p.payload.as_deref(), Some(&br#"{"n":666}"#[..]));
    let g = by_id(&garbage);
    assert_eq!(g.attempts, 1);
    assert!(g.reason.contains("does not decode"), "{}", g.reason);
    assert!(dead.iter().all(|d| d.original_id != good));
    assert_eq!(stats.dead_lettered, 2);
    assert_eq!(stats.failed, 3);
    assert_eq!(pending(&ctx, &stream, "g").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_whose_consumers_keep_dying_is_dead_lettered_by_the_claim() {
    let ctx = TestContext::new().await;
    let stream = ctx.keyspace().key("crashy").unwrap();
    let redis = ctx.redis();
    // Two deliveries that never finished (their consumers "crashed"): read, then claimed again.
    let id = pending_with(redis, &stream, "dead1", orders(5..6))
        .await
        .remove(0);
    let _: redis::Value = redis
        .query(
            redis::cmd("XCLAIM")
                .arg(&stream)
                .arg("g")
                .arg("dead2")
                .arg(0)
                .arg(&id),
        )
        .await
        .unwrap();

    let consumer = Consumer::builder(redis.clone(), stream.clone(), "g", "c")
        .block(Duration::from_millis(100))
        .min_idle(Duration::from_millis(1))
        .claim_interval(Duration::from_millis(1))
        .max_deliveries(2)
        .build()
        .unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let shutdown = CancellationToken::new();
    let run = {
        let consumer = consumer.clone();
        let handled = handled.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            consumer
                .run(shutdown, move |_d: Delivery<Order>| {
                    handled.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, std::convert::Infallible>(()) }
                })
                .await
        })
    };
    wait_until("the entry dead-lettered", DEADLINE, || async {
        !read_dead_letters(redis, &stream, "-", 10)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    shutdown.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(
        handled.load(Ordering::SeqCst),
        0,
        "not delivered a third time"
    );
    let dead = read_dead_letters(redis, &stream, "-", 10).await.unwrap();
    assert_eq!(dead[0].original_id, id);
    assert_eq!(dead[0].attempts, 2);
    assert!(dead[0].reason.contains("without an acknowledgement"));
    assert_eq!(pending(&ctx, &stream, "g").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_min_idle_of_duration_max_means_never_claim_not_a_panic() {
    let ctx = TestContext::new().await;
    let stream = ctx.keyspace().key("patient").unwrap();
    let producer = Producer::builder(ctx.redis().clone(), stream.clone())
        .build()
        .unwrap();
    let consumer = Consumer::builder(ctx.redis().clone(), stream.clone(), "g", "c")
        .block(Duration::from_millis(50))
        .min_idle(Duration::MAX)
        .build()
        .unwrap();
    producer.send(&Order { n: 1 }).await.unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let shutdown = CancellationToken::new();
    let run = {
        let handled = handled.clone();
        let shutdown = shutdown.clone();
        let consumer = consumer.clone();
        tokio::spawn(async move {
            consumer
                .run(shutdown, move |_d: Delivery<Order>| {
                    handled.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, std::convert::Infallible>(()) }
                })
                .await
        })
    };
    wait_until("the entry handled", DEADLINE, || async {
        handled.load(Ordering::SeqCst) == 1
    })
    .await;
    shutdown.cancel();
    let stats = run.await.expect("run did not panic").unwrap();
    assert_eq!(stats.acked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_entry_deleted_from_the_stream_is_dropped_by_the_claim() {
    let ctx = TestContext::new().await;
    let stream = ctx.keyspace().key("trimmed").unwrap();
    let redis = ctx.redis();
    // A consumer took all three and died; then the first and the last were deleted (trimmed,
    // XDEL) while still pending.
    let ids = pending_with(redis, &stream, "dead", orders(0..3)).await;
    let deleted: i64 = redis
        .query(redis::cmd("XDEL").arg(&stream).arg(&ids[0]).arg(&ids[2]))
        .await
        .unwrap();
    assert_eq!(deleted, 2);

    let consumer = Consumer::builder(redis.clone(), stream.clone(), "g", "c")
        .block(Duration::from_millis(100))
        .min_idle(Duration::from_millis(1))
        .claim_interval(Duration::from_millis(1))
        .build()
        .unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let run = {
        let consumer = consumer.clone();
        let got = got.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            consumer
                .run(shutdown, move |d: Delivery<Order>| {
                    let got = got.clone();
                    async move {
                        got.lock().unwrap().push((d.payload.n, d.attempt));
                        Ok::<_, std::convert::Infallible>(())
                    }
                })
                .await
        })
    };
    wait_until(
        "the surviving entry handled, nothing pending",
        DEADLINE,
        || async { !got.lock().unwrap().is_empty() && pending(&ctx, &stream, "g").await == 0 },
    )
    .await;
    shutdown.cancel();
    let stats = run.await.unwrap().unwrap();
    assert_eq!(*got.lock().unwrap(), [(1, 2)]);
    assert_eq!(
        (stats.claimed, stats.dead_lettered, stats.failed),
        (1, 0, 0)
    );
    assert!(
        read_dead_letters(redis, &stream, "-", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn idempotency_lets_each_id_through_once_until_abandoned() {
    let ctx = TestContext::new().await;
    let scope = ctx.keyspace().key("orders").unwrap();
    let seen =
        Idempotency::new(ctx.redis().clone(), scope.clone(), Duration::from_secs(60)).unwrap();
    assert!(seen.begin("1-0").await.unwrap());
    assert!(!seen.begin("1-0").await.unwrap());
    assert!(seen.begin("2-0").await.unwrap());
    seen.abandon("1-0").await.unwrap();
    assert!(seen.begin("1-0").await.unwrap());
    assert_eq!(seen.key("1-0").slot(), scope.slot());
    let ttl: i64 = ctx
        .redis()
        .query(redis::cmd("PTTL").arg(seen.key("1-0")))
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000);
    assert!(Idempotency::new(ctx.redis().clone(), scope, Duration::ZERO).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_recovers_from_a_server_restart() {
    let mut ctx = TestContext::private().await;
    let stream = ctx.keyspace().key("jobs").unwrap();
    let producer = Producer::builder(ctx.redis().clone(), stream.clone())
        .build()
        .unwrap();
    let consumer = Consumer::builder(ctx.redis().clone(), stream.clone(), "g", "c")
        .block(Duration::from_millis(100))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let run = {
        let consumer = consumer.clone();
        let seen = seen.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            consumer
                .run(shutdown, move |d: Delivery<Order>| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push(d.payload.n);
                        Ok::<_, std::convert::Infallible>(())
                    }
                })
                .await
        })
    };
    producer.send(&Order { n: 1 }).await.unwrap();
    wait_until("first order", DEADLINE, || async {
        seen.lock().unwrap().len() == 1
    })
    .await;

    // The restarted server is empty: the stream and group are gone and must be recreated.
    ctx.server().unwrap().restart();
    wait_until("order after the restart", DEADLINE, || async {
        // Writes may fail until the shared connection has reconnected.
        let _ = producer.send(&Order { n: 2 }).await;
        seen.lock().unwrap().contains(&2)
    })
    .await;
    shutdown.cancel();
    run.await.unwrap().unwrap();
}
