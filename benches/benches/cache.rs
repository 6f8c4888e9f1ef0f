//! redis-patterns-cache overhead at 1 and 50 concurrent tasks:
//! - the hit path (`Cache::get`: GET + envelope + decode) against a raw redis-rs GET +
//!   serde_json, and a near-cache hit (envelope + decode from process memory, no round trip);
//! - the miss path (`get_or_load` on a cold key: GET, lease + generation script, conditional
//!   store script) against the same three round trips done by hand, and against the seed's naive
//!   GET + SET EX;
//! - a write (`Cache::set`, generation-fenced) against the pipelined `GET` + `PSETEX` that the
//!   `cached` crate's Redis store sends for its `cache_set`;
//! - a tagged write (`Cache::set_with` and two tags) against a raw `MULTI`/`EXEC` pipeline sending
//!   the same writes (a `SET NX GET` per tag version, the generation, the entry).
//!
//!
//! With `BENCH_INTERLEAVED=<rounds>` it also runs, after the groups, the hit, write and tagged-write
//! pairs (`redis-cache-get` / raw GET + serde_json, `redis-cache-set` / raw pipelined GET + PSETEX,
//! `redis-cache-set-tagged` / raw MULTI/EXEC) alternately in short slices, at 1 and 50 tasks, and
//! prints the ratios (raw time over the cache's: its throughput as a fraction of raw), which a
//! busy machine skews less than rows measured one after the other.
//!
//! Run: `cargo bench -p redis-patterns-benches --bench cache` (or
//! `BENCH_INTERLEAVED=20 cargo bench -p redis-patterns-benches --bench cache -- --warm-up-time 1 --measurement-time 3`).

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use redis_cache::{Cache, EntryOptions, NearCacheConfig};
use redis_core::{Key, KeySpace, Redis, Script};
use redis_patterns_benches::{
    BenchServer, CONCURRENCY, bench_concurrent, concurrent_group, interleaved, report_interleaved,
    runtime,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
    tags: Vec<String>,
}

fn product() -> Product {
    Product {
        id: 7,
        name: "desk lamp with a long enough name".into(),
        price_cents: 2_999,
        tags: vec!["home".into(), "lighting".into(), "office".into()],
    }
}

// The cache's own scripts, as the crate loads them (they read no clock, so no prelude).
static STORE: Script = Script::new(
    "cache_store",
    include_str!("../../crates/redis-patterns-cache/src/scripts/store.lua"),
);
static BEGIN: Script = Script::new(
    "cache_begin",
    include_str!("../../crates/redis-patterns-cache/src/scripts/begin.lua"),
);

static NEXT: AtomicU64 = AtomicU64::new(0);

type Conn = redis::aio::MultiplexedConnection;

/// The raw hit: `GET` and `serde_json`, which must find the product.
async fn raw_get_product(raw: &mut Conn, key: &Key) {
    let bytes: Vec<u8> = redis::cmd("GET").arg(key).query_async(raw).await.unwrap();
    let p: Product = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(p.id, 7);
}

