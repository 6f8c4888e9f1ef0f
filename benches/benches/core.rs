//! redis-patterns-core overhead: GET and EVALSHA through `Redis` (the core trait object) against a raw
//! redis-rs `MultiplexedConnection`, at 1 and 50 concurrent tasks.
//!
//! Run: `cargo xtask bench -- core` (or `cargo bench -p redis-patterns-benches --bench core`).

use criterion::{Criterion, criterion_group, criterion_main};
use redis_core::{KeySpace, Redis, Script};
use redis_patterns_benches::{
    BenchServer, CONCURRENCY, bench_concurrent, concurrent_group, runtime,
};

static GET_SCRIPT: Script = Script::new("bench_get", "return redis.call('GET', KEYS[1])");

fn core(c: &mut Criterion) {
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
    let key = KeySpace::new("bench").unwrap().key("core").unwrap();
    rt.block_on(async {
        let _: () = redis
            .query(redis::cmd("SET").arg(&key).arg("value"))
            .await
            .unwrap();
    });
    let raw_script = redis::Script::new(GET_SCRIPT.source());

    for tasks in CONCURRENCY {
        let mut group = concurrent_group(c, "core/get", tasks);
        bench_concurrent(
            &mut group,
            &rt,
            "raw-redis-rs",
            tasks,
            (raw.clone(), key.clone()),
            |(mut raw, key), _| async move {
                let _: String = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut raw)
                    .await
                    .unwrap();
            },
        );
        bench_concurrent(
            &mut group,
            &rt,
            "redis-patterns-core",
            tasks,
            (redis.clone(), key.clone()),
            |(redis, key), _| async move {
                let _: String = redis.query(redis::cmd("GET").arg(&key)).await.unwrap();
            },
        );
        group.finish();

        let mut group = concurrent_group(c, "core/evalsha", tasks);
        bench_concurrent(
            &mut group,
            &rt,
            "raw-redis-rs",
            tasks,
            (raw.clone(), key.clone(), raw_script.clone()),
            |(mut raw, key, script), _| async move {
                let _: String = script.key(&key).invoke_async(&mut raw).await.unwrap();
            },
        );
        bench_concurrent(
            &mut group,
            &rt,
            "redis-patterns-core",
            tasks,
            (redis.clone(), key.clone()),
            |(redis, key), _| async move {
                let _: String = GET_SCRIPT.call().key(&key).invoke(&redis).await.unwrap();
            },
        );
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = core
}
criterion_main!(benches);
