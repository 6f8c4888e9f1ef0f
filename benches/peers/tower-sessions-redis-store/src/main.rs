//! The tower-sessions cycle (`create`, `load`, `save` of a fresh record) through
//! redis-patterns-session's `TowerSessionStore` and through tower-sessions-redis-store, alternately
//! in short slices against one server, so a drifting machine load moves both alike.
//!
//! `PORT=<port> ROUNDS=100 TASKS=50 cargo run --release`: prints one JSON line, cycles per second
//! of each and their ratio (ours over theirs).

use std::{collections::HashMap, env, sync::Arc, time::Duration, time::Instant};

use fred::prelude::{ClientLike, Config, Pool};
use redis_core::{KeySpace, Redis};
use redis_session::{SessionStore, TowerSessionStore};
use serde_json::json;
use tower_sessions_core::{SessionStore as _, session::Record};
use tower_sessions_core_014::{SessionStore as _, session::Record as Record014};
use tower_sessions_redis_store::RedisStore;

/// Cycles each task runs per slice.
const SLICE: usize = 40;

fn setting(name: &str, default: usize) -> usize {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The session data of `benches/benches/session.rs`.
fn data() -> HashMap<String, serde_json::Value> {
    let data = json!({"user_name": "alice", "theme": "dark", "cart": [1, 2, 3]});
    data.as_object().unwrap().clone().into_iter().collect()
}

/// One cycle through `store`: a clone of `template` with a new id, created, loaded and saved.
/// A macro: the two stores take the `Record` of two tower-sessions-core versions.
macro_rules! cycle {
    ($store:expr, $template:expr, $record:ident) => {
        move || {
            let (store, template) = ($store.clone(), Arc::clone(&$template));
            async move {
                let mut record = $record {
                    id: Default::default(),
                    ..(*template).clone()
                };
                store.create(&mut record).await.unwrap();
                let loaded = store.load(&record.id).await.unwrap().unwrap();
                store.save(&loaded).await.unwrap();
            }
        }
    };
}

/// Runs `cycle` `SLICE` times on each of `tasks` tasks; the time it took.
async fn slice<F, Fut>(tasks: usize, cycle: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let cycle = cycle.clone();
            tokio::spawn(async move {
                for _ in 0..SLICE {
                    cycle().await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("a cycle panicked");
    }
    start.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let port = setting("PORT", 6379);
    let (rounds, tasks) = (setting("ROUNDS", 100), setting("TASKS", 50));
    let url = format!("redis://127.0.0.1:{port}");

    let redis = Redis::open(&url).await.expect("connect");
    let keys = KeySpace::new(&format!("peer-tower-{}", std::process::id())).unwrap();
    let ours = TowerSessionStore::new(
        SessionStore::builder(redis, &keys)
            .idle_timeout(Duration::from_secs(30 * 60))
            .build()
            .unwrap(),
    );
    // One client, as ours runs on one multiplexed connection.
    let pool = Pool::new(Config::from_url(&url).unwrap(), None, None, None, 1).unwrap();
    pool.init().await.expect("connect");
    let theirs = RedisStore::new(pool);

    // tower-sessions hands a store a record it built: each cycle clones one, with a new id.
    let expiry = time::OffsetDateTime::now_utc() + time::Duration::minutes(30);
    let ours_template = Arc::new(Record {
        id: Default::default(),
        data: data(),
        expiry_date: expiry,
    });
    let theirs_template = Arc::new(Record014 {
        id: Default::default(),
        data: data(),
        expiry_date: expiry,
    });
    let ours_cycle = cycle!(ours, ours_template, Record);
    let theirs_cycle = cycle!(theirs, theirs_template, Record014);

    // Warm up both (connections, script caches, allocator).
    slice(tasks, ours_cycle.clone()).await;
    slice(tasks, theirs_cycle.clone()).await;
    let (mut ours_time, mut theirs_time) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        ours_time += slice(tasks, ours_cycle.clone()).await;
        theirs_time += slice(tasks, theirs_cycle.clone()).await;
    }
    let cycles = (rounds * tasks * SLICE) as f64;
    let (ours_rate, theirs_rate) = (
        cycles / ours_time.as_secs_f64(),
        cycles / theirs_time.as_secs_f64(),
    );
    println!(
        "{{\"tasks\":{tasks},\"cycles_each\":{cycles},\"redis_patterns_session_per_s\":{ours_rate:.0},\"tower_sessions_redis_store_per_s\":{theirs_rate:.0},\"ratio\":{:.2}}}",
        ours_rate / theirs_rate
    );
}
