//! The dead-letter stream against a real server: a poison message after exactly N deliveries, an
//! undecodable payload at once, and an entry whose consumers keep dying by the claim.

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis_core::redis;
use redis_messaging::{Consumer, Delivery, Producer, RetryPolicy, read_dead_letters, stream_key};
use redis_test_support::{TestContext, wait_until};
use support::{DEADLINE, Order, Running, orders, pending, pending_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_message_reaches_the_dead_letter_stream_after_exactly_n_deliveries() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let producer = Producer::builder(ctx.redis().clone(), &keys, "poison")
        .build()
        .unwrap();
    let consumer = Consumer::builder(ctx.redis().clone(), &keys, "poison", "g", "c1")
        .block(Duration::from_millis(100))
        .min_idle(Duration::from_millis(200))
        .claim_interval(Duration::from_millis(50))
        .retry(RetryPolicy::Schedule(vec![Duration::from_millis(20)]))
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
                .arg(producer.stream())
                .arg("*")
                .arg("p")
                .arg("{oops"),
        )
        .await
        .unwrap();

    let attempts = Arc::new(Mutex::new(Vec::new()));
    let handled_good = Arc::new(AtomicU64::new(0));
    let run = Running::start(&consumer, {
        let attempts = attempts.clone();
        let handled_good = handled_good.clone();
        move |d: Delivery<Order>| {
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
        }
    });
    let dead_letters = || read_dead_letters(ctx.redis(), &keys, "poison", "-", 10);
    wait_until("two dead letters", DEADLINE, || async {
        dead_letters().await.unwrap().len() >= 2
    })
    .await;
    // Nothing pending any more: no way left to deliver the poison message a fourth time.
    wait_until("nothing pending", DEADLINE, || async {
        pending(ctx.redis(), producer.stream(), "g").await == 0
    })
    .await;
    let stats = run.stop().await;

    assert_eq!(*attempts.lock().unwrap(), [1, 2, 3], "exactly N deliveries");
    assert_eq!(handled_good.load(Ordering::SeqCst), 1);
    let dead = dead_letters().await.unwrap();
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
    assert_eq!(pending(ctx.redis(), producer.stream(), "g").await, 0);
    // The dead letters live beside the stream, on its slot.
    assert_eq!(
        consumer.dead_letter_stream().as_str(),
        format!("{}:dead", producer.stream())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_whose_consumers_keep_dying_is_dead_lettered_by_the_claim() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let stream = stream_key(&keys, "crashy").unwrap();
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

    let consumer = Consumer::builder(redis.clone(), &keys, "crashy", "g", "c")
        .block(Duration::from_millis(100))
        .min_idle(Duration::from_millis(1))
        .claim_interval(Duration::from_millis(1))
        .max_deliveries(2)
        .build()
        .unwrap();
    let (run, handled) = Running::counting::<Order>(&consumer);
    let dead_letters = || read_dead_letters(redis, &keys, "crashy", "-", 10);
    wait_until("the entry dead-lettered", DEADLINE, || async {
        !dead_letters().await.unwrap().is_empty()
    })
    .await;
    run.stop().await;
    assert_eq!(handled.count(), 0, "not delivered a third time");
    let dead = dead_letters().await.unwrap();
    assert_eq!(dead[0].original_id, id);
    assert_eq!(dead[0].attempts, 2);
    assert!(dead[0].reason.contains("without an acknowledgement"));
    assert_eq!(pending(redis, &stream, "g").await, 0);
}
