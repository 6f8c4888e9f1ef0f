//! redis-ratelimit: checks per second of every algorithm at 1 and 50 concurrent tasks, next to
//! two baselines on the same server in the same run:
//!
//! - `raw-script`: the same Lua, keys and arguments through a raw redis-rs `MultiplexedConnection`
//!   (`redis::Script`), i.e. what the crate adds on top of the script itself;
//! - `trivial-evalsha`: EVALSHA of `return 1` with the same key, i.e. the round trip without the
//!   algorithm's server-side work.
//!
//! Identities rotate over 1000 names with 100 units per second each, so allowed and denied
//! checks mix as in a real service. The concurrency limiter does acquire + release (two scripts).
//!
//! Run: `cargo xtask bench -- ratelimit` (or `cargo bench -p redis-patterns-benches --bench ratelimit`).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis::aio::MultiplexedConnection;
use redis_core::{Config, Key, KeySpace, Redis};
use redis_patterns_benches::{BenchServer, CONCURRENCY, run_concurrent, runtime};
use redis_ratelimit::{Algorithm, ConcurrencyLimiter, Limit, RateLimiter};

const IDENTITIES: u64 = 1000;

fn identities(limiter_key: impl Fn(&str) -> Key) -> Vec<(String, Key)> {
    (0..IDENTITIES)
        .map(|i| {
            let name = format!("user:{i}");
            let key = limiter_key(&name);
            (name, key)
        })
        .collect()
}

fn bench_one<F, Fut>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    tasks: usize,
    name: &str,
    op: F,
) where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| run_concurrent(rt, tasks, iters, op.clone()))
    });
}

