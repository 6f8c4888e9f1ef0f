//! Delayed and scheduled entries: 10 000 across three streams, each delivered exactly once, never
//! before its due time (server clock) and within a second after it, on one server and on a
//! 3-master cluster; job ids that deduplicate and cancel; bad input refused before sending.

mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::{StreamExt as _, stream};
use redis_core::{KeySpace, Redis, redis};
use redis_messaging::{Consumer, Delivery, Error, Producer, Schedule};
use redis_test_support::{TestCluster, TestContext, wait_until};
use serde::{Deserialize, Serialize};
use support::{DEADLINE, Order, Running};

const ENTRIES: u64 = 10_000;
const STREAMS: [&str; 3] = ["a", "b", "c"];
/// The first entry is due this long after the start (all are scheduled before), the last one
/// `SPREAD` later.
const LEAD_MS: u64 = 3_000;
const SPREAD_MS: u64 = 2_000;
/// The acceptance bound: delivered within this long after due.
const LATE_MS: i64 = 1_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    n: u64,
    due_ms: u64,
}

/// The server's clock in ms (`TIME`).
async fn server_ms(redis: &Redis) -> u64 {
    let (s, us): (u64, u64) = redis.query(&redis::cmd("TIME")).await.unwrap();
    s * 1_000 + us / 1_000
}

