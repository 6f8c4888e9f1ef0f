//! redis-cache overhead at 1 and 50 concurrent tasks:
//! - the hit path (`Cache::get`: GET + envelope + decode) against a raw redis-rs GET +
//!   serde_json, and a near-cache hit (envelope + decode from process memory, no round trip);
//! - the miss path (`get_or_load` on a cold key: GET, lease + generation script, conditional
//!   store script) against the same three round trips done by hand, and against the seed's naive
//!   GET + SET EX.
//!
//! Run: `cargo bench -p redis-patterns-benches --bench cache`.

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis_cache::{Cache, NearCacheConfig};
use redis_core::{KeySpace, Redis};
use redis_patterns_benches::{BenchServer, CONCURRENCY, run_concurrent, runtime};
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

static STORE: &str = "local gen = redis.call('GET', KEYS[2]) or ''
if gen == ARGV[1] then
  if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
end
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
return 1";

static BEGIN: &str = "local taken = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
local gen = redis.call('GET', KEYS[2]) or ''
local exists = redis.call('EXISTS', KEYS[3])
if taken then return {1, gen, exists} end
return {0, gen, exists}";

static NEXT: AtomicU64 = AtomicU64::new(0);

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
    let near = rt.block_on(async {
        let near = Cache::builder(redis.clone(), &keys)
            .ttl(std::time::Duration::from_secs(600))
            .near_cache(NearCacheConfig::new(1_000).ttl(std::time::Duration::from_secs(600)))
            .build()
            .unwrap();
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
    let store = redis::Script::new(STORE);
    let begin = redis::Script::new(BEGIN);

    for tasks in CONCURRENCY {
        let mut group = c.benchmark_group(format!("cache/hit/{tasks}-tasks"));
        group.throughput(Throughput::Elements(1));
        {
            let raw = raw.clone();
            let key = raw_key.clone();
            group.bench_function("raw-get-serde-json", |b| {
                b.iter_custom(|iters| {
                    let raw = raw.clone();
                    let key = key.clone();
                    run_concurrent(&rt, tasks, iters, move |_| {
                        let mut raw = raw.clone();
                        let key = key.clone();
                        async move {
                            let bytes: Vec<u8> = redis::cmd("GET")
                                .arg(&key)
                                .query_async(&mut raw)
                                .await
                                .unwrap();
                            let p: Product = serde_json::from_slice(&bytes).unwrap();
                            assert_eq!(p.id, 7);
                        }
                    })
                })
            });
        }
        {
            let cache = cache.clone();
            group.bench_function("redis-cache-get", |b| {
                b.iter_custom(|iters| {
                    let cache = cache.clone();
                    run_concurrent(&rt, tasks, iters, move |_| {
                        let cache = cache.clone();
                        async move {
                            let p: Product = cache.get("hit").await.unwrap().unwrap();
                            assert_eq!(p.id, 7);
                        }
                    })
                })
            });
        }
        {
            let near = near.clone();
            group.bench_function("redis-cache-get-near-hit", |b| {
                b.iter_custom(|iters| {
                    let near = near.clone();
                    run_concurrent(&rt, tasks, iters, move |_| {
                        let near = near.clone();
                        async move {
                            let p: Product = near.get("hit").await.unwrap().unwrap();
                            assert_eq!(p.id, 7);
                        }
                    })
                })
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("cache/miss/{tasks}-tasks"));
        group.throughput(Throughput::Elements(1));
        {
            let raw = raw.clone();
            let keys = keys.clone();
            group.bench_function("raw-seed-get-setex", |b| {
                b.iter_custom(|iters| {
                    let raw = raw.clone();
                    let keys = keys.clone();
                    run_concurrent(&rt, tasks, iters, move |_| {
                        let mut raw = raw.clone();
                        let key = keys
                            .key(&format!("raw-miss{}", NEXT.fetch_add(1, Ordering::Relaxed)))
                            .unwrap();
                        async move {
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
                        }
                    })
                })
            });
        }
        {
            let raw = raw.clone();
            let keys = keys.clone();
            let store = store.clone();
            let begin = begin.clone();
            group.bench_function("raw-same-round-trips", |b| {
                b.iter_custom(|iters| {
                    let raw = raw.clone();
                    let keys = keys.clone();
                    let store = store.clone();
                    let begin = begin.clone();
                    run_concurrent(&rt, tasks, iters, move |_| {
                        let mut raw = raw.clone();
                        let store = store.clone();
                        let begin = begin.clone();
                        let key = keys
                            .key(&format!("raw-miss{}", NEXT.fetch_add(1, Ordering::Relaxed)))
                            .unwrap();
                        async move {
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
                            let _: i64 = store
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
                        }
                    })
                })
            });
        }
        {
            let cache = cache.clone();
            group.bench_function("redis-cache-get-or-load", |b| {
                b.iter_custom(|iters| {
                    let cache = cache.clone();
                    run_concurrent(&rt, tasks, iters, move |_| {
                        let cache = cache.clone();
                        let name = format!("miss{}", NEXT.fetch_add(1, Ordering::Relaxed));
                        async move {
                            let p: Option<Product> = cache
                                .get_or_load(&name, || async {
                                    Ok::<_, std::io::Error>(Some(product()))
                                })
                                .await
                                .unwrap();
                            assert!(p.is_some());
                        }
                    })
                })
            });
        }
        group.finish();
    }
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
