//! redis-patterns-messaging throughput against raw redis-rs on the same server, in messages per second:
//! publish → receive, XADD at batch sizes 1/10/100 (trimmed by length, and by age through the
//! crate's own `xadd_minid.lua`), consume + acknowledge at batch sizes 1/10/100
//! (`XREADGROUP` + `XACK`), one consumer at concurrency 1 with heartbeats on and off, and
//! delayed entries (`send_after` + delivery) at 50 tasks. With `BENCH_INTERLEAVED=<rounds>` the
//! concurrency-1 consumer and its raw loop also take turns on fresh streams, and the ratio of
//! their times is printed.
//!
//! Run: `cargo xtask bench -- messaging` (or `cargo bench -p redis-patterns-benches --bench messaging`).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use criterion::{criterion_group, criterion_main};
use redis::PushKind;
use redis_core::{Key, KeySpace, Redis, Script, script::SERVER_CLOCK};
use redis_messaging::{
    CancellationToken, Consumer, Delivery, Event, Producer, Publisher, Retention, Subscriber,
    stream_key,
};
use redis_patterns_benches::{
    BenchServer, bench_concurrent, interleaved_rounds, run_concurrent, runtime,
};
use tokio::runtime::Runtime;

/// The crate's `MaxAge` script, from its own file, for the raw baseline.
static XADD_MINID: Script = Script::new(
    "bench_xadd_minid",
    include_str!("../../crates/redis-patterns-messaging/src/scripts/xadd_minid.lua"),
)
.with_preludes(&[SERVER_CLOCK]);

const BATCHES: [usize; 3] = [1, 10, 100];
/// Batches per measured iteration of the consume benches, so start-up costs are amortised.
const BATCHES_PER_ITER: usize = 50;
const PUBLISHERS: usize = 50;
/// The age limit of the `MaxAge` rows: long enough that nothing is trimmed while they run.
const MAX_AGE: Duration = Duration::from_secs(3600);

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A stream name no other row uses, and its key (the one the crate's builders write).
fn fresh(keys: &KeySpace, what: &str) -> (String, Key) {
    let name = format!("{what}{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let key = stream_key(keys, &name).unwrap();
    (name, key)
}

fn messaging(c: &mut Criterion) {
    let server = BenchServer::start();
    let rt = runtime();
    let url = server.url.as_str();
    let (redis, raw) = rt.block_on(async {
        let redis = Redis::open(url).await.expect("connect");
        let raw = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        (redis, raw)
    });
    let keys = KeySpace::new("bench")
        .unwrap()
        .pattern(&format!("messaging{}", std::process::id()))
        .unwrap();

    publish_receive(c, &rt, url, &redis, &raw, &keys);
    xadd(c, &rt, &redis, &raw, &keys);
    consume(c, &rt, url, &redis, &keys);
    consume_concurrency_1(c, &rt, url, &redis, &keys);
    delayed(c, &rt, &redis, &keys);

    rt.block_on(async {
        let mut cursor = 0u64;
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
                let _: i64 = redis.query(redis::cmd("UNLINK").arg(key)).await.unwrap();
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    });
}

/// One row of the publish → receive group: `PUBLISHERS` tasks run `publish` for `0..iters`
/// between them while `receive(iters)` takes the messages; the clock stops when it has them all.
fn bench_publish_receive<P, PF, R, RF>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    publish: P,
    receive: R,
) where
    P: Fn(u64) -> PF + Clone + Send + Sync + 'static,
    PF: Future<Output = ()> + Send + 'static,
    R: Fn(u64) -> RF,
    RF: Future<Output = ()> + Send + 'static,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let received = rt.spawn(receive(iters));
            run_concurrent(rt, PUBLISHERS, iters, publish.clone());
            rt.block_on(received).unwrap();
            start.elapsed()
        })
    });
}

