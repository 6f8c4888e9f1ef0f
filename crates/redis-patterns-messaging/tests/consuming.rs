//! A consumer against a real server: entries are handled and acknowledged, a shutdown is
//! graceful, bad settings are refused, and a restarted server is survived.

mod support;

use std::time::Duration;

use redis_messaging::{Consumer, Error, Producer, RetryPolicy, stream_key};
use redis_test_support::{TestContext, wait_until};
use support::{DEADLINE, Order, Running, backoff, ms, pending};

#[tokio::test]
async fn bad_consumer_settings_are_rejected() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let builder = || Consumer::builder(ctx.redis().clone(), &keys, "s", "g", "c");
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
        builder().retry(RetryPolicy::Schedule(Vec::new())).build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        builder()
            .min_idle(Duration::from_secs(1))
            .heartbeat_interval(Duration::from_secs(1))
            .build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        builder().heartbeat_interval(Duration::ZERO).build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        builder().delayed_poll(Duration::from_micros(10)).build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(
        builder()
            .min_idle(Duration::from_secs(1))
            .heartbeat_interval(Duration::from_millis(999))
            .build()
            .is_ok()
    );
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
        Consumer::builder(ctx.redis().clone(), &keys, "s", "", "c").build(),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        Consumer::builder(ctx.redis().clone(), &keys, "", "g", "c").build(),
        Err(Error::Core(redis_core::Error::InvalidKey(_)))
    ));
    assert!(builder().build().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_are_handled_and_acknowledged_and_shutdown_is_graceful() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let producer = Producer::builder(ctx.redis().clone(), &keys, "orders")
        .build()
        .unwrap();
    let consumer = Consumer::builder(ctx.redis().clone(), &keys, "orders", "billing", "b1")
        .batch_size(20)
        .concurrency(4)
        .block(Duration::from_millis(200))
        .build()
        .unwrap();
    assert_eq!(consumer.stream(), producer.stream());
    // The group starts at "0": entries written before the first run are consumed too.
    let orders: Vec<Order> = (0..200).map(|n| Order { n }).collect();
    producer.send_batch(&orders).await.unwrap();

    // Slow enough that a shutdown lands while handlers are in flight.
    let (run, first) = Running::counting_slowly::<Order>(&consumer, Duration::from_millis(2));
    wait_until("half the orders handled", DEADLINE, || async {
        first.count() >= 100
    })
    .await;
    let stats = run.stop().await;
    // Graceful: whatever a handler started was handled and acknowledged; what was read and not
    // started was handed back (pending, claimable at once); nothing is left half-done.
    assert_eq!(stats.delivered, stats.acked, "{stats:?}");
    assert_eq!(
        pending(ctx.redis(), consumer.stream(), "billing").await,
        stats.handed_back as i64
    );
    assert_eq!(first.count() as u64, stats.acked);
    assert!(
        first
            .deliveries()
            .iter()
            .all(|d| d.attempt == 1 && &*d.consumer == "b1")
    );

    // A second run picks up exactly the rest, the handed-back entries as first attempts.
    let (run, second) = Running::counting::<Order>(&consumer);
    wait_until("every order handled", DEADLINE, || async {
        first.count() + second.count() >= 200
    })
    .await;
    run.stop().await;
    let mut all = first.numbers();
    all.extend(second.numbers());
    all.sort_unstable();
    assert_eq!(all, (0..200).collect::<Vec<_>>(), "each exactly once");
    assert!(second.deliveries().iter().all(|d| d.attempt == 1));
    assert_eq!(pending(ctx.redis(), consumer.stream(), "billing").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_min_idle_of_duration_max_means_never_claim_not_a_panic() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let producer = Producer::builder(ctx.redis().clone(), &keys, "patient")
        .build()
        .unwrap();
    let consumer = Consumer::builder(ctx.redis().clone(), &keys, "patient", "g", "c")
        .block(Duration::from_millis(50))
        .min_idle(Duration::MAX)
        .build()
        .unwrap();
    producer.send(&Order { n: 1 }).await.unwrap();
    let (run, handled) = Running::counting::<Order>(&consumer);
    wait_until("the entry handled", DEADLINE, || async {
        handled.count() == 1
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.acked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_recovers_from_a_server_restart() {
    let mut ctx = TestContext::private().await;
    let keys = ctx.keyspace();
    let producer = Producer::builder(ctx.redis().clone(), &keys, "jobs")
        .build()
        .unwrap();
    let consumer = Consumer::builder(ctx.redis().clone(), &keys, "jobs", "g", "c")
        .block(Duration::from_millis(100))
        .reconnect_backoff(backoff(ms(20), ms(200)))
        .build()
        .unwrap();
    let (run, handled) = Running::counting::<Order>(&consumer);
    producer.send(&Order { n: 1 }).await.unwrap();
    wait_until("first order", DEADLINE, || async { handled.count() == 1 }).await;

    // The restarted server is empty: the stream and group are gone and must be recreated.
    ctx.server().unwrap().restart();
    wait_until("order after the restart", DEADLINE, || async {
        // Writes may fail until the shared connection has reconnected.
        let _ = producer.send(&Order { n: 2 }).await;
        handled.numbers().contains(&2)
    })
    .await;
    run.stop().await;
    assert_eq!(stream_key(&keys, "jobs").unwrap(), *consumer.stream());
}