fn cache(c: &mut Criterion) {
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
    let cache = Cache::builder(redis.clone(), &keys)
        .ttl(std::time::Duration::from_secs(600))
        .build()
        .unwrap();
    let raw_key = keys.key("raw-hit").unwrap();
    rt.block_on(async {
        cache.set("hit", &product()).await.unwrap();
        let json = serde_json::to_vec(&product()).unwrap();
        let _: () = redis
            .query(redis::cmd("SET").arg(&raw_key).arg(json).arg("EX").arg(600))
            .await
            .unwrap();
    });
    // Built inside the runtime (its tracking task runs there); the entry is held once tracking
    // is up and one read stored it.
    // Its own key space: its tracking connection would otherwise receive an invalidation push
    // for every key the other rows write under `<keys>:cache:`, and slow them down.
    let near_keys = KeySpace::new(&format!("benchnear{}", std::process::id())).unwrap();
    let near = rt.block_on(async {
        let near = Cache::builder(redis.clone(), &near_keys)
            .ttl(std::time::Duration::from_secs(600))
            .near_cache(NearCacheConfig::new(1_000).ttl(std::time::Duration::from_secs(600)))
            .build()
            .unwrap();
        near.set("hit", &product()).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let _: Option<Product> = near.get("hit").await.unwrap();
            let hits = near.near_cache_stats().unwrap().hits;
            let _: Option<Product> = near.get("hit").await.unwrap();
            if near.near_cache_stats().unwrap().hits > hits {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "near cache never filled"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        near
    });
    let tagged = EntryOptions::new().tag("category:lamps").tag("brand:acme");
    let store = STORE.inner().clone();
    let begin = BEGIN.inner().clone();

    // The hit, write and tagged-write rows once each, as `bench_concurrent` and `interleaved`
    // take them: (state, op). Their keys cycle over `i % 1024`, as every run's indices start at
    // 0, so any run of them may repeat.
    let raw_hit = (
        (raw.clone(), raw_key),
        |(mut raw, key): (Conn, Key), _: u64| async move { raw_get_product(&mut raw, &key).await },
    );
    let hit = |cache: &Cache| {
        (cache.clone(), |cache: Cache, _: u64| async move {
            let p: Product = cache.get("hit").await.unwrap().unwrap();
            assert_eq!(p.id, 7);
        })
    };
    let raw_set = (
        (raw.clone(), keys.clone()),
        |(mut raw, keys): (Conn, KeySpace), i: u64| async move {
            let key = keys.key(&format!("raw-set{}", i % 1024)).unwrap();
            let json = serde_json::to_vec(&product()).unwrap();
            let (_old,): (Option<Vec<u8>>,) = redis::pipe()
                .get(&key)
                .pset_ex(&key, json, 600_000)
                .ignore()
                .query_async(&mut raw)
                .await
                .unwrap();
        },
    );
    let set = (cache.clone(), |cache: Cache, i: u64| async move {
        cache
            .set(&format!("set{}", i % 1024), &product())
            .await
            .unwrap();
    });
    let raw_set_tagged = (
        (raw.clone(), keys.clone()),
        |(mut raw, keys): (Conn, KeySpace), i: u64| async move {
            let key = keys.key(&format!("raw-tagged{}", i % 1024)).unwrap();
            let json = serde_json::to_vec(&product()).unwrap();
            let mut pipe = redis::pipe();
            pipe.atomic();
            for tag in ["category:lamps", "brand:acme"] {
                pipe.cmd("SET")
                    .arg(keys.key(tag).unwrap())
                    .arg(redis_core::random_token())
                    .arg("NX")
                    .arg("GET")
                    .arg("PX")
                    .arg(604_800_000u64)
                    .ignore();
            }
            pipe.cmd("SET")
                .arg(key.companion("gen"))
                .arg(redis_core::random_token())
                .arg("PX")
                .arg(3_600_000)
                .ignore()
                .pset_ex(&key, json, 600_000)
                .ignore();
            let () = pipe.query_async(&mut raw).await.unwrap();
        },
    );
    let set_tagged = (
        (cache.clone(), tagged),
        |(cache, tagged): (Cache, EntryOptions), i: u64| async move {
            cache
                .set_with(&format!("tagged{}", i % 1024), &product(), &tagged)
                .await
                .unwrap();
        },
    );

    for tasks in CONCURRENCY {
        let mut group = concurrent_group(c, "cache/hit", tasks);
        let (state, op) = raw_hit.clone();
        bench_concurrent(&mut group, &rt, "raw-get-serde-json", tasks, state, op);
        // As above, building the key from its name on every call, as the cache must.
        bench_concurrent(
            &mut group,
            &rt,
            "raw-get-serde-json-key-per-call",
            tasks,
            (raw.clone(), keys.clone()),
            |(mut raw, keys), _| async move {
                let key = keys.key("raw-hit").unwrap();
                raw_get_product(&mut raw, &key).await;
            },
        );
        // The same read through Redis and, with the near cache on, from process memory.
        for (row, cache) in [
            ("redis-cache-get", &cache),
            ("redis-cache-get-near-hit", &near),
        ] {
            let (state, op) = hit(cache);
            bench_concurrent(&mut group, &rt, row, tasks, state, op);
        }
        group.finish();

        let mut group = concurrent_group(c, "cache/set", tasks);
        let (state, op) = raw_set.clone();
        bench_concurrent(&mut group, &rt, "raw-get-psetex", tasks, state, op);
        let (state, op) = set.clone();
        bench_concurrent(&mut group, &rt, "redis-cache-set", tasks, state, op);
        group.finish();

        let mut group = concurrent_group(c, "cache/set-tagged", tasks);
        let (state, op) = raw_set_tagged.clone();
        bench_concurrent(&mut group, &rt, "raw-multi-exec", tasks, state, op);
        let (state, op) = set_tagged.clone();
        bench_concurrent(&mut group, &rt, "redis-cache-set-tagged", tasks, state, op);
        group.finish();

        let mut group = concurrent_group(c, "cache/miss", tasks);
        bench_concurrent(
            &mut group,
            &rt,
            "raw-seed-get-setex",
            tasks,
            (raw.clone(), keys.clone()),
            |(mut raw, keys), _| async move {
                let key = keys.key(&next_name("raw-miss")).unwrap();
                let got: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut raw)
                    .await
                    .unwrap();
                assert!(got.is_none());
                let json = serde_json::to_vec(&product()).unwrap();
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(json)
                    .arg("EX")
                    .arg(60)
                    .query_async(&mut raw)
                    .await
                    .unwrap();
            },
        );
        bench_concurrent(
            &mut group,
            &rt,
            "raw-same-round-trips",
            tasks,
            (raw.clone(), keys.clone(), store.clone(), begin.clone()),
            |(mut raw, keys, store, begin), _| async move {
                let key = keys.key(&next_name("raw-miss")).unwrap();
                let got: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut raw)
                    .await
                    .unwrap();
                assert!(got.is_none());
                let (taken, generation, _exists): (i64, Vec<u8>, i64) = begin
                    .key(key.companion("lease"))
                    .key(key.companion("gen"))
                    .key(&key)
                    .arg("token")
                    .arg(5000)
                    .invoke_async(&mut raw)
                    .await
                    .unwrap();
                assert_eq!(taken, 1);
                let json = serde_json::to_vec(&product()).unwrap();
                let stored: i64 = store
                    .key(&key)
                    .key(key.companion("gen"))
                    .key(key.companion("lease"))
                    .arg(generation)
                    .arg(json)
                    .arg(60_000)
                    .arg("token")
                    .invoke_async(&mut raw)
                    .await
                    .unwrap();
                assert_eq!(stored, 1);
            },
        );
        bench_concurrent(
            &mut group,
            &rt,
            "redis-cache-get-or-load",
            tasks,
            cache.clone(),
            |cache, _| async move {
                let p: Option<Product> = cache
                    .get_or_load(&next_name("miss"), || async {
                        Ok::<_, std::io::Error>(Some(product()))
                    })
                    .await
                    .unwrap();
                assert!(p.is_some());
            },
        );
        group.finish();
    }

    // Criterion measures one row after the other; on a busy machine the load drifts between
    // them. With BENCH_INTERLEAVED=<rounds> the hit, write and tagged-write pairs also run
    // alternately, in short slices, and the ratio of their total times is printed. (The miss
    // rows are left out: each of their calls takes a fresh name from a counter.)
    report_interleaved(|tasks, iters, rounds| {
        vec![
            (
                "hit: redis-cache-get / raw GET + serde_json".into(),
                interleaved(&rt, tasks, iters, rounds, raw_hit.clone(), hit(&cache)),
            ),
            (
                "set: redis-cache-set / raw pipelined GET + PSETEX".into(),
                interleaved(&rt, tasks, iters, rounds, raw_set.clone(), set.clone()),
            ),
            (
                "set-tagged: redis-cache-set-tagged / raw MULTI/EXEC".into(),
                interleaved(
                    &rt,
                    tasks,
                    iters,
                    rounds,
                    raw_set_tagged.clone(),
                    set_tagged.clone(),
                ),
            ),
        ]
    });
}

/// A name no earlier iteration used: every miss row reads a cold key.
fn next_name(prefix: &str) -> String {
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(15)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = cache
}
criterion_main!(benches);
