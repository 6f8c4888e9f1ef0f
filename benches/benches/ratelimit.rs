//! redis-patterns-ratelimit: checks per second of every algorithm at 1 and 50 concurrent tasks, next to
//! two baselines on the same server in the same run:
//!
//! - `raw-script`: the same Lua (the crate's script files with their preludes), keys and
//!   arguments through a raw redis-rs `MultiplexedConnection` (`redis::Script`), i.e. what the
//!   crate adds on top of the script itself;
//! - `trivial-evalsha`: EVALSHA of `return 1` with the same key, i.e. the round trip without the
//!   algorithm's server-side work.
//!
//! Identities rotate over 1000 names with 100 units per second each, so allowed and denied
//! checks mix as in a real service. The concurrency limiter does acquire + release (two scripts).
//!
//! Run: `cargo xtask bench -- ratelimit` (or `cargo bench -p redis-patterns-benches --bench ratelimit`).

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use redis::aio::MultiplexedConnection;
use redis_core::{Config, Key, KeySpace, Redis, Script, script::SERVER_CLOCK};
use redis_patterns_benches::{
    BenchServer, CONCURRENCY, bench_concurrent, concurrent_group, run_concurrent, runtime,
};
use redis_ratelimit::{Algorithm, ConcurrencyLimiter, Limit, MultiLimiter, RateLimiter};

const IDENTITIES: u64 = 1000;

/// A concurrency script of the crate, with the server clock.
const fn concurrency_script(name: &'static str, body: &'static str) -> Script {
    Script::new(name, body).with_preludes(&[SERVER_CLOCK])
}

static ACQUIRE: Script = concurrency_script(
    "ratelimit_concurrency_acquire",
    include_str!("../../crates/redis-patterns-ratelimit/src/scripts/concurrency_acquire.lua"),
);
static RELEASE: Script = concurrency_script(
    "ratelimit_concurrency_release",
    include_str!("../../crates/redis-patterns-ratelimit/src/scripts/concurrency_release.lua"),
);

/// The raw redis-rs script of `algorithm`: the crate's script, byte for byte.
fn raw_script(algorithm: Algorithm) -> redis::Script {
    redis_ratelimit::script(algorithm).inner().clone()
}

/// What a check costs the server, from 50 tasks making `checks` checks through `op`: commands
/// (`INFO commandstats`, the script's own calls included) and CPU time (`INFO cpu`, user + system,
/// networking included) per check. The CPU time does not depend on how loaded the machine is, so
/// `1 / cpu per check` is the rate one server core could sustain. Printed once per configuration.
fn server_cost(
    rt: &tokio::runtime::Runtime,
    redis: &Redis,
    label: &str,
    checks: u64,
    op: impl Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static,
) {
    let sample = |redis: Redis| async move {
        let (calls, cpu) = redis_test_support::command_calls_and_cpu(&redis).await;
        (calls.values().sum::<u64>(), cpu)
    };
    let (calls0, cpu0) = rt.block_on(sample(redis.clone()));
    run_concurrent(rt, 50, checks, op);
    let (calls1, cpu1) = rt.block_on(sample(redis.clone()));
    // The INFO call itself counts once.
    let per = (calls1 - calls0 - 1) as f64 / checks as f64;
    let cpu_us = (cpu1 - cpu0) * 1e6 / checks as f64;
    eprintln!(
        "server cost per check, {label}: {per:.2} commands, {cpu_us:.2} us CPU (one core: {:.0}k checks/s)",
        1e3 / cpu_us
    );
}

/// The batch script's number of `algorithm`.
fn batch_code(algorithm: Algorithm) -> u8 {
    match algorithm {
        Algorithm::FixedWindow => 1,
        Algorithm::SlidingLog => 2,
        Algorithm::SlidingWindow => 3,
        Algorithm::TokenBucket => 4,
        _ => 5,
    }
}

/// Every identity's name and key, shared by the tasks of one row.
type Identities = Arc<Vec<(String, Key)>>;

fn identities(limiter_key: impl Fn(&str) -> Key) -> Identities {
    let ids = (0..IDENTITIES)
        .map(|i| {
            let name = format!("user:{i}");
            let key = limiter_key(&name);
            (name, key)
        })
        .collect();
    Arc::new(ids)
}

/// The identity of the `i`-th operation.
fn nth(ids: &Identities, i: u64) -> &(String, Key) {
    &ids[(i % IDENTITIES) as usize]
}

