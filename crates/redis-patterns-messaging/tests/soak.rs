//! 100 000 messages, 4 consumers, consumers restarted at random (half gracefully, half killed
//! mid-work): every message is processed at least once, none is lost, duplicates are counted.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis_messaging::{Consumer, Delivery, Producer, Retention};
use redis_test_support::TestContext;
use serde::{Deserialize, Serialize};
use support::{Running, pending};

const MESSAGES: usize = 100_000;
const CONSUMERS: usize = 4;
const RESTART_EVERY: u64 = 8_000;

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    seq: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_message_is_processed_at_least_once_across_random_consumer_restarts() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let started = Instant::now();

    let producer = Producer::builder(ctx.redis().clone(), &keys, "soak")
        .retention(Retention::MaxLen(10 * MESSAGES as u64))
        .build()
        .unwrap();
    let jobs: Vec<Job> = (0..MESSAGES as u32).map(|seq| Job { seq }).collect();
    for chunk in jobs.chunks(2_000) {
        producer.send_batch(chunk).await.unwrap();
    }
    let produced = started.elapsed();

    let counts: Arc<Vec<AtomicU32>> = Arc::new((0..MESSAGES).map(|_| AtomicU32::new(0)).collect());
    let processed = Arc::new(AtomicU64::new(0));
    // Deliveries with `attempt > 1`: every duplicate must be one of them.
    let redeliveries = Arc::new(AtomicU64::new(0));
    let spawn = |name: String| -> Running {
        let consumer = Consumer::builder(ctx.redis().clone(), &keys, "soak", "soak", name)
            .batch_size(100)
            .concurrency(16)
            .block(Duration::from_millis(100))
            .min_idle(Duration::from_millis(1_000))
            .claim_interval(Duration::from_millis(250))
            .max_deliveries(1_000)
            .build()
            .unwrap();
        let counts = counts.clone();
        let processed = processed.clone();
        let redeliveries = redeliveries.clone();
        Running::start(&consumer, move |d: Delivery<Job>| {
            let counts = counts.clone();
            let processed = processed.clone();
            let redeliveries = redeliveries.clone();
            async move {
                // Some asynchronous work, so that kills land mid-message.
                tokio::task::yield_now().await;
                counts[d.payload.seq as usize].fetch_add(1, Ordering::Relaxed);
                processed.fetch_add(1, Ordering::Relaxed);
                if d.attempt > 1 {
                    redeliveries.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, std::convert::Infallible>(())
            }
        })
    };

    let mut running: Vec<Running> = (0..CONSUMERS).map(|i| spawn(format!("c{i}"))).collect();
    let mut generation = 0usize;
    let mut graceful = 0;
    let mut killed = 0;
    let mut next_restart = RESTART_EVERY;
    let mut rng_state = 0x9E37_79B9_u32;
    let all_seen = || counts.iter().all(|c| c.load(Ordering::Relaxed) > 0);
    let stream = producer.stream().clone();
    let pending = || pending(ctx.redis(), &stream, "soak");
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut polls = 0u64;
    // Done when every message was processed and nothing is pending any more: the entries a killed
    // consumer had processed but not acknowledged must be reclaimed (and processed again, which
    // makes them duplicates) by the consumers still running.
    loop {
        polls += 1;
        if all_seen() && polls.is_multiple_of(10) && pending().await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every message was processed and acknowledged: {} missing, {} pending",
            counts
                .iter()
                .filter(|c| c.load(Ordering::Relaxed) == 0)
                .count(),
            pending().await
        );
        if processed.load(Ordering::Relaxed) >= next_restart {
            next_restart += RESTART_EVERY;
            // xorshift: deterministic choice of victim and of the way it dies
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 17;
            rng_state ^= rng_state << 5;
            let victim = rng_state as usize % CONSUMERS;
            let old = std::mem::replace(&mut running[victim], {
                generation += 1;
                // A new name half of the time (a new pod), the old one otherwise (a restart).
                let name = if generation.is_multiple_of(2) {
                    format!("c{victim}")
                } else {
                    format!("c{victim}g{generation}")
                };
                spawn(name)
            });
            if generation.is_multiple_of(3) {
                // Killed mid-work: its fetched and unacknowledged entries must be reclaimed.
                old.kill().await;
                killed += 1;
            } else {
                let stats = old.stop().await;
                // Graceful: everything it handled was acknowledged before `run` returned.
                assert_eq!(stats.delivered, stats.acked, "{stats:?}");
                assert_eq!((stats.failed, stats.dead_lettered), (0, 0), "{stats:?}");
                graceful += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let consumed = started.elapsed();

    for r in &running {
        r.shutdown.cancel();
    }
    for r in running {
        let stats = r.stop().await;
        assert_eq!(stats.delivered, stats.acked, "{stats:?}");
    }
    // A graceful stop leaves nothing pending, and nothing went to the dead-letter stream.
    assert_eq!(pending().await, 0);
    let dead = redis_messaging::read_dead_letters(ctx.redis(), &keys, "soak", "-", 10)
        .await
        .unwrap();
    assert!(dead.is_empty(), "{dead:?}");

    let total: u64 = counts
        .iter()
        .map(|c| u64::from(c.load(Ordering::Relaxed)))
        .sum();
    let duplicates = total - MESSAGES as u64;
    let redeliveries = redeliveries.load(Ordering::Relaxed);
    let max = counts
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .max()
        .unwrap();
    println!(
        "soak: {MESSAGES} messages produced in {produced:.1?}, all processed after {consumed:.1?}; \
         {graceful} graceful restarts, {killed} kills; {duplicates} duplicate deliveries \
         ({:.3}%, {redeliveries} redeliveries), at most {max} deliveries of one message",
        duplicates as f64 * 100.0 / MESSAGES as f64
    );
    assert!(
        graceful + killed >= 3,
        "restarts happened: {graceful} + {killed}"
    );
    assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) >= 1));
    // A duplicate is only ever a redelivery (a claim after min-idle), never the same entry
    // handed out twice as new.
    assert!(
        duplicates <= redeliveries,
        "{duplicates} duplicates but only {redeliveries} redeliveries"
    );
}