fn unix_ms(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// (stream, n, entry id, delivered at by the local clock, attempt, has a job id)
type Seen = (usize, u64, String, SystemTime, u64, bool);

async fn ten_thousand_delayed_entries(redis: &Redis, keys: &KeySpace) {
    let producers: Vec<Producer> = STREAMS
        .iter()
        .map(|s| Producer::builder(redis.clone(), keys, *s).build().unwrap())
        .collect();
    // The server's clock against ours (same machine in tests, but measured, not assumed).
    let before = SystemTime::now();
    let t0 = server_ms(redis).await;
    let offset = i64::try_from(t0).unwrap() - unix_ms(before);

    let jobs: Vec<(usize, Job)> = (0..ENTRIES)
        .map(|n| {
            let due_ms = t0 + LEAD_MS + (n * 7_919) % SPREAD_MS;
            ((n % 3) as usize, Job { n, due_ms })
        })
        .collect();
    let dues: Arc<HashMap<u64, u64>> =
        Arc::new(jobs.iter().map(|(_, j)| (j.n, j.due_ms)).collect());
    stream::iter(jobs)
        .map(|(s, job)| {
            let producer = producers[s].clone();
            async move {
                let at = UNIX_EPOCH + Duration::from_millis(job.due_ms);
                let scheduled = producer.send_at(&job, at).await.unwrap();
                assert!(scheduled.created);
                assert_eq!(scheduled.due, at);
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    let scheduled_by = server_ms(redis).await;
    println!(
        "scheduled {ENTRIES} in {} ms (server clock)",
        scheduled_by - t0
    );
    let mut waiting = 0;
    for p in &producers {
        waiting += p.scheduled_len().await.unwrap();
    }
    // Nothing is delivered before it is due: every entry still waits unless its time came.
    if scheduled_by < t0 + LEAD_MS {
        assert_eq!(waiting, ENTRIES);
    }

    // One consumer per stream, every setting at its default.
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let running: Vec<Running> = STREAMS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let consumer = Consumer::builder(redis.clone(), keys, *s, "g", "c")
                .build()
                .unwrap();
            let seen = seen.clone();
            Running::start(&consumer, move |d: Delivery<Job>| {
                let seen = seen.clone();
                async move {
                    let at = SystemTime::now();
                    let job = d.job_id.is_some();
                    seen.lock()
                        .unwrap()
                        .push((i, d.payload.n, d.id, at, d.attempt, job));
                    Ok::<_, std::convert::Infallible>(())
                }
            })
        })
        .collect();
    wait_until("every delayed entry delivered", DEADLINE, || async {
        seen.lock().unwrap().len() as u64 >= ENTRIES
    })
    .await;
    for r in running {
        r.stop().await;
    }

    let seen = seen.lock().unwrap().clone();
    let mut counts: HashMap<u64, u32> = HashMap::new();
    let mut latest = i64::MIN;
    let mut lateness = Vec::new();
    for (s, n, id, at, attempt, job) in &seen {
        *counts.entry(*n).or_default() += 1;
        assert_eq!((*s as u64, *attempt, *job), (n % 3, 1, true), "{n}");
        let due = i64::try_from(dues[n]).unwrap();
        // The entry was added to the stream (its id is the server's time) at or after its due
        // time, and delivered after that.
        let added: i64 = id.split('-').next().unwrap().parse().unwrap();
        assert!(added >= due, "entry {n} moved {} ms early", due - added);
        let delivered = unix_ms(*at) + offset;
        // 5 ms for measuring the offset across a round trip.
        assert!(
            delivered >= due - 5,
            "entry {n} delivered {} ms early",
            due - delivered
        );
        latest = latest.max(delivered - due);
        lateness.push(delivered - due);
    }
    assert_eq!(counts.len() as u64, ENTRIES, "every entry delivered");
    assert!(counts.values().all(|c| *c == 1), "each exactly once");
    // Never moved twice: each stream holds exactly its entries, and nothing waits any more.
    for (i, p) in producers.iter().enumerate() {
        let len: u64 = redis
            .query(redis::cmd("XLEN").arg(p.stream()))
            .await
            .unwrap();
        let expected = (0..ENTRIES).filter(|n| n % 3 == i as u64).count() as u64;
        assert_eq!(len, expected);
        assert_eq!(p.scheduled_len().await.unwrap(), 0);
    }
    lateness.sort_unstable();
    let p99 = lateness[lateness.len() * 99 / 100];
    println!(
        "delayed delivery after due: median {} ms, p99 {p99} ms, max {latest} ms",
        lateness[lateness.len() / 2]
    );
    assert!(
        latest <= LATE_MS,
        "an entry was delivered {latest} ms after due"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_delayed_entries_are_each_delivered_once_on_time() {
    let ctx = TestContext::new().await;
    ten_thousand_delayed_entries(ctx.redis(), &ctx.keyspace()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_delayed_entries_on_a_cluster_are_each_delivered_once_on_time() {
    let cluster = TestCluster::spawn(3, 0);
    let redis = cluster.redis().await;
    ten_thousand_delayed_entries(&redis, &KeySpace::new("delayed").unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_id_keeps_one_entry_and_cancels_it() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let producer = Producer::builder(ctx.redis().clone(), &keys, "jobs")
        .build()
        .unwrap();
    let hour = Duration::from_secs(3_600);
    let first = producer
        .schedule(&Order { n: 1 }, Schedule::after(hour).job_id("invoice-1"))
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.job_id, "invoice-1");
    // The same id again: the waiting entry is kept, with its due time.
    let again = producer
        .schedule(
            &Order { n: 2 },
            Schedule::after(2 * hour).job_id("invoice-1"),
        )
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.due, first.due);
    assert_eq!(producer.scheduled_len().await.unwrap(), 1);
    // The delayed keys expire (horizon after the latest due time).
    for key in ["delayed", "delayed:jobs"] {
        let ttl: i64 = ctx
            .redis()
            .query(redis::cmd("PTTL").arg(producer.stream().companion(key)))
            .await
            .unwrap();
        assert!(ttl > 3_600_000, "{key}: {ttl}");
    }
    assert!(producer.cancel("invoice-1").await.unwrap());
    assert!(!producer.cancel("invoice-1").await.unwrap());
    assert_eq!(producer.scheduled_len().await.unwrap(), 0);

    // A cancelled entry is never delivered; a due one is, once, with its job id.
    let cancelled = producer
        .schedule(
            &Order { n: 3 },
            Schedule::after(Duration::from_millis(200)).job_id("x"),
        )
        .await
        .unwrap();
    assert!(producer.cancel(&cancelled.job_id).await.unwrap());
    let due = producer
        .send_after(&Order { n: 4 }, Duration::from_millis(200))
        .await
        .unwrap();
    let consumer = Consumer::builder(ctx.redis().clone(), &keys, "jobs", "g", "c")
        .block(Duration::from_millis(100))
        .build()
        .unwrap();
    let (run, handled) = Running::counting::<Order>(&consumer);
    wait_until("the due entry delivered", DEADLINE, || async {
        handled.count() > 0
    })
    .await;
    let stats = run.stop().await;
    let d = handled.deliveries().remove(0);
    assert_eq!((d.payload.n, d.job_id), (4, Some(due.job_id)));
    assert_eq!(stats.delivered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_schedules_are_refused_before_anything_is_sent() {
    let ctx = TestContext::new().await;
    let producer = Producer::builder(ctx.redis().clone(), &ctx.keyspace(), "jobs")
        .build()
        .unwrap();
    let refused = |r: redis_messaging::Result<_>| matches!(r, Err(Error::InvalidArgument(_)));
    assert!(refused(producer.send_after(&1, Duration::MAX).await));
    assert!(refused(
        producer
            .send_at(&1, UNIX_EPOCH - Duration::from_secs(1))
            .await
    ));
    assert!(refused(
        producer
            .send_at(
                &1,
                SystemTime::now() + Duration::from_secs(20 * 365 * 86_400)
            )
            .await
    ));
    assert!(refused(
        producer
            .schedule(&1, Schedule::after(Duration::ZERO).job_id(""))
            .await
    ));
    assert!(refused(
        producer
            .schedule(&1, Schedule::after(Duration::ZERO).job_id("x".repeat(513)))
            .await
    ));
    assert!(ctx.keys().await.is_empty());
    assert!(matches!(
        Producer::builder(ctx.redis().clone(), &ctx.keyspace(), "jobs")
            .delayed_horizon(Duration::ZERO)
            .build(),
        Err(Error::InvalidConfig(_))
    ));
}