/// EVALSHA of `return 1` on the `i`-th identity's key, `times` times.
fn trivial_row(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    tasks: usize,
    state: (MultiplexedConnection, Identities, redis::Script),
    times: usize,
) {
    bench_concurrent(
        group,
        rt,
        "trivial-evalsha",
        tasks,
        state,
        move |(mut raw, ids, trivial), i| async move {
            let (_, key) = nth(&ids, i);
            for _ in 0..times {
                let _: i64 = trivial.key(key).invoke_async(&mut raw).await.unwrap();
            }
        },
    );
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
    let keys = KeySpace::new("bench").unwrap();
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
        let fresh_with = |run: &str, coalesce: bool| {
            RateLimiter::builder(redis.clone(), &keys.pattern(run).unwrap(), limit)
                .coalesce(coalesce)
                .build()
                .unwrap()
        };
        let fresh = |run: &str| fresh_with(run, false);
        for coalesce in [false, true] {
            let limiter = fresh_with(&format!("count-{coalesce}"), coalesce);
            let ids = identities(|name| limiter.key(name).unwrap());
            let label = format!(
                "{} ({})",
                limit.algorithm().name(),
                if coalesce { "coalesced" } else { "one by one" }
            );
            server_cost(&rt, &redis, &label, 50_000, move |i| {
                let (limiter, ids) = (limiter.clone(), ids.clone());
                Box::pin(async move {
                    limiter.check(&nth(&ids, i).0).await.unwrap();
                })
            });
        }
        let script = raw_script(limit.algorithm());
        // The same script the crate sends, byte for byte.
        assert_eq!(
            script.get_hash(),
            redis_ratelimit::script(limit.algorithm()).sha1()
        );
        let period_us = limit.period().as_micros() as u64;
        let log = limit.algorithm() == Algorithm::SlidingLog;
        for tasks in CONCURRENCY {
            let name = format!("ratelimit/{}", limit.algorithm().name());
            let mut group = concurrent_group(c, &name, tasks);

            let limiter = fresh(&format!("crate-{tasks}"));
            let ids = identities(|name| limiter.key(name).unwrap());
            bench_concurrent(
                &mut group,
                &rt,
                "redis-patterns-ratelimit",
                tasks,
                (limiter, ids),
                |(limiter, ids), i| async move {
                    let (name, _) = nth(&ids, i);
                    limiter.check(name).await.unwrap();
                },
            );

            let coalesced = fresh_with(&format!("coalesced-{tasks}"), true);
            let ids = identities(|name| coalesced.key(name).unwrap());
            bench_concurrent(
                &mut group,
                &rt,
                "redis-patterns-ratelimit-coalesced",
                tasks,
                (coalesced, ids),
                |(limiter, ids), i| async move {
                    let (name, _) = nth(&ids, i);
                    limiter.check(name).await.unwrap();
                },
            );

            let raw_keys = fresh(&format!("raw-{tasks}"));
            let ids = identities(|name| raw_keys.key(name).unwrap());
            bench_concurrent(
                &mut group,
                &rt,
                "raw-script",
                tasks,
                (raw.clone(), ids, script.clone()),
                move |(mut raw, ids, script), i| async move {
                    let (_, key) = nth(&ids, i);
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
                },
            );

            // The batch script with 25 checks a call: coalescing with no client-side cost (one
            // call per 25 elements; the other 24 return at once).
            let batch_keys = fresh(&format!("raw-batch-{tasks}"));
            let ids = identities(|name| batch_keys.key(name).unwrap());
            let batch = redis_ratelimit::batch_script().inner().clone();
            bench_concurrent(
                &mut group,
                &rt,
                "raw-batch-script-25",
                tasks,
                (raw.clone(), ids, batch),
                move |(mut raw, ids, batch), i| async move {
                    if i % 25 != 0 {
                        return;
                    }
                    let mut call = batch.prepare_invoke();
                    call.arg(25);
                    for j in i..i + 25 {
                        let (_, key) = nth(&ids, j);
                        call.key(key);
                        if log {
                            call.key(key.companion("seq"));
                        }
                        call.arg(1)
                            .arg(1)
                            .arg(batch_code(limit.algorithm()))
                            .arg(limit.capacity())
                            .arg(period_us)
                            .arg(limit.rate());
                    }
                    let _: Vec<i64> = call.invoke_async(&mut raw).await.unwrap();
                },
            );

            let trivial_keys = fresh(&format!("trivial-{tasks}"));
            let ids = identities(|name| trivial_keys.key(name).unwrap());
            trivial_row(
                &mut group,
                &rt,
                tasks,
                (raw.clone(), ids, trivial.clone()),
                1,
            );
            group.finish();
        }
    }

    // Several limits per identity (GCRA per second, fixed window per minute, sliding window per
    // hour): one batch script per check, or coalesced; raw: the same script, one check a call.
    {
        let trivial = trivial.clone();
        let ids = identities(|name| keys.key(name).unwrap());
        let raw = raw.clone();
        server_cost(
            &rt,
            &redis,
            "trivial EVALSHA (return 1)",
            50_000,
            move |i| {
                let (trivial, ids, mut raw) = (trivial.clone(), ids.clone(), raw.clone());
                Box::pin(async move {
                    let _: i64 = trivial
                        .key(&nth(&ids, i).1)
                        .invoke_async(&mut raw)
                        .await
                        .unwrap();
                })
            },
        );
    }
    let multi_limits = [
        ("second", Limit::gcra(100, second, 100)),
        ("minute", Limit::fixed_window(3000, Duration::from_secs(60))),
        (
            "hour",
            Limit::sliding_window(100_000, Duration::from_secs(3600)),
        ),
    ];
    let multi = |run: &str, coalesce: bool| {
        multi_limits
            .iter()
            .fold(
                MultiLimiter::builder(redis.clone(), &keys.pattern(run).unwrap()),
                |b, (name, limit)| b.limit(*name, *limit),
            )
            .coalesce(coalesce)
            .build()
            .unwrap()
    };
    for coalesce in [false, true] {
        let limiter = multi(&format!("multi-count-{coalesce}"), coalesce);
        let ids = identities(|name| limiter.keys(name).unwrap()[0].clone());
        let label = format!(
            "multi, 3 limits ({})",
            if coalesce { "coalesced" } else { "one by one" }
        );
        server_cost(&rt, &redis, &label, 50_000, move |i| {
            let (limiter, ids) = (limiter.clone(), ids.clone());
            Box::pin(async move {
                limiter.check(&nth(&ids, i).0).await.unwrap();
            })
        });
    }
    let batch = redis_ratelimit::batch_script().inner().clone();
    for tasks in CONCURRENCY {
        let mut group = concurrent_group(c, "ratelimit/multi", tasks);
        for (row, coalesce) in [
            ("redis-patterns-ratelimit", false),
            ("redis-patterns-ratelimit-coalesced", true),
        ] {
            let limiter = multi(&format!("multi-{row}-{tasks}"), coalesce);
            let ids = identities(|name| limiter.keys(name).unwrap()[0].clone());
            bench_concurrent(
                &mut group,
                &rt,
                row,
                tasks,
                (limiter, ids),
                |(limiter, ids), i| async move {
                    limiter.check(&nth(&ids, i).0).await.unwrap();
                },
            );
        }
        let keyed = multi(&format!("multi-raw-{tasks}"), false);
        let all_keys: Arc<Vec<Vec<Key>>> = Arc::new(
            (0..IDENTITIES)
                .map(|i| keyed.keys(&format!("user:{i}")).unwrap())
                .collect(),
        );
        bench_concurrent(
            &mut group,
            &rt,
            "raw-script",
            tasks,
            (raw.clone(), all_keys, batch.clone()),
            move |(mut raw, all_keys, batch), i| async move {
                let keys = &all_keys[(i % IDENTITIES) as usize];
                let mut call = batch.prepare_invoke();
                call.arg(1).arg(multi_limits.len()).arg(1);
                for (key, (_, limit)) in keys.iter().zip(&multi_limits) {
                    call.key(key)
                        .arg(batch_code(limit.algorithm()))
                        .arg(limit.capacity())
                        .arg(limit.period().as_micros() as u64)
                        .arg(limit.rate());
                }
                let _: Vec<i64> = call.invoke_async(&mut raw).await.unwrap();
            },
        );
        let trivial_keys = multi(&format!("multi-trivial-{tasks}"), false);
        let ids = identities(|name| trivial_keys.keys(name).unwrap()[0].clone());
        trivial_row(
            &mut group,
            &rt,
            tasks,
            (raw.clone(), ids, trivial.clone()),
            1,
        );
        group.finish();
    }

    // Concurrency limiter: acquire + release, two round trips per element.
    let concurrency = ConcurrencyLimiter::builder(redis, &keys, 1000)
        .build()
        .unwrap();
    let conc_keys = keys
        .pattern("ratelimit")
        .unwrap()
        .pattern("concurrency")
        .unwrap();
    let ids = identities(|name| conc_keys.key(name).unwrap());
    let (acquire, release) = (ACQUIRE.inner().clone(), RELEASE.inner().clone());
    let (crate_acquire, crate_release) = redis_ratelimit::concurrency_scripts();
    assert_eq!(acquire.get_hash(), crate_acquire.sha1());
    assert_eq!(release.get_hash(), crate_release.sha1());
    for tasks in CONCURRENCY {
        let mut group = concurrent_group(c, "ratelimit/concurrency", tasks);
        bench_concurrent(
            &mut group,
            &rt,
            "redis-patterns-ratelimit",
            tasks,
            (concurrency.clone(), ids.clone()),
            |(concurrency, ids), i| async move {
                let (name, _) = nth(&ids, i);
                let permit = concurrency
                    .try_acquire(name)
                    .await
                    .unwrap()
                    .permit()
                    .unwrap();
                permit.release().await.unwrap();
            },
        );
        bench_concurrent(
            &mut group,
            &rt,
            "raw-script",
            tasks,
            (raw.clone(), ids.clone(), acquire.clone(), release.clone()),
            |(mut raw, ids, acquire, release), i| async move {
                let (_, key) = nth(&ids, i);
                let id = redis_core::random_token();
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
            },
        );
        trivial_row(
            &mut group,
            &rt,
            tasks,
            (raw.clone(), ids.clone(), trivial.clone()),
            2,
        );
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