fn publish_receive(
    c: &mut Criterion,
    rt: &Runtime,
    url: &str,
    redis: &Redis,
    raw: &redis::aio::MultiplexedConnection,
    keys: &KeySpace,
) {
    let mut group = c.benchmark_group("messaging/publish-receive");
    group.throughput(Throughput::Elements(1));
    let channel = format!("{}:bench", keys.prefix());
    {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let url = format!("{url}?protocol=resp3");
        let _sub_conn = rt.block_on(async {
            let client = redis::Client::open(url.as_str()).unwrap();
            let config = redis::AsyncConnectionConfig::new().set_push_sender(tx);
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .unwrap();
            conn.subscribe(&channel).await.unwrap();
            conn
        });
        let (raw, channel) = (raw.clone(), channel.clone());
        bench_publish_receive(
            &mut group,
            rt,
            "raw-redis-rs",
            move |i| {
                let (mut raw, channel) = (raw.clone(), channel.clone());
                async move {
                    let _: i64 = redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(serde_json::to_vec(&i).unwrap())
                        .query_async(&mut raw)
                        .await
                        .unwrap();
                }
            },
            |iters| {
                let rx = rx.clone();
                async move {
                    let mut rx = rx.lock().await;
                    let mut got = 0;
                    while got < iters {
                        let push = rx.recv().await.unwrap();
                        if push.kind == PushKind::Message {
                            let _: u64 = serde_json::from_slice(match &push.data[1] {
                                redis::Value::BulkString(b) => b,
                                other => panic!("{other:?}"),
                            })
                            .unwrap();
                            got += 1;
                        }
                    }
                }
            },
        );
    }
    {
        let channel = format!("{channel}:crate");
        let sub = rt.block_on(async {
            Subscriber::builder(redis.clone())
                .channel(&channel)
                .subscribe::<u64>()
                .await
                .unwrap()
        });
        let sub = Arc::new(tokio::sync::Mutex::new(sub));
        let publisher = Publisher::new(redis.clone());
        bench_publish_receive(
            &mut group,
            rt,
            "redis-patterns-messaging",
            move |i| {
                let (publisher, channel) = (publisher.clone(), channel.clone());
                async move {
                    publisher.publish(&channel, &i).await.unwrap();
                }
            },
            |iters| {
                let sub = sub.clone();
                async move {
                    let mut sub = sub.lock().await;
                    let mut got = 0;
                    while got < iters {
                        if let Some(Event::Message(_)) = sub.next().await {
                            got += 1;
                        }
                    }
                }
            },
        );
    }
    group.finish();
}

/// One task appends batches back to back: one pipeline (or one script) per batch.
fn xadd(
    c: &mut Criterion,
    rt: &Runtime,
    redis: &Redis,
    raw: &redis::aio::MultiplexedConnection,
    keys: &KeySpace,
) {
    for batch in BATCHES {
        let payloads: Vec<u64> = (0..batch as u64).collect();
        let encoded: Vec<Vec<u8>> = payloads
            .iter()
            .map(|p| serde_json::to_vec(p).unwrap())
            .collect();
        let producer = |name: &str, retention: Retention| {
            Producer::builder(redis.clone(), keys, name)
                .retention(retention)
                .build()
                .unwrap()
        };

        let mut group = c.benchmark_group(format!("messaging/xadd/batch-{batch}"));
        group.throughput(Throughput::Elements(batch as u64));
        bench_concurrent(
            &mut group,
            rt,
            "raw-redis-rs",
            1,
            (raw.clone(), fresh(keys, "xadd-raw").1, encoded.clone()),
            |(mut raw, stream, encoded), _| async move {
                let mut pipe = redis::pipe();
                for p in encoded {
                    pipe.cmd("XADD")
                        .arg(&stream)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(100_000)
                        .arg("*")
                        .arg("p")
                        .arg(p);
                }
                let _: Vec<String> = pipe.query_async(&mut raw).await.unwrap();
            },
        );
        bench_concurrent(
            &mut group,
            rt,
            "redis-patterns-messaging",
            1,
            (
                producer(&fresh(keys, "xadd").0, Retention::MaxLen(100_000)),
                payloads.clone(),
            ),
            |(producer, payloads), _| async move {
                let _ = producer.send_batch(&payloads).await.unwrap();
            },
        );
        group.finish();

        // Trimming by age is one script per batch: the same Lua file on both rows.
        let mut group = c.benchmark_group(format!("messaging/xadd-max-age/batch-{batch}"));
        group.throughput(Throughput::Elements(batch as u64));
        bench_concurrent(
            &mut group,
            rt,
            "raw-redis-rs",
            1,
            (
                raw.clone(),
                fresh(keys, "xadd-age-raw").1,
                encoded.clone(),
                XADD_MINID.inner().clone(),
            ),
            |(mut raw, stream, encoded, script), _| async move {
                let mut call = script.key(&stream);
                call.arg(MAX_AGE.as_millis() as u64);
                for p in encoded {
                    call.arg(p);
                }
                let _: Vec<String> = call.invoke_async(&mut raw).await.unwrap();
            },
        );
        bench_concurrent(
            &mut group,
            rt,
            "redis-patterns-messaging",
            1,
            (
                producer(&fresh(keys, "xadd-age").0, Retention::MaxAge(MAX_AGE)),
                payloads.clone(),
            ),
            |(producer, payloads), _| async move {
                let _ = producer.send_batch(&payloads).await.unwrap();
            },
        );
        group.finish();
    }
}

/// One row of a consume group: each iteration fills a fresh stream with `per_iter × iters`
/// entries (not timed), then times `consume(stream name, stream key, total)`.
fn bench_consume<F, Fut>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    redis: &Redis,
    keys: &KeySpace,
    name: &str,
    per_iter: u64,
    consume: F,
) where
    F: Fn(String, Key, u64) -> Fut,
    Fut: Future<Output = Duration>,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let total = per_iter * iters;
            let (stream, key) = filled(rt, redis, keys, total);
            rt.block_on(consume(stream, key, total))
        })
    });
}

