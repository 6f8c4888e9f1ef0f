//! redis-patterns-session: create, load and touch against raw redis-rs HSET / HGETALL on the same server,
//! at 1 and 50 concurrent tasks. Each store operation is one script round trip (EVALSHA), like
//! its one-command baseline.
//!
//! Run: `cargo xtask bench -- session` (or `cargo bench -p redis-patterns-benches --bench session`).

use std::{sync::Arc, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use redis_core::{KeySpace, Redis};
use redis_patterns_benches::{
    BenchServer, CONCURRENCY, bench_concurrent, concurrent_group, runtime,
};
use redis_session::{SessionId, SessionStore};
use serde::Serialize;

#[derive(Serialize)]
struct Data {
    user_name: &'static str,
    theme: &'static str,
    cart: [u32; 3],
}

const DATA: Data = Data {
    user_name: "alice",
    theme: "dark",
    cart: [1, 2, 3],
};
const SESSIONS: usize = 1000;

fn session(c: &mut Criterion) {
    let server = BenchServer::start();
    let rt = runtime();
    let prefix = format!("bench-session-{}", std::process::id());
    let (store, eager, raw, ids) = rt.block_on(async {
        let redis = Redis::open(&server.url).await.expect("connect");
        let keys = KeySpace::new(&prefix).unwrap();
        let store = SessionStore::builder(redis.clone(), &keys).build().unwrap();
        // Same store, but every access is recorded (no touch throttling).
        let eager = SessionStore::builder(redis.clone(), &keys)
            .touch_interval(Duration::ZERO)
            .build()
            .unwrap();
        let raw = redis::Client::open(server.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut ids = Vec::with_capacity(SESSIONS);
        for _ in 0..SESSIONS {
            ids.push(store.create(&DATA).await.unwrap());
        }
        (store, eager, raw, ids)
    });
    let ids: Arc<Vec<SessionId>> = Arc::new(ids);
    let raw_keys: Arc<Vec<String>> =
        Arc::new((0..SESSIONS).map(|i| format!("{prefix}:raw:{i}")).collect());
    let fields: Vec<(String, Vec<u8>)> = serde_json::to_value(&DATA)
        .unwrap()
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_vec(v).unwrap()))
        .collect();
    rt.block_on(async {
        let mut raw = raw.clone();
        for key in raw_keys.iter() {
            let _: () = redis::cmd("HSET")
                .arg(key)
                .arg(&fields)
                .query_async(&mut raw)
                .await
                .unwrap();
        }
    });

    for tasks in CONCURRENCY {
        // create: one EVALSHA (EXISTS, HSET, PEXPIREAT) vs one HSET of the same fields.
        let mut group = concurrent_group(c, "session/create", tasks);
        bench_concurrent(
            &mut group,
            &rt,
            "raw-hset",
            tasks,
            (raw.clone(), raw_keys.clone(), fields.clone()),
            |(mut raw, keys, fields), i| async move {
                let _: () = redis::cmd("HSET")
                    .arg(&keys[i as usize % SESSIONS])
                    .arg(&fields)
                    .query_async(&mut raw)
                    .await
                    .unwrap();
            },
        );
        bench_concurrent(
            &mut group,
            &rt,
            "redis-patterns-session",
            tasks,
            store.clone(),
            |store, _| async move {
                let id = store.create(&DATA).await.unwrap();
                std::hint::black_box(id);
            },
        );
        group.finish();

        // load: one EVALSHA (checks, throttled touch, HGETALL) vs one HGETALL.
        let mut group = concurrent_group(c, "session/load", tasks);
        bench_concurrent(
            &mut group,
            &rt,
            "raw-hgetall",
            tasks,
            (raw.clone(), raw_keys.clone()),
            |(mut raw, keys), i| async move {
                let all: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
                    .arg(&keys[i as usize % SESSIONS])
                    .query_async(&mut raw)
                    .await
                    .unwrap();
                assert!(all.len() >= 3);
            },
        );
        bench_concurrent(
            &mut group,
            &rt,
            "redis-patterns-session",
            tasks,
            (store.clone(), ids.clone()),
            |(store, ids), i| async move {
                let s = store.load(&ids[i as usize % SESSIONS]).await.unwrap();
                assert!(s.is_some());
            },
        );
        group.finish();

        // touch: one EVALSHA vs one single-field HSET (what recording an access costs raw).
        let mut group = concurrent_group(c, "session/touch", tasks);
        bench_concurrent(
            &mut group,
            &rt,
            "raw-hset",
            tasks,
            (raw.clone(), raw_keys.clone()),
            |(mut raw, keys), i| async move {
                let _: () = redis::cmd("HSET")
                    .arg(&keys[i as usize % SESSIONS])
                    .arg("__seen")
                    .arg(i)
                    .query_async(&mut raw)
                    .await
                    .unwrap();
            },
        );
        for (name, store) in [
            ("redis-patterns-session", &store),
            ("redis-session-every-access", &eager),
        ] {
            bench_concurrent(
                &mut group,
                &rt,
                name,
                tasks,
                (store.clone(), ids.clone()),
                |(store, ids), i| async move {
                    assert!(store.touch(&ids[i as usize % SESSIONS]).await.unwrap());
                },
            );
        }
        group.finish();
    }

    // Leave nothing behind on a shared server.
    rt.block_on(async {
        let redis = store.redis().clone();
        let pattern = KeySpace::new(&prefix).unwrap().scan_pattern();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await
                .unwrap();
            if !batch.is_empty() {
                let _: i64 = redis.query(redis::cmd("UNLINK").arg(&batch)).await.unwrap();
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = session
}
criterion_main!(benches);
