//! Entries a consumer holds: heartbeats keep a slow handler's entry from being redelivered while
//! its process lives (and only then: after SIGKILL of that process it is redelivered), and a
//! graceful shutdown hands back what was read and not started, to be claimed at once.

mod support;

use std::{
    convert::Infallible,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use redis_core::{KeySpace, Redis, redis};
use redis_messaging::{CancellationToken, Consumer, Delivery, Producer};
use redis_test_support::{TestContext, wait_until};
use support::{DEADLINE, Order, Running, ms, orders, pending};

/// Set for the child process: `<url> <key prefix> <min idle ms>`.
const CHILD_ENV: &str = "REDIS_MESSAGING_HOLDING_CHILD";
const CHILD_TEST: &str = "child_consumer_with_a_handler_that_never_ends";

/// The consumer and owner of the entry in a one-entry pending list: `(consumer, deliveries)`.
async fn owner(redis: &Redis, stream: &redis_core::Key) -> Option<(String, i64)> {
    // NOGROUP until the consumer has created its group.
    let reply: redis::Value = redis
        .query(
            redis::cmd("XPENDING")
                .arg(stream)
                .arg("g")
                .arg("-")
                .arg("+")
                .arg(1),
        )
        .await
        .ok()?;
    let redis::Value::Array(entries) = reply else {
        return None;
    };
    let redis::Value::Array(entry) = entries.into_iter().next()? else {
        return None;
    };
    let consumer = match &entry[1] {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("{other:?}"),
    };
    let redis::Value::Int(count) = entry[3] else {
        panic!("{entry:?}")
    };
    Some((consumer, count))
}

/// Not a test of its own: the process that `a_slow_handler_is_redelivered_only_after_its_process_is_killed`
/// starts and kills. Without its environment variable it does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of another test"]
async fn child_consumer_with_a_handler_that_never_ends() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split(' ');
    let (url, prefix, min_idle) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse().unwrap(),
    );
    let redis = Redis::open(url).await.unwrap();
    let consumer = Consumer::builder(redis, &KeySpace::new(prefix).unwrap(), "slow", "g", "child")
        .block(ms(100))
        .min_idle(ms(min_idle))
        .claim_interval(ms(100))
        .build()
        .unwrap();
    consumer
        .run(CancellationToken::new(), |_d: Delivery<Order>| async {
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(())
        })
        .await
        .unwrap();
}

/// Kills the child process when dropped (a failed assertion must not leave it running).
struct ChildProcess(Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_handler_is_redelivered_only_after_its_process_is_killed() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let min_idle = ms(600);
    let producer = Producer::builder(ctx.redis().clone(), &keys, "slow")
        .build()
        .unwrap();
    let id = producer.send(&Order { n: 1 }).await.unwrap();
    let mut child = ChildProcess(
        Command::new(std::env::current_exe().unwrap())
            .args([CHILD_TEST, "--exact", "--ignored", "--nocapture"])
            .env(
                CHILD_ENV,
                format!("{} {} {}", ctx.url(), ctx.prefix(), min_idle.as_millis()),
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the child process took the entry", DEADLINE, || async {
        owner(ctx.redis(), producer.stream()).await == Some(("child".into(), 1))
    })
    .await;

    // Another consumer claims every 100 ms whatever is idle for min_idle.
    let consumer = Consumer::builder(ctx.redis().clone(), &keys, "slow", "g", "other")
        .block(ms(100))
        .min_idle(min_idle)
        .claim_interval(ms(100))
        .build()
        .unwrap();
    let (run, handled) = Running::counting::<Order>(&consumer);
    // Three times min_idle with the child's handler still running: a window to observe, not a
    // synchronization.
    tokio::time::sleep(3 * min_idle).await;
    assert_eq!(handled.count(), 0, "redelivered while its process lives");
    assert_eq!(
        owner(ctx.redis(), producer.stream()).await,
        Some(("child".into(), 1))
    );

    // SIGKILL: no more heartbeats; the entry is claimed after min_idle.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let killed = Instant::now();
    wait_until("the entry redelivered", DEADLINE, || async {
        handled.count() > 0
    })
    .await;
    let after = handled.first_at().unwrap() - killed;
    run.stop().await;
    let d = handled.deliveries().remove(0);
    assert_eq!((d.id, d.attempt, &*d.consumer), (id, 2, "other"));
    // The last heartbeat came at most a heartbeat interval (min_idle / 3) before the kill.
    assert!(
        after >= min_idle * 2 / 3 - ms(20),
        "redelivered {after:?} after the kill"
    );
    assert_eq!(pending(ctx.redis(), producer.stream(), "g").await, 0);
}

