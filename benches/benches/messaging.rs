//! redis-messaging throughput against raw redis-rs on the same server, in messages per second:
//! publish → receive, XADD at batch sizes 1/10/100, and consume + acknowledge at batch sizes
//! 1/10/100 (`XREADGROUP` + `XACK`).
//!
//! Run: `cargo xtask bench -- messaging` (or `cargo bench -p redis-patterns-benches --bench messaging`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis::PushKind;
use redis_core::{KeySpace, Redis};
use redis_messaging::{
    CancellationToken, Consumer, Delivery, Event, Producer, Publisher, Retention, Subscriber,
};
use redis_patterns_benches::{BenchServer, runtime};

const BATCHES: [usize; 3] = [1, 10, 100];
/// Batches per measured iteration of the consume benches, so start-up costs are amortised.
const BATCHES_PER_ITER: usize = 50;
const PUBLISHERS: u64 = 50;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn fresh(keys: &KeySpace, what: &str) -> redis_core::Key {
    keys.key(&format!("{what}{}", NEXT.fetch_add(1, Ordering::Relaxed)))
        .unwrap()
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

/// `PUBLISHERS` tasks publish `iters` messages in total; the clock stops when the one subscriber
/// has received them all.
fn publish_receive(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
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
        group.bench_function("raw-redis-rs", |b| {
            b.iter_custom(|iters| {
                let rx = rx.clone();
                let raw = raw.clone();
                let channel = channel.clone();
                rt.block_on(async move {
                    let mut rx = rx.lock().await;
                    let start = Instant::now();
                    publish_all(iters, move |i| {
                        let mut raw = raw.clone();
                        let channel = channel.clone();
                        async move {
                            let _: i64 = redis::cmd("PUBLISH")
                                .arg(&channel)
                                .arg(serde_json::to_vec(&i).unwrap())
                                .query_async(&mut raw)
                                .await
                                .unwrap();
                        }
                    });
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
                    start.elapsed()
                })
            })
        });
    }
    {
        let sub = rt.block_on(async {
            Subscriber::builder(redis.clone())
                .channel(format!("{channel}:crate"))
                .subscribe::<u64>()
                .await
                .unwrap()
        });
        let sub = Arc::new(tokio::sync::Mutex::new(sub));
        let publisher = Publisher::new(redis.clone());
        let channel = format!("{channel}:crate");
        group.bench_function("redis-messaging", |b| {
            b.iter_custom(|iters| {
                let sub = sub.clone();
                let publisher = publisher.clone();
                let channel = channel.clone();
                rt.block_on(async move {
                    let mut sub = sub.lock().await;
                    let start = Instant::now();
                    publish_all(iters, move |i| {
                        let publisher = publisher.clone();
                        let channel = channel.clone();
                        async move {
                            publisher.publish(&channel, &i).await.unwrap();
                        }
                    });
                    let mut got = 0;
                    while got < iters {
                        if let Some(Event::Message(_)) = sub.next().await {
                            got += 1;
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

/// Spawns `PUBLISHERS` tasks that run `op` for `0..iters` between them (not awaited: the
/// receiving side decides when the work is done).
fn publish_all<F, Fut>(iters: u64, op: F)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let op = Arc::new(op);
    let per_task = iters.div_ceil(PUBLISHERS);
    for t in 0..PUBLISHERS {
        let op = op.clone();
        tokio::spawn(async move {
            for i in t * per_task..((t + 1) * per_task).min(iters) {
                op(i).await;
            }
        });
    }
}

/// One task appends batches back to back: one pipeline (or one script) per batch.
fn xadd(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    redis: &Redis,
    raw: &redis::aio::MultiplexedConnection,
    keys: &KeySpace,
) {
    for batch in BATCHES {
        let mut group = c.benchmark_group(format!("messaging/xadd/batch-{batch}"));
        group.throughput(Throughput::Elements(batch as u64));
        let payloads: Vec<u64> = (0..batch as u64).collect();
        {
            let raw = raw.clone();
            let stream = fresh(keys, "xadd-raw");
            let encoded: Vec<Vec<u8>> = payloads
                .iter()
                .map(|p| serde_json::to_vec(p).unwrap())
                .collect();
            group.bench_function("raw-redis-rs", |b| {
                b.to_async(rt).iter(|| {
                    let mut raw = raw.clone();
                    let stream = stream.clone();
                    let encoded = encoded.clone();
                    async move {
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
                    }
                })
            });
        }
        {
            let producer = Producer::builder(redis.clone(), fresh(keys, "xadd"))
                .retention(Retention::MaxLen(100_000))
                .build()
                .unwrap();
            let payloads = payloads.clone();
            group.bench_function("redis-messaging", |b| {
                b.to_async(rt).iter(|| {
                    let producer = producer.clone();
                    let payloads = payloads.clone();
                    async move {
                        let _ = producer.send_batch(&payloads).await.unwrap();
                    }
                })
            });
        }
        group.finish();
    }
}

/// Fills a fresh stream with `BATCHES_PER_ITER × batch × iters` entries (not timed), then times
/// consuming and acknowledging all of them.
fn consume(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    url: &str,
    redis: &Redis,
    keys: &KeySpace,
) {
    for batch in BATCHES {
        let mut group = c.benchmark_group(format!("messaging/consume-ack/batch-{batch}"));
        let per_iter = (BATCHES_PER_ITER * batch) as u64;
        group.throughput(Throughput::Elements(per_iter));
        let fill = |stream: &redis_core::Key, n: u64| {
            let producer = Producer::builder(redis.clone(), stream.clone())
                .retention(Retention::Unbounded)
                .build()
                .unwrap();
            let payloads: Vec<u64> = (0..1000).collect();
            rt.block_on(async {
                let mut left = n;
                while left > 0 {
                    let take = left.min(1000) as usize;
                    producer.send_batch(&payloads[..take]).await.unwrap();
                    left -= take as u64;
                }
            });
        };
        {
            let client = redis::Client::open(url).unwrap();
            let mut conn = rt
                .block_on(client.get_multiplexed_async_connection())
                .unwrap();
            group.bench_function("raw-redis-rs", |b| {
                b.iter_custom(|iters| {
                    let total = per_iter * iters;
                    let stream = fresh(keys, "consume-raw");
                    fill(&stream, total);
                    let conn = &mut conn;
                    rt.block_on(async move {
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
                            let reply: Option<redis::streams::StreamReadReply> =
                                redis::cmd("XREADGROUP")
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
                                        Some(redis::Value::BulkString(b)) => {
                                            serde_json::from_slice(b).unwrap()
                                        }
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
                    })
                })
            });
        }
        group.bench_function("redis-messaging", |b| {
            b.iter_custom(|iters| {
                let total = per_iter * iters;
                let stream = fresh(keys, "consume");
                fill(&stream, total);
                let consumer = Consumer::builder(redis.clone(), stream, "g", "c")
                    .batch_size(batch)
                    .concurrency(batch)
                    .block(Duration::from_millis(100))
                    .build()
                    .unwrap();
                rt.block_on(async move {
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
                })
            })
        });
        group.finish();
    }
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
