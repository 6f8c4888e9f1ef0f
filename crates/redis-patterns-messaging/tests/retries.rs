//! Retries: a failing handler's attempts follow the configured schedule (measured intervals)
//! and reach the dead-letter stream after exactly N; a jittered backoff stays within its bounds;
//! attempts add up across consumers when the one retrying dies; at concurrency 1 an entry
//! waiting for its retry does not hold up the rest of its batch, and never runs beside it.

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use redis_messaging::{Backoff, Consumer, Delivery, Producer, RetryPolicy, read_dead_letters};
use redis_test_support::{TestContext, wait_until};
use support::{DEADLINE, Order, Running, ms, pending};

/// How much later than its scheduled wait a retry may start: the wait is a timer in the
/// consumer, plus one round trip (`retry.lua`) and a busy test machine.
const TOLERANCE: Duration = Duration::from_millis(400);

/// (attempt, when the handler saw it, first delivered, consumer)
type Attempt = (u64, Instant, SystemTime, String);

fn failing(
    seen: &Arc<Mutex<Vec<Attempt>>>,
) -> impl Fn(Delivery<Order>) -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
    let seen = seen.clone();
    move |d: Delivery<Order>| {
        seen.lock().unwrap().push((
            d.attempt,
            Instant::now(),
            d.first_delivered,
            d.consumer.to_string(),
        ));
        std::future::ready(Err(format!("order {} refused", d.payload.n)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attempts_follow_the_schedule_and_dead_letter_after_exactly_n() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let producer = Producer::builder(ctx.redis().clone(), &keys, "flaky")
        .build()
        .unwrap();
    let schedule = [ms(200), ms(400), ms(800)];
    let consumer = Consumer::builder(ctx.redis().clone(), &keys, "flaky", "g", "c")
        .block(ms(100))
        .min_idle(Duration::from_secs(1))
        .retry(RetryPolicy::Schedule(schedule.to_vec()))
        .max_deliveries(4)
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let run = Running::start(&consumer, failing(&seen));
    let sent = SystemTime::now();
    let id = producer.send(&Order { n: 9 }).await.unwrap();
    let dead = || read_dead_letters(ctx.redis(), &keys, "flaky", "-", 10);
    wait_until("the entry dead-lettered", DEADLINE, || async {
        !dead().await.unwrap().is_empty()
    })
    .await;
    let stats = run.stop().await;

    let seen = seen.lock().unwrap().clone();
    let attempts: Vec<u64> = seen.iter().map(|a| a.0).collect();
    assert_eq!(attempts, [1, 2, 3, 4], "exactly N attempts");
    for (i, wait) in schedule.iter().enumerate() {
        let measured = seen[i + 1].1 - seen[i].1;
        println!("retry {}: scheduled {wait:?}, measured {measured:?}", i + 1);
        assert!(
            measured >= *wait && measured <= *wait + TOLERANCE,
            "retry {} after {measured:?}, scheduled {wait:?}",
            i + 1
        );
    }
    // Every attempt knows when the entry was first delivered: the first read.
    let first = seen[0].2;
    assert!(seen.iter().all(|a| a.2 == first));
    assert!(first >= sent - ms(5) && first <= sent + DEADLINE);
    let dead = dead().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].original_id.as_str(), dead[0].attempts),
        (id.as_str(), 4)
    );
    assert_eq!(dead[0].reason, "order 9 refused");
    assert_eq!(
        (stats.failed, stats.dead_lettered, stats.claimed),
        (4, 1, 0)
    );
    assert_eq!(pending(ctx.redis(), producer.stream(), "g").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jittered_backoff_waits_between_half_and_all_of_each_step() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let producer = Producer::builder(ctx.redis().clone(), &keys, "jitter")
        .build()
        .unwrap();
    let backoff = Backoff::new(ms(100), ms(300)).unwrap();
    let consumer = Consumer::builder(ctx.redis().clone(), &keys, "jitter", "g", "c")
        .block(ms(100))
        .retry(RetryPolicy::Backoff(backoff))
        .max_deliveries(4)
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let run = Running::start(&consumer, failing(&seen));
    producer.send(&Order { n: 1 }).await.unwrap();
    wait_until("the entry dead-lettered", DEADLINE, || async {
        consumer.stats().dead_lettered == 1
    })
    .await;
    run.stop().await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|a| a.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    // Steps 100, 200, 300 (capped) ms; each wait is in the upper half of its step.
    for (i, step) in [ms(100), ms(200), ms(300)].iter().enumerate() {
        let measured = seen[i + 1].1 - seen[i].1;
        assert!(
            measured >= *step / 2 && measured <= *step + TOLERANCE,
            "retry {} after {measured:?}, step {step:?}",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attempts_add_up_across_consumers_when_the_one_retrying_dies() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let producer = Producer::builder(ctx.redis().clone(), &keys, "relay")
        .build()
        .unwrap();
    let build = |name: &str| {
        Consumer::builder(ctx.redis().clone(), &keys, "relay", "g", name)
            .block(ms(100))
            .min_idle(ms(600))
            .claim_interval(ms(100))
            // A long wait: consumer "a" dies while it waits for its retry.
            .retry(RetryPolicy::Schedule(vec![Duration::from_secs(3_600)]))
            .max_deliveries(3)
            .build()
            .unwrap()
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let a = Running::start(&build("a"), failing(&seen));
    producer.send(&Order { n: 3 }).await.unwrap();
    wait_until("a's first attempt", DEADLINE, || async {
        seen.lock().unwrap().len() == 1
    })
    .await;
    a.kill().await;

    // "b" claims it after min_idle as attempt 2; its own retry waits an hour, so "c" (started
    // after "b" is killed) takes attempt 3, the last: dead-lettered.
    let b = Running::start(&build("b"), failing(&seen));
    wait_until("b's attempt", DEADLINE, || async {
        seen.lock().unwrap().len() == 2
    })
    .await;
    b.kill().await;
    let c_consumer = build("c");
    let c = Running::start(&c_consumer, failing(&seen));
    wait_until("dead-lettered by c", DEADLINE, || async {
        c_consumer.stats().dead_lettered == 1
    })
    .await;
    c.stop().await;
    let seen = seen.lock().unwrap().clone();
    let attempts: Vec<(u64, &str)> = seen.iter().map(|a| (a.0, a.3.as_str())).collect();
    assert_eq!(attempts, [(1, "a"), (2, "b"), (3, "c")]);
    let dead = read_dead_letters(ctx.redis(), &keys, "relay", "-", 10)
        .await
        .unwrap();
    assert_eq!((dead.len(), dead[0].attempts), (1, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_concurrency_one_a_retry_waits_aside_while_the_rest_of_its_batch_runs() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let producer = Producer::builder(ctx.redis().clone(), &keys, "aside")
        .build()
        .unwrap();
    // Written before the consumer starts: its first read returns all four.
    let orders: Vec<Order> = (1..=4).map(|n| Order { n }).collect();
    producer.send_batch(&orders).await.unwrap();
    let wait = Duration::from_secs(1);
    let consumer = Consumer::builder(ctx.redis().clone(), &keys, "aside", "g", "c")
        .block(ms(100))
        .batch_size(10)
        .retry(RetryPolicy::Schedule(vec![wait]))
        .max_deliveries(2)
        .build()
        .unwrap();
    // (order, attempt, when it started); handlers running now, and the most ever at once.
    let seen = Arc::new(Mutex::new(Vec::<(u64, u64, Instant)>::new()));
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let run = Running::start(&consumer, {
        let (seen, running, most) = (seen.clone(), running.clone(), most.clone());
        move |d: Delivery<Order>| {
            let (seen, running, most) = (seen.clone(), running.clone(), most.clone());
            async move {
                most.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                seen.lock()
                    .unwrap()
                    .push((d.payload.n, d.attempt, Instant::now()));
                // Some work, so that overlapping handlers would be caught at it.
                tokio::time::sleep(ms(5)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                if d.payload.n == 2 && d.attempt == 1 {
                    Err("order 2 refused once")
                } else {
                    Ok(())
                }
            }
        }
    });
    wait_until("every order acknowledged", DEADLINE, || async {
        consumer.stats().acked == 4
    })
    .await;
    let stats = run.stop().await;

    let seen = seen.lock().unwrap().clone();
    let order: Vec<(u64, u64)> = seen.iter().map(|s| (s.0, s.1)).collect();
    // Orders 3 and 4 ran while order 2 waited for its retry (a second away), not after it.
    assert_eq!(order, [(1, 1), (2, 1), (3, 1), (4, 1), (2, 2)]);
    let waited = seen[4].2 - seen[1].2;
    assert!(
        waited >= wait && waited <= wait + TOLERANCE,
        "retried after {waited:?}"
    );
    assert_eq!(most.load(Ordering::SeqCst), 1, "one handler at a time");
    assert_eq!((stats.failed, stats.acked), (1, 4));
    assert_eq!(pending(ctx.redis(), producer.stream(), "g").await, 0);
}
