//! redis-patterns-session against what tower-sessions-redis-store sends, as raw redis-rs commands on
//! the same server, at 1 and 50 concurrent tasks:
//!
//! - `session/create`: `create` vs `SET key value NX PX idle` of a same-size value;
//! - `session/load`: `load` (a plain `GET` while no touch is due) vs `GET` of a same-size value;
//!   also the store that records every access (the `access` script each time);
//! - `session/tower-cycle`: the tower-sessions store's `create`, `load` and `save` vs
//!   `SET NX PX`, `GET`, `SET XX PX` of a same-size value, three round trips each; also the least
//!   a tower-sessions store on those commands must add (`least-json-store`: the id as the key,
//!   the record's data encoded for `create` and `save` and decoded into a record on `load`, with
//!   `serde_json`), the floor of any store that keeps tower-sessions' data as JSON.
//!
//! Before the groups it prints the server commands per operation (`INFO commandstats`, script
//! calls and the commands they run both counted). With `BENCH_INTERLEAVED=<rounds>` it also
//! runs each pair alternately in short slices and prints the ratios, which a busy machine skews
//! less than rows measured one after the other.
//!
//! Run: `cargo xtask bench -- session` (or `cargo bench -p redis-patterns-benches --bench session`;
//! `BENCH_INTERLEAVED=20 cargo bench -p redis-patterns-benches --bench session -- --warm-up-time 1 --measurement-time 3`).

use std::{collections::HashMap, sync::Arc, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use redis_core::{KeySpace, Redis};
use redis_patterns_benches::{
    BenchServer, CONCURRENCY, bench_concurrent, concurrent_group, interleaved, report_interleaved,
    runtime,
};
use redis_session::{SessionId, SessionStore, TowerSessionStore};
use redis_test_support::command_calls;
use serde::Serialize;
use time::OffsetDateTime;
use tower_sessions_core::{
    SessionStore as _,
    session::{Id, Record},
};

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
type Conn = redis::aio::MultiplexedConnection;
/// The stores' idle timeout, and the raw baselines' expiry.
const IDLE_MS: u64 = 30 * 60 * 1000;

fn tower_record() -> Record {
    let data = serde_json::to_value(&DATA).unwrap();
    Record {
        id: Id::default(),
        data: data
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>(),
        expiry_date: OffsetDateTime::now_utc() + time::Duration::minutes(30),
    }
}

/// `SET key value <NX|XX> PX idle`, as tower-sessions-redis-store sends it: whether it was set.
async fn set_px(raw: &mut Conn, key: &str, value: &[u8], condition: &str) -> bool {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg(condition)
        .arg("PX")
        .arg(IDLE_MS)
        .query_async(raw)
        .await
        .unwrap()
}

/// `GET key` of a value that is there.
async fn get(raw: &mut Conn, key: &str) -> Vec<u8> {
    let value: Vec<u8> = redis::cmd("GET").arg(key).query_async(raw).await.unwrap();
    assert!(!value.is_empty());
    value
}

/// The bytes a stored value holds.
async fn value_size(redis: &Redis, key: &redis_core::Key) -> usize {
    redis.query(redis::cmd("STRLEN").arg(key)).await.unwrap()
}

/// Runs `op` `n` times and prints the server commands it sent per run.
async fn commands_per_op<F, Fut>(redis: &Redis, what: &str, n: u64, mut op: F)
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let before = command_calls(redis).await;
    for i in 0..n {
        op(i).await;
    }
    let after = command_calls(redis).await;
    let mut per_op: Vec<(String, f64)> = after
        .into_iter()
        .filter(|(name, _)| name != "info")
        .filter_map(|(name, calls)| {
            let delta = calls - before.get(&name).copied().unwrap_or(0);
            (delta > 0).then(|| (name, delta as f64 / n as f64))
        })
        .collect();
    per_op.sort_by(|a, b| a.0.cmp(&b.0));
    let total: f64 = per_op.iter().map(|(_, c)| c).sum();
    let list: Vec<String> = per_op.iter().map(|(n, c)| format!("{n} {c}")).collect();
    eprintln!("commands per op: {what}: {total} ({})", list.join(", "));
}

