//! redis-patterns-lock: uncontended acquire + release pairs against raw redis-rs doing the same two round
//! trips (`SET NX PX`, then an `EVALSHA` of the crate's own compare-and-delete script) at 1 and 50
//! concurrent tasks on different resources, and Redlock(3) acquire + release latency against a
//! raw parallel `SET NX PX` + compare-and-delete on three servers.
//!
//! Run: `cargo xtask bench -- lock` (or `cargo bench -p redis-patterns-benches --bench lock`).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis::aio::MultiplexedConnection;
use redis_core::{Key, KeySpace, Redis, Script, random_token};
use redis_lock::{Lock, Redlock};
use redis_patterns_benches::{
    BenchServer, CONCURRENCY, bench_concurrent, concurrent_group, runtime,
};
use redis_test_support::TestServer;

/// The lock's own release script (compare-and-delete), for the raw baseline.
static RELEASE: Script = Script::new(
    "lock_release",
    include_str!("../../crates/redis-patterns-lock/src/scripts/release.lua"),
);

/// One resource per running task (tasks are fresh per sample), so acquisitions never contend.
fn resource() -> String {
    format!("r{}", tokio::task::id())
}

/// The raw baseline's acquire: `SET key token NX PX 10000`, which must succeed.
async fn raw_set(mut raw: MultiplexedConnection, key: Key, token: String) {
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

/// The raw baseline's release: the compare-and-delete script, which must delete.
async fn raw_release(
    mut raw: MultiplexedConnection,
    release: redis::Script,
    key: Key,
    token: String,
) {
    let n: i64 = release
        .key(&key)
        .arg(&token)
        .invoke_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(n, 1);
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
    let release = RELEASE.inner().clone();

    for tasks in CONCURRENCY {
        let mut group = concurrent_group(c, "lock/acquire-release", tasks);
        bench_concurrent(
            &mut group,
            &rt,
            "raw-redis-rs",
            tasks,
            (raw.clone(), raw_keys.clone(), release.clone()),
            |(raw, raw_keys, release), _| async move {
                let key = raw_keys.key(&resource()).unwrap();
                let token = random_token();
                raw_set(raw.clone(), key.clone(), token.clone()).await;
                raw_release(raw, release, key, token).await;
            },
        );
        bench_concurrent(
            &mut group,
            &rt,
            "redis-patterns-lock",
            tasks,
            lock.clone(),
            |lock, _| async move {
                let guard = lock
                    .try_acquire(&resource())
                    .await
                    .unwrap()
                    .expect("uncontended");
                guard.release().await.unwrap();
            },
        );
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
    // One task only, so the group keeps its singular name rather than `concurrent_group`'s.
    let mut group = c.benchmark_group("lock/redlock-3/1-task");
    group.throughput(Throughput::Elements(1));
    bench_concurrent(
        &mut group,
        &rt,
        "raw-redis-rs",
        1,
        (raws, raw_keys.key("redlock").unwrap(), release),
        |(raws, key, release), _| async move {
            let token = random_token();
            let set =
                |raw: &MultiplexedConnection| raw_set(raw.clone(), key.clone(), token.clone());
            tokio::join!(set(&raws[0]), set(&raws[1]), set(&raws[2]));
            let del = |raw: &MultiplexedConnection| {
                raw_release(raw.clone(), release.clone(), key.clone(), token.clone())
            };
            tokio::join!(del(&raws[0]), del(&raws[1]), del(&raws[2]));
        },
    );
    bench_concurrent(
        &mut group,
        &rt,
        "redis-patterns-lock",
        1,
        redlock,
        |redlock, _| async move {
            let guard = redlock
                .try_acquire("redlock")
                .await
                .unwrap()
                .expect("uncontended");
            guard.release().await.unwrap();
        },
    );
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