fn ratelimit(c: &mut Criterion) {
    let server = BenchServer::start();
    let rt = runtime();
    let (redis, raw): (Redis, MultiplexedConnection) = rt.block_on(async {
        // No reply time-outs on either side: the machine may be loaded, and both sides must
        // wait the same way.
        let config = Config::builder()
            .url(&server.url)
            .response_timeout(None)
            .build()
            .unwrap();
        let redis = Redis::connect(&config).await.expect("connect");
        let raw = redis::Client::open(server.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new().set_response_timeout(None),
            )
            .await
            .unwrap();
        (redis, raw)
    });
    let keys = KeySpace::new("bench")
        .unwrap()
        .pattern("ratelimit")
        .unwrap();
    let second = Duration::from_secs(1);
    let trivial = redis::Script::new("return 1");

    let limits = [
        Limit::fixed_window(100, second),
        Limit::sliding_log(100, second),
        Limit::sliding_window(100, second),
        Limit::token_bucket(100, 100, second),
        Limit::gcra(100, second, 100),
    ];
    for limit in limits {
        // Each measured function starts on identities of its own, so every one sees the same
        // mix of admitted and denied checks (a denial writes less than an admission).
        let fresh = |run: &str| {
            RateLimiter::builder(redis.clone(), limit)
                .keys(keys.pattern(run).unwrap())
                .build()
                .unwrap()
        };
        let source = redis_ratelimit::script(limit.algorithm()).source();
        let script = redis::Script::new(source);
        let period_us = limit.period().as_micros() as u64;
        let log = limit.algorithm() == Algorithm::SlidingLog;
        for tasks in CONCURRENCY {
            let mut group = c.benchmark_group(format!(
                "ratelimit/{}/{tasks}-tasks",
                limit.algorithm().name()
            ));
            group.throughput(Throughput::Elements(1));
            {
                let limiter = fresh(&format!("crate-{tasks}"));
                let ids = std::sync::Arc::new(identities(|name| limiter.key(name).unwrap()));
                bench_one(&mut group, &rt, tasks, "redis-ratelimit", move |i| {
                    let (limiter, ids) = (limiter.clone(), ids.clone());
                    async move {
                        let (name, _) = &ids[(i % IDENTITIES) as usize];
                        limiter.check(name).await.unwrap();
                    }
                });
            }
            {
                let raw_keys = fresh(&format!("raw-{tasks}"));
                let ids = std::sync::Arc::new(identities(|name| raw_keys.key(name).unwrap()));
                let (raw, ids, script) = (raw.clone(), ids.clone(), script.clone());
                bench_one(&mut group, &rt, tasks, "raw-script", move |i| {
                    let (mut raw, ids, script) = (raw.clone(), ids.clone(), script.clone());
                    async move {
                        let (_, key) = &ids[(i % IDENTITIES) as usize];
                        let mut call = script.key(key);
                        if log {
                            call.key(key.companion("seq"));
                        }
                        let _: Vec<i64> = call
                            .arg(limit.capacity())
                            .arg(period_us)
                            .arg(1)
                            .arg(limit.rate())
                            .invoke_async(&mut raw)
                            .await
                            .unwrap();
                    }
                });
            }
            {
                let trivial_keys = fresh(&format!("trivial-{tasks}"));
                let ids = std::sync::Arc::new(identities(|name| trivial_keys.key(name).unwrap()));
                let (raw, ids, trivial) = (raw.clone(), ids.clone(), trivial.clone());
                bench_one(&mut group, &rt, tasks, "trivial-evalsha", move |i| {
                    let (mut raw, ids, trivial) = (raw.clone(), ids.clone(), trivial.clone());
                    async move {
                        let (_, key) = &ids[(i % IDENTITIES) as usize];
                        let _: i64 = trivial.key(key).invoke_async(&mut raw).await.unwrap();
                    }
                });
            }
            group.finish();
        }
    }

    // Concurrency limiter: acquire + release, two round trips per element.
    let concurrency = ConcurrencyLimiter::builder(redis, 1000)
        .keys(keys.clone())
        .build()
        .unwrap();
    let conc_keys = keys.pattern("concurrency").unwrap();
    let ids = std::sync::Arc::new(identities(|name| conc_keys.key(name).unwrap()));
    let (acquire, release) = redis_ratelimit::concurrency_scripts();
    let (acquire, release) = (
        redis::Script::new(acquire.source()),
        redis::Script::new(release.source()),
    );
    for tasks in CONCURRENCY {
        let mut group = c.benchmark_group(format!("ratelimit/concurrency/{tasks}-tasks"));
        group.throughput(Throughput::Elements(1));
        {
            let (concurrency, ids) = (concurrency.clone(), ids.clone());
            bench_one(&mut group, &rt, tasks, "redis-ratelimit", move |i| {
                let (concurrency, ids) = (concurrency.clone(), ids.clone());
                async move {
                    let (name, _) = &ids[(i % IDENTITIES) as usize];
                    let permit = concurrency
                        .try_acquire(name)
                        .await
                        .unwrap()
                        .permit()
                        .unwrap();
                    permit.release().await.unwrap();
                }
            });
        }
        {
            let (raw, ids) = (raw.clone(), ids.clone());
            let (acquire, release) = (acquire.clone(), release.clone());
            bench_one(&mut group, &rt, tasks, "raw-script", move |i| {
                let (mut raw, ids) = (raw.clone(), ids.clone());
                let (acquire, release) = (acquire.clone(), release.clone());
                async move {
                    let (_, key) = &ids[(i % IDENTITIES) as usize];
                    let id = format!("{:032x}", i as u128 * 0x9E37_79B9_7F4A_7C15);
                    let reply: Vec<i64> = acquire
                        .key(key)
                        .arg(1000)
                        .arg(30_000_000)
                        .arg(&id)
                        .invoke_async(&mut raw)
                        .await
                        .unwrap();
                    assert_eq!(reply[0], 1);
                    let _: i64 = release
                        .key(key)
                        .arg(0)
                        .arg(&id)
                        .invoke_async(&mut raw)
                        .await
                        .unwrap();
                }
            });
        }
        {
            let (raw, ids, trivial) = (raw.clone(), ids.clone(), trivial.clone());
            bench_one(&mut group, &rt, tasks, "trivial-evalsha", move |i| {
                let (mut raw, ids, trivial) = (raw.clone(), ids.clone(), trivial.clone());
                async move {
                    let (_, key) = &ids[(i % IDENTITIES) as usize];
                    let _: i64 = trivial.key(key).invoke_async(&mut raw).await.unwrap();
                    let _: i64 = trivial.key(key).invoke_async(&mut raw).await.unwrap();
                }
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = ratelimit
}
criterion_main!(benches);
