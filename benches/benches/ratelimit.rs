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

use std::{sync::Arc, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use redis::aio::MultiplexedConnection;
use redis_core::{Config, Key, KeySpace, Redis, Script, script::SERVER_CLOCK};
use redis_patterns_benches::{
    BenchServer, CONCURRENCY, bench_concurrent, concurrent_group, runtime,
};
use redis_ratelimit::{Algorithm, ConcurrencyLimiter, Limit, RateLimiter};

const IDENTITIES: u64 = 1000;

/// The rate limit scripts' own prelude, after the server clock.
const COMMON: &str = include_str!("../../crates/redis-patterns-ratelimit/src/scripts/common.lua");
const LIMIT_PRELUDES: &[&str] = &[SERVER_CLOCK, COMMON];

/// A rate limit script of the crate, with its preludes.
const fn limit_script(name: &'static str, body: &'static str) -> Script {
    Script::new(name, body).with_preludes(LIMIT_PRELUDES)
}

/// A concurrency script of the crate, with the server clock.
const fn concurrency_script(name: &'static str, body: &'static str) -> Script {
    Script::new(name, body).with_preludes(&[SERVER_CLOCK])
}

static FIXED_WINDOW: Script = limit_script(
    "ratelimit_fixed_window",
    include_str!("../../crates/redis-patterns-ratelimit/src/scripts/fixed_window.lua"),
);
static SLIDING_LOG: Script = limit_script(
    "ratelimit_sliding_log",
    include_str!("../../crates/redis-patterns-ratelimit/src/scripts/sliding_log.lua"),
);
static SLIDING_WINDOW: Script = limit_script(
    "ratelimit_sliding_window",
    include_str!("../../crates/redis-patterns-ratelimit/src/scripts/sliding_window.lua"),
);
static TOKEN_BUCKET: Script = limit_script(
    "ratelimit_token_bucket",
    include_str!("../../crates/redis-patterns-ratelimit/src/scripts/token_bucket.lua"),
);
static GCRA: Script = limit_script(
    "ratelimit_gcra",
    include_str!("../../crates/redis-patterns-ratelimit/src/scripts/gcra.lua"),
);
static ACQUIRE: Script = concurrency_script(
    "ratelimit_concurrency_acquire",
    include_str!("../../crates/redis-patterns-ratelimit/src/scripts/concurrency_acquire.lua"),
);
static RELEASE: Script = concurrency_script(
    "ratelimit_concurrency_release",
    include_str!("../../crates/redis-patterns-ratelimit/src/scripts/concurrency_release.lua"),
);

/// The raw redis-rs script of `algorithm`: the crate's Lua file with its preludes.
fn raw_script(algorithm: Algorithm) -> redis::Script {
    let script = match algorithm {
        Algorithm::FixedWindow => &FIXED_WINDOW,
        Algorithm::SlidingLog => &SLIDING_LOG,
        Algorithm::SlidingWindow => &SLIDING_WINDOW,
        Algorithm::TokenBucket => &TOKEN_BUCKET,
        _ => &GCRA,
    };
    script.inner().clone()
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
        let fresh = |run: &str| {
            RateLimiter::builder(redis.clone(), &keys.pattern(run).unwrap(), limit)
                .build()
                .unwrap()
        };
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
