//! redis-lock: uncontended acquire + release pairs against raw redis-rs doing the same two round
//! trips (`SET NX PX`, then an `EVALSHA` compare-and-delete) at 1 and 50 concurrent tasks on
//! different resources, and Redlock(3) acquire + release latency against a raw parallel
//! `SET NX PX` + compare-and-delete on three servers.
//!
//! Run: `cargo xtask bench -- lock` (or `cargo bench -p redis-patterns-benches --bench lock`).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis_core::{KeySpace, Redis};
use redis_lock::{Lock, Redlock};
use redis_patterns_benches::{BenchServer, CONCURRENCY, run_concurrent, runtime};
use redis_test_support::TestServer;

const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// One resource per running task (tasks are fresh per sample), so acquisitions never contend.
fn resource() -> String {
    format!("r{}", tokio::task::id())
}

fn token(i: u64) -> String {
    format!("{:032x}", u128::from(i) << 64 | 0xfeed)
}

fn lock(c: &mut Criterion) {
    let server = BenchServer::start();
    let rt = runtime();
    let (redis, raw) = rt.block_on(async {
        let redis = Redis::open(&server.url).await.expect("connect");
        let raw = redis::Client::open(server.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        (redis, raw)
    });
    let keys = KeySpace::new(&format!("bench{}", std::process::id())).unwrap();
    let raw_keys = keys.pattern("raw").unwrap();
    let lock = Lock::builder(redis.clone(), &keys)
        .ttl(Duration::from_secs(10))
        .build()
        .unwrap();
    let release = redis::Script::new(RELEASE);

    for tasks in CONCURRENCY {
        let mut group = c.benchmark_group(format!("lock/acquire-release/{tasks}-tasks"));
        group.throughput(Throughput::Elements(1));
        {
            let (raw, raw_keys, release) = (raw.clone(), raw_keys.clone(), release.clone());
            group.bench_function("raw-redis-rs", |b| {
                b.iter_custom(|iters| {
                    let (raw, raw_keys, release) = (raw.clone(), raw_keys.clone(), release.clone());
                    run_concurrent(&rt, tasks, iters, move |i| {
                        let mut raw = raw.clone();
                        let key = raw_keys.key(&resource()).unwrap();
                        let release = release.clone();
                        async move {
                            let token = token(i);
                            let ok: Option<String> = redis::cmd("SET")
                                .arg(&key)
                                .arg(&token)
                                .arg("NX")
                                .arg("PX")
                                .arg(10_000)
                                .query_async(&mut raw)
                                .await
                                .unwrap();
                            assert!(ok.is_some());
                            let n: i64 = release
                                .key(&key)
                                .arg(&token)
                                .invoke_async(&mut raw)
                                .await
                                .unwrap();
                            assert_eq!(n, 1);
                        }
                    })
                })
            });
        }
        {
            let lock = lock.clone();
            group.bench_function("redis-lock", |b| {
                b.iter_custom(|iters| {
                    let lock = lock.clone();
                    run_concurrent(&rt, tasks, iters, move |_| {
                        let lock = lock.clone();
                        async move {
                            let guard = lock
                                .try_acquire(&resource())
                                .await
                                .unwrap()
                                .expect("uncontended");
                            guard.release().await.unwrap();
                        }
                    })
                })
            });
        }
        group.finish();
    }

    // Redlock over three private masters.
    let masters: Vec<TestServer> = (0..3).map(|_| TestServer::spawn()).collect();
    let (instances, raws) = rt.block_on(async {
        let mut instances = Vec::new();
        let mut raws = Vec::new();
        for m in &masters {
            instances.push(Redis::open(&m.url()).await.unwrap());
            raws.push(
                redis::Client::open(m.url())
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap(),
            );
        }
        (instances, raws)
    });
    let redlock = Redlock::builder(instances, &keys)
        .ttl(Duration::from_secs(10))
        .instance_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut group = c.benchmark_group("lock/redlock-3/1-task");
    group.throughput(Throughput::Elements(1));
    {
        group.bench_function("raw-redis-rs", |b| {
            b.iter_custom(|iters| {
                let (raws, raw_keys, release) = (raws.clone(), raw_keys.clone(), release.clone());
                run_concurrent(&rt, 1, iters, move |i| {
                    let raws = raws.clone();
                    let key = raw_keys.key("redlock").unwrap();
                    let release = release.clone();
                    async move {
                        let token = token(i);
                        let set = |raw: &redis::aio::MultiplexedConnection| {
                            let mut raw = raw.clone();
                            let (key, token) = (key.clone(), token.clone());
                            async move {
                                let ok: Option<String> = redis::cmd("SET")
                                    .arg(&key)
                                    .arg(&token)
                                    .arg("NX")
                                    .arg("PX")
                                    .arg(10_000)
                                    .query_async(&mut raw)
                                    .await
                                    .unwrap();
                                assert!(ok.is_some());
                            }
                        };
                        tokio::join!(set(&raws[0]), set(&raws[1]), set(&raws[2]));
                        let del = |raw: &redis::aio::MultiplexedConnection| {
                            let mut raw = raw.clone();
                            let (key, token, release) =
                                (key.clone(), token.clone(), release.clone());
                            async move {
                                let n: i64 = release
                                    .key(&key)
                                    .arg(&token)
                                    .invoke_async(&mut raw)
                                    .await
                                    .unwrap();
                                assert_eq!(n, 1);
                            }
                        };
                        tokio::join!(del(&raws[0]), del(&raws[1]), del(&raws[2]));
                    }
                })
            })
        });
    }
    {
        group.bench_function("redis-lock", |b| {
            b.iter_custom(|iters| {
                let redlock = redlock.clone();
                run_concurrent(&rt, 1, iters, move |_| {
                    let redlock = redlock.clone();
                    async move {
                        let guard = redlock
                            .try_acquire("redlock")
                            .await
                            .unwrap()
                            .expect("uncontended");
                        guard.release().await.unwrap();
                    }
                })
            })
        });
    }
    group.finish();
    drop(masters);

    // Remove the fencing counters this run left on the server.
    rt.block_on(async {
        let mut cursor = 0u64;
        let mut names: Vec<String> = Vec::new();
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
            names.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for chunk in names.chunks(500) {
            let _: i64 = redis.query(redis::cmd("UNLINK").arg(chunk)).await.unwrap();
        }
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(15)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = lock
}
criterion_main!(benches);