/// A fresh stream holding `total` entries (its name and key).
fn filled(rt: &Runtime, redis: &Redis, keys: &KeySpace, total: u64) -> (String, Key) {
    let (stream, key) = fresh(keys, "consume");
    let producer = Producer::builder(redis.clone(), keys, &stream)
        .retention(Retention::Unbounded)
        .build()
        .unwrap();
    let payloads: Vec<u64> = (0..1000).collect();
    rt.block_on(async {
        let mut left = total;
        while left > 0 {
            let take = left.min(1000) as usize;
            producer.send_batch(&payloads[..take]).await.unwrap();
            left -= take as u64;
        }
    });
    (stream, key)
}

/// Fills a fresh stream with `BATCHES_PER_ITER × batch × iters` entries (not timed), then times
/// consuming and acknowledging all of them.
fn consume(c: &mut Criterion, rt: &Runtime, url: &str, redis: &Redis, keys: &KeySpace) {
    for batch in BATCHES {
        let mut group = c.benchmark_group(format!("messaging/consume-ack/batch-{batch}"));
        let per_iter = (BATCHES_PER_ITER * batch) as u64;
        group.throughput(Throughput::Elements(per_iter));
        let client = redis::Client::open(url).unwrap();
        let conn = rt
            .block_on(client.get_multiplexed_async_connection())
            .unwrap();
        bench_consume(
            &mut group,
            rt,
            redis,
            keys,
            "raw-redis-rs",
            per_iter,
            |_, stream, total| raw_consume(conn.clone(), stream, batch, total),
        );
        bench_consume(
            &mut group,
            rt,
            redis,
            keys,
            "redis-patterns-messaging",
            per_iter,
            |stream, _, total| {
                let consumer = Consumer::builder(redis.clone(), keys, stream, "g", "c")
                    .batch_size(batch)
                    .concurrency(batch)
                    .block(Duration::from_millis(100))
                    .build()
                    .unwrap();
                run_until_acked(consumer, total)
            },
        );
        group.finish();
    }
}

/// The raw baseline of the consume groups: `XREADGROUP COUNT batch` + decode + one `XACK` per
/// batch, until `total` entries are acknowledged; the time that took.
async fn raw_consume(
    mut conn: redis::aio::MultiplexedConnection,
    stream: Key,
    batch: usize,
    total: u64,
) -> Duration {
    let conn = &mut conn;
    let start = Instant::now();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await
        .unwrap();
    let mut done = 0u64;
    while done < total {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(batch)
            .arg("BLOCK")
            .arg(100)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(conn)
            .await
            .unwrap();
        let Some(reply) = reply else { continue };
        let ids: Vec<String> = reply
            .keys
            .into_iter()
            .flat_map(|k| k.ids)
            .map(|e| {
                let _: u64 = match e.map.get("p") {
                    Some(redis::Value::BulkString(b)) => serde_json::from_slice(b).unwrap(),
                    other => panic!("{other:?}"),
                };
                e.id
            })
            .collect();
        let _: i64 = redis::cmd("XACK")
            .arg(&stream)
            .arg("g")
            .arg(&ids)
            .query_async(conn)
            .await
            .unwrap();
        done += ids.len() as u64;
    }
    start.elapsed()
}