/// A handler that takes three times min_idle (ten without heartbeats, so that a loaded machine
/// cannot outrun the window), with another consumer claiming eagerly. Returns the deliveries
/// handled and the claims either consumer made: with heartbeats nothing is claimed; without, the
/// entry is claimed while the handler runs (by the eager consumer or by the slow one's own claim
/// pass), which shows the test can tell.
async fn slow_handler_deliveries(heartbeats: bool) -> (usize, u64) {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let min_idle = ms(300);
    let producer = Producer::builder(ctx.redis().clone(), &keys, "slow")
        .build()
        .unwrap();
    let build = |name: &str| {
        Consumer::builder(ctx.redis().clone(), &keys, "slow", "g", name)
            .block(ms(100))
            .min_idle(min_idle)
            .claim_interval(ms(50))
            .heartbeats(heartbeats)
            .build()
            .unwrap()
    };
    let slow = build("slow");
    let hold = if heartbeats {
        3 * min_idle
    } else {
        10 * min_idle
    };
    let (a, slow_handled) = Running::counting_slowly::<Order>(&slow, hold);
    producer.send(&Order { n: 1 }).await.unwrap();
    wait_until("the slow consumer took the entry", DEADLINE, || async {
        owner(ctx.redis(), producer.stream()).await.is_some()
    })
    .await;
    let (b, other_handled) = Running::counting::<Order>(&build("eager"));
    wait_until("the slow handler done", DEADLINE, || async {
        slow_handled.count() == 1
    })
    .await;
    let claimed = a.stop().await.claimed + b.stop().await.claimed;
    (slow_handled.count() + other_handled.count(), claimed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heartbeats_keep_a_slow_handler_from_being_redelivered() {
    assert_eq!(slow_handler_deliveries(true).await, (1, 0));
    // Without heartbeats the entry is claimed every min_idle while the slow handler runs (by
    // the other consumer or by the slow one's own claim pass).
    let (_, claimed) = slow_handler_deliveries(false).await;
    assert!(claimed >= 1, "{claimed} claims without heartbeats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_handed_back_on_shutdown_go_to_another_consumer_well_within_min_idle() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let stream = redis_messaging::stream_key(&keys, "handback").unwrap();
    let redis = ctx.redis();
    let min_idle = Duration::from_secs(5);
    let build = |name: &str| {
        Consumer::builder(redis.clone(), &keys, "handback", "g", name)
            .batch_size(10)
            .block(ms(100))
            .min_idle(min_idle)
            .claim_interval(min_idle)
            .build()
            .unwrap()
    };
    let producer = Producer::builder(redis.clone(), &keys, "handback")
        .build()
        .unwrap();
    let payloads: Vec<Order> = orders(0..10)
        .map(|s| serde_json::from_str(&s).unwrap())
        .collect();
    producer.send_batch(&payloads).await.unwrap();

    // "a" reads all ten at once and works through them slowly, one at a time.
    let a_consumer = build("a");
    let (a, a_handled) = Running::counting_slowly::<Order>(&a_consumer, ms(100));
    wait_until("a started", DEADLINE, || async { a_handled.count() >= 1 }).await;
    assert_eq!(pending(redis, &stream, "g").await, 10);
    // "b" is up before "a" stops: it has read an entry of its own (its upkeep's first claim
    // pass, at its start, found nothing claimable), and claims again only after min_idle.
    let (b, b_handled) = Running::counting::<Order>(&build("b"));
    producer.send(&Order { n: 10 }).await.unwrap();
    wait_until("b read an entry", DEADLINE, || async {
        b_handled.count() == 1
    })
    .await;
    let stats = a.stop().await;
    let stopped = Instant::now();
    assert!(stats.handed_back >= 1, "{stats:?}");
    assert_eq!(stats.acked + stats.handed_back, 10, "{stats:?}");
    let handed_back = stats.handed_back as usize;
    wait_until("b has the handed-back entries", DEADLINE, || async {
        b_handled.count() > handed_back
    })
    .await;
    let took = Instant::now() - stopped;
    b.stop().await;
    println!("{handed_back} handed-back entries handled by b {took:?} after a stopped");
    assert!(took < min_idle / 5, "took {took:?}, min_idle {min_idle:?}");
    // They were never started: still first attempts.
    assert!(b_handled.deliveries().iter().all(|d| d.attempt == 1));
    let mut all = a_handled.numbers();
    all.extend(b_handled.numbers());
    all.sort_unstable();
    assert_eq!(all, (0..11).collect::<Vec<_>>());
    assert_eq!(pending(redis, &stream, "g").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_waiting_for_its_retry_is_handed_back_too() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let producer = Producer::builder(ctx.redis().clone(), &keys, "later")
        .build()
        .unwrap();
    let consumer = Consumer::builder(ctx.redis().clone(), &keys, "later", "g", "c")
        .block(ms(100))
        .retry(redis_messaging::RetryPolicy::Schedule(vec![
            Duration::from_secs(3_600),
        ]))
        .build()
        .unwrap();
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let run = Running::start(&consumer, {
        let failed = failed.clone();
        move |_d: Delivery<Order>| {
            failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::ready(Err::<(), _>("not yet"))
        }
    });
    producer.send(&Order { n: 1 }).await.unwrap();
    wait_until("the first attempt failed", DEADLINE, || async {
        consumer.stats().failed == 1
    })
    .await;
    // The shutdown does not wait an hour for the retry.
    let stats = tokio::time::timeout(Duration::from_secs(5), run.stop())
        .await
        .unwrap();
    assert_eq!(stats.handed_back, 1);
    // Claimable at once by the next consumer, as attempt 2 (the failed one counts).
    let (next, handled) = Running::counting::<Order>(&consumer);
    wait_until("handled by the next run", DEADLINE, || async {
        handled.count() == 1
    })
    .await;
    next.stop().await;
    assert_eq!(handled.deliveries()[0].attempt, 2);
}