fn session(c: &mut Criterion) {
    let server = BenchServer::start();
    let rt = runtime();
    let prefix = format!("bench-session-{}", std::process::id());
    let (store, eager, tower, redis, raw, ids, value, tower_value) = rt.block_on(async {
        let redis = Redis::open(&server.url).await.expect("connect");
        let keys = KeySpace::new(&prefix).unwrap();
        let store = SessionStore::builder(redis.clone(), &keys)
            .idle_timeout(Duration::from_millis(IDLE_MS))
            .build()
            .unwrap();
        // Same store, but every access is recorded (no touch throttling): the script each time.
        let eager = SessionStore::builder(redis.clone(), &keys)
            .idle_timeout(Duration::from_millis(IDLE_MS))
            .touch_interval(Duration::ZERO)
            .build()
            .unwrap();
        let tower = TowerSessionStore::new(store.clone());
        let raw = redis::Client::open(server.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut ids = Vec::with_capacity(SESSIONS);
        for _ in 0..SESSIONS {
            ids.push(store.create(&DATA).await.unwrap());
        }
        // The raw values are as long as what the stores keep per session.
        let size = value_size(&redis, &store.key_of(&ids[0]).unwrap().unwrap()).await;
        let mut record = tower_record();
        tower.create(&mut record).await.unwrap();
        let tower_size = value_size(&redis, &tower.key_of(&record.id).unwrap()).await;
        (
            store,
            eager,
            tower,
            redis,
            raw,
            ids,
            vec![b'x'; size],
            vec![b'x'; tower_size],
        )
    });
    let ids: Arc<Vec<SessionId>> = Arc::new(ids);
    let raw_keys: Arc<Vec<String>> =
        Arc::new((0..SESSIONS).map(|i| format!("{prefix}:raw:{i}")).collect());
    let value = Arc::new(value);
    let tower_value = Arc::new(tower_value);
    rt.block_on(async {
        let mut raw = raw.clone();
        for key in raw_keys.iter() {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg(value.as_slice())
                .arg("PX")
                .arg(IDLE_MS)
                .query_async(&mut raw)
                .await
                .unwrap();
        }
        const N: u64 = 200;
        commands_per_op(&redis, "session create", N, |_| async {
            store.create(&DATA).await.unwrap();
        })
        .await;
        commands_per_op(&redis, "session load", N, |i| {
            let (store, ids) = (&store, &ids);
            async move {
                assert!(store.load(&ids[i as usize]).await.unwrap().is_some());
            }
        })
        .await;
        commands_per_op(&redis, "session load, every access recorded", N, |i| {
            let (eager, ids) = (&eager, &ids);
            async move {
                assert!(eager.load(&ids[i as usize]).await.unwrap().is_some());
            }
        })
        .await;
        commands_per_op(&redis, "tower create + load + save", N, |_| async {
            let mut record = tower_record();
            tower.create(&mut record).await.unwrap();
            assert!(tower.load(&record.id).await.unwrap().is_some());
            tower.save(&record).await.unwrap();
        })
        .await;
    });

    // Each operation once, as `bench_concurrent` and `interleaved` take it: (state, op).
    let raw_create = (
        (raw.clone(), prefix.clone(), value),
        |(mut raw, prefix, value): (Conn, String, Arc<Vec<u8>>), _| async move {
            let key = format!("{prefix}:raw-new:{}", redis_core::random_token());
            let set: bool = redis::cmd("SET")
                .arg(key)
                .arg(value.as_slice())
                .arg("NX")
                .arg("PX")
                .arg(IDLE_MS)
                .query_async(&mut raw)
                .await
                .unwrap();
            assert!(set);
        },
    );
    let create = (store.clone(), |store: SessionStore, _| async move {
        let id = store.create(&DATA).await.unwrap();
        std::hint::black_box(id);
    });
    let raw_get = (
        (raw.clone(), raw_keys),
        |(mut raw, keys): (Conn, Arc<Vec<String>>), i: u64| async move {
            let value: Vec<u8> = redis::cmd("GET")
                .arg(&keys[i as usize % SESSIONS])
                .query_async(&mut raw)
                .await
                .unwrap();
            assert!(!value.is_empty());
        },
    );
    let load = |store: &SessionStore| {
        (
            (store.clone(), ids.clone()),
            |(store, ids): (SessionStore, Arc<Vec<SessionId>>), i: u64| async move {
                let s = store.load(&ids[i as usize % SESSIONS]).await.unwrap();
                assert!(s.is_some());
            },
        )
    };
    let raw_cycle = (
        (raw.clone(), prefix.clone(), tower_value),
        |(mut raw, prefix, value): (Conn, String, Arc<Vec<u8>>), _| async move {
            let key = format!("{prefix}:raw-tower:{}", redis_core::random_token());
            assert!(set_px(&mut raw, &key, &value, "NX").await);
            let loaded = get(&mut raw, &key).await;
            assert!(set_px(&mut raw, &key, &loaded, "XX").await);
        },
    );
    // tower-sessions hands the store a record it built: the same one each time, with a new id.
    let cycle = (
        (tower, Arc::new(tower_record())),
        |(tower, template): (TowerSessionStore, Arc<Record>), _| async move {
            let mut record = Record {
                id: Id::default(),
                ..(*template).clone()
            };
            tower.create(&mut record).await.unwrap();
            let loaded = tower.load(&record.id).await.unwrap().unwrap();
            tower.save(&loaded).await.unwrap();
        },
    );

    // The least any tower-sessions store on these commands does on top of them, with none of
    // this store's guarantees: the id itself as the key, the record's data encoded for create
    // and save and decoded into a record on load, as JSON. The application's record is built
    // as in the row above.
    let json_cycle = (
        (raw, prefix.clone(), Arc::new(tower_record())),
        |(mut raw, prefix, template): (Conn, String, Arc<Record>), _| async move {
            let record = Record {
                id: Id::default(),
                ..(*template).clone()
            };
            let key = format!("{prefix}:json-tower:{}", record.id);
            let value = serde_json::to_vec(&record.data).unwrap();
            assert!(set_px(&mut raw, &key, &value, "NX").await);
            let loaded = Record {
                id: record.id,
                data: serde_json::from_slice(&get(&mut raw, &key).await).unwrap(),
                expiry_date: record.expiry_date,
            };
            let value = serde_json::to_vec(&loaded.data).unwrap();
            assert!(set_px(&mut raw, &key, &value, "XX").await);
        },
    );

    for tasks in CONCURRENCY {
        let mut group = concurrent_group(c, "session/create", tasks);
        let (state, op) = raw_create.clone();
        bench_concurrent(&mut group, &rt, "raw-set-nx-px", tasks, state, op);
        let (state, op) = create.clone();
        bench_concurrent(&mut group, &rt, "redis-patterns-session", tasks, state, op);
        group.finish();

        let mut group = concurrent_group(c, "session/load", tasks);
        let (state, op) = raw_get.clone();
        bench_concurrent(&mut group, &rt, "raw-get", tasks, state, op);
        let (state, op) = load(&store);
        bench_concurrent(&mut group, &rt, "redis-patterns-session", tasks, state, op);
        let (state, op) = load(&eager);
        bench_concurrent(
            &mut group,
            &rt,
            "redis-patterns-session-every-access",
            tasks,
            state,
            op,
        );
        group.finish();

        let mut group = concurrent_group(c, "session/tower-cycle", tasks);
        let (state, op) = raw_cycle.clone();
        bench_concurrent(&mut group, &rt, "raw-set-nx-get-set-xx", tasks, state, op);
        let (state, op) = json_cycle.clone();
        bench_concurrent(&mut group, &rt, "least-json-store", tasks, state, op);
        let (state, op) = cycle.clone();
        bench_concurrent(&mut group, &rt, "redis-patterns-session", tasks, state, op);
        group.finish();
    }

    // Criterion measures one row after the other; on a busy machine the load drifts between
    // them. With BENCH_INTERLEAVED=<rounds> the same pairs also run alternately, in short
    // slices, and the ratio of their total times is printed.
    report_interleaved(|tasks, iters, rounds| {
        vec![
            (
                "create / SET NX PX".into(),
                interleaved(
                    &rt,
                    tasks,
                    iters,
                    rounds,
                    raw_create.clone(),
                    create.clone(),
                ),
            ),
            (
                "load / GET".into(),
                interleaved(&rt, tasks, iters, rounds, raw_get.clone(), load(&store)),
            ),
            (
                "tower cycle / SET NX + GET + SET XX".into(),
                interleaved(
                    &rt,
                    tasks,
                    iters / 3,
                    rounds,
                    raw_cycle.clone(),
                    cycle.clone(),
                ),
            ),
            (
                "tower cycle, least JSON store / SET NX + GET + SET XX".into(),
                interleaved(
                    &rt,
                    tasks,
                    iters / 3,
                    rounds,
                    raw_cycle.clone(),
                    json_cycle.clone(),
                ),
            ),
            (
                "tower cycle / least JSON store".into(),
                interleaved(
                    &rt,
                    tasks,
                    iters / 3,
                    rounds,
                    json_cycle.clone(),
                    cycle.clone(),
                ),
            ),
        ]
    });

    // Leave nothing behind on a shared server.
    rt.block_on(async {
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