/// Runs `consumer` until it has handled and acknowledged `total` entries; the time that took.
async fn run_until_acked(consumer: Consumer, total: u64) -> Duration {
    let start = Instant::now();
    let shutdown = CancellationToken::new();
    let done = Arc::new(tokio::sync::Notify::new());
    let handled = Arc::new(AtomicU64::new(0));
    let run = tokio::spawn({
        let consumer = consumer.clone();
        let shutdown = shutdown.clone();
        let done = done.clone();
        async move {
            consumer
                .run(shutdown, move |_d: Delivery<u64>| {
                    if handled.fetch_add(1, Ordering::Relaxed) + 1 == total {
                        done.notify_one();
                    }
                    async { Ok::<_, std::convert::Infallible>(()) }
                })
                .await
        }
    });
    done.notified().await;
    // Every entry handled; the clock stops once they are all acknowledged too.
    while consumer.stats().acked < total {
        // A timer, not a spin: a spinning task would take a core from the consumer.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    shutdown.cancel();
    run.await.unwrap().unwrap();
    elapsed
}

/// One consumer at concurrency 1 reading batches of 100, against the raw loop: with heartbeats
/// at their default (a third of the default 30 s `min_idle`, so none fire during a run), with
/// heartbeats every 100 ms (`min_idle` 300 ms), and without heartbeats.
fn consume_concurrency_1(
    c: &mut Criterion,
    rt: &Runtime,
    url: &str,
    redis: &Redis,
    keys: &KeySpace,
) {
    let batch = 100;
    let mut group = c.benchmark_group("messaging/consume-ack/batch-100-concurrency-1");
    let per_iter = (BATCHES_PER_ITER * batch) as u64;
    group.throughput(Throughput::Elements(per_iter));
    let client = redis::Client::open(url).unwrap();
    let conn = rt
        .block_on(client.get_multiplexed_async_connection())
        .unwrap();
    bench_consume(
        &mut group,
        rt,
        redis,
        keys,
        "raw-redis-rs",
        per_iter,
        |_, stream, total| raw_consume(conn.clone(), stream, batch, total),
    );
    let rows: [(&str, bool, Duration); 3] = [
        ("redis-patterns-messaging", true, Duration::from_secs(30)),
        (
            "redis-patterns-messaging/heartbeats-100ms",
            true,
            Duration::from_millis(300),
        ),
        (
            "redis-patterns-messaging/no-heartbeats",
            false,
            Duration::from_millis(300),
        ),
    ];
    let consumer = |stream: String, heartbeats: bool, min_idle: Duration| {
        Consumer::builder(redis.clone(), keys, stream, "g", "c")
            .batch_size(batch)
            .block(Duration::from_millis(100))
            .min_idle(min_idle)
            .heartbeats(heartbeats)
            .build()
            .unwrap()
    };
    for (name, heartbeats, min_idle) in rows {
        bench_consume(
            &mut group,
            rt,
            redis,
            keys,
            name,
            per_iter,
            |stream, _, total| run_until_acked(consumer(stream, heartbeats, min_idle), total),
        );
    }
    group.finish();

    // Criterion measures one row after the other; with BENCH_INTERLEAVED=<rounds> the default
    // consumer and the raw loop also take turns, each on a fresh stream of `per_iter` entries,
    // and the ratio of their total times is printed.
    let rounds = interleaved_rounds();
    if rounds > 0 {
        let (mut raw_time, mut time) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            let (_, key) = filled(rt, redis, keys, per_iter);
            raw_time += rt.block_on(raw_consume(conn.clone(), key, batch, per_iter));
            let (stream, _) = filled(rt, redis, keys, per_iter);
            let defaults = consumer(stream, true, Duration::from_secs(30));
            time += rt.block_on(run_until_acked(defaults, per_iter));
        }
        let ratio = raw_time.as_secs_f64() / time.as_secs_f64();
        eprintln!(
            "interleaved, 1 consumer: consume + ack, batch 100, concurrency 1 / raw XREADGROUP + XACK loop: {ratio:.2}"
        );
    }
}

/// Delayed entries at 50 tasks: `send_after` (due at once) and delivery by one consumer (batch
/// 100, upkeep every 10 ms), against plain `send` and delivery. The clock stops when the
/// consumer has handled every entry.
fn delayed(c: &mut Criterion, rt: &Runtime, redis: &Redis, keys: &KeySpace) {
    let mut group = c.benchmark_group(format!("messaging/send-after-deliver/{PUBLISHERS}-tasks"));
    group.throughput(Throughput::Elements(1));
    for (name, delayed) in [("send", false), ("send_after", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (stream, _) = fresh(keys, "delayed");
                let producer = Producer::builder(redis.clone(), keys, &stream)
                    .build()
                    .unwrap();
                let consumer = Consumer::builder(redis.clone(), keys, &stream, "g", "c")
                    .batch_size(100)
                    .block(Duration::from_millis(100))
                    .delayed_poll(Duration::from_millis(10))
                    .build()
                    .unwrap();
                rt.block_on(consumer.ensure_group()).unwrap();
                let handled = Arc::new(AtomicU64::new(0));
                let shutdown = CancellationToken::new();
                let run = rt.spawn({
                    let shutdown = shutdown.clone();
                    let handled = handled.clone();
                    async move {
                        consumer
                            .run(shutdown, move |_d: Delivery<u64>| {
                                handled.fetch_add(1, Ordering::Relaxed);
                                async { Ok::<_, std::convert::Infallible>(()) }
                            })
                            .await
                    }
                });
                let start = Instant::now();
                run_concurrent(rt, PUBLISHERS, iters, move |i| {
                    let producer = producer.clone();
                    async move {
                        if delayed {
                            producer.send_after(&i, Duration::ZERO).await.unwrap();
                        } else {
                            producer.send(&i).await.unwrap();
                        }
                    }
                });
                rt.block_on(async {
                    while handled.load(Ordering::Relaxed) < iters {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                });
                let elapsed = start.elapsed();
                shutdown.cancel();
                rt.block_on(run).unwrap().unwrap();
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = messaging
}
criterion_main!(benches);
