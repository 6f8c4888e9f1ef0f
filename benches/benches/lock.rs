//! redis-patterns-lock:
//!
//! - `lock/acquire-release/{1,50}-tasks`: uncontended acquire + release pairs against raw
//!   redis-rs sending what rslock sends (`SET NX PX`, then an `EVALSHA` of a compare-and-delete
//!   script), on different resources; the lock in each [`Fencing`] mode, and raw redis-rs
//!   sending the fenced acquire script (the floor of a fenced lock).
//! - `lock/contended/10-tasks`: 10 tasks taking one resource in turn (acquire, release, again),
//!   acquisitions per second in total; raw redis-rs runs rslock's retry loop (`SET NX PX`; on
//!   failure the unlock script and a random pause of up to 200 ms). After the group, the
//!   hand-over latency (a release's reply to the next grant's reply) is printed per row.
//! - `lock/replica-ack/1-tasks`: the lock with and without `replica_ack` (a `WAIT 1` after the
//!   grant) on a master with one replica: what the safer grant costs.
//! - `lock/redlock-3/1-task`: Redlock(3) acquire + release latency against a raw parallel
//!   `SET NX PX` + compare-and-delete on three servers.
//!
//! With `BENCH_INTERLEAVED=<rounds>` it also runs, after the groups, each uncontended
//! acquire + release row (the lock in each [`Fencing`] mode, the raw fenced script) alternately
//! with the raw rslock baseline in short slices, at 1 and 50 tasks, and prints the ratios
//! (raw time over the row's: the row's throughput as a fraction of raw), which a busy machine
//! skews less than rows measured one after the other.
//!
//! Run: `cargo xtask bench -- lock` (or `cargo bench -p redis-patterns-benches --bench lock`;
//! `BENCH_INTERLEAVED=20 cargo bench -p redis-patterns-benches --bench lock -- --warm-up-time 1 --measurement-time 3 acquire-release`).

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis::aio::MultiplexedConnection;
use redis_core::{Key, KeySpace, Redis, Script, random_token};
use redis_lock::{Fencing, Lock, Redlock};
use redis_patterns_benches::{
    BenchServer, CONCURRENCY, bench_concurrent, concurrent_group, interleaved, report_interleaved,
    run_concurrent, runtime,
};
use redis_test_support::{TestServer, command_calls_and_cpu};
use tokio::runtime::Runtime;

/// The lock's own release script (compare-and-delete), for the raw baseline.
static RELEASE: Script = Script::new(
    "lock_release",
    include_str!("../../crates/redis-patterns-lock/src/scripts/release.lua"),
);

/// The lock's fenced acquire script (counter mode), for the raw floor of a fenced lock.
static ACQUIRE_FENCED: Script = Script::new(
    "lock_acquire_fenced",
    include_str!("../../crates/redis-patterns-lock/src/scripts/lock_acquire.lua"),
)
.with_preludes(&[
    redis_core::script::SERVER_CLOCK,
    include_str!("../../crates/redis-patterns-lock/src/scripts/fence.lua"),
]);

/// One resource per running task (tasks are fresh per sample), so acquisitions never contend.
fn resource() -> String {
    format!("r{}", tokio::task::id())
}

/// One uncontended acquire and release of a fresh resource.
async fn take_and_release(lock: Lock) {
    let guard = lock
        .try_acquire(&resource())
        .await
        .unwrap()
        .expect("uncontended");
    guard.release().await.unwrap();
}

/// rslock's acquire attempt: `SET key token NX PX 10000`; whether it took the lock.
async fn raw_try_set(raw: &mut MultiplexedConnection, key: &Key, token: &str) -> bool {
    let ok: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(10_000)
        .query_async(raw)
        .await
        .unwrap();
    ok.is_some()
}

/// The raw baseline's acquire, which must succeed.
async fn raw_set(mut raw: MultiplexedConnection, key: Key, token: String) {
    assert!(raw_try_set(&mut raw, &key, &token).await);
}

/// The raw baseline's uncontended acquire and release of a fresh resource: what rslock sends.
async fn raw_acquire_release(
    raw: MultiplexedConnection,
    raw_keys: KeySpace,
    release: redis::Script,
) {
    let key = raw_keys.key(&resource()).unwrap();
    let token = random_token();
    raw_set(raw.clone(), key.clone(), token.clone()).await;
    raw_release(raw, release, key, token).await;
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

/// A boxed operation for [`server_cost`].
type Op = Box<dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What one operation costs the server, from `ops` operations run by `tasks` tasks through `op`
/// (`shared`: the tasks take turns on one resource, see [`run_shared`]): commands by name and
/// CPU time per operation. Server CPU does not depend on how busy the machine is, unlike
/// throughput. Printed once per row.
fn server_cost(
    rt: &Runtime,
    redis: &Redis,
    label: &str,
    tasks: usize,
    ops: u64,
    op: Op,
    shared: bool,
) {
    let (calls0, cpu0) = rt.block_on(command_calls_and_cpu(redis));
    if shared {
        let op = Arc::new(op);
        run_shared(rt, tasks, ops, move |task| op(task as u64));
    } else {
        run_concurrent(rt, tasks, ops, op);
    }
    let (calls1, cpu1) = rt.block_on(command_calls_and_cpu(redis));
    let mut per_op = Vec::new();
    let mut names: Vec<_> = calls1.keys().collect();
    names.sort();
    for name in names {
        let after = calls1[name];
        let before = calls0.get(name).copied().unwrap_or(0);
        // The first INFO counts once.
        let delta = after - before - u64::from(name == "info");
        if delta > 0 {
            per_op.push(format!("{name} {:.2}", delta as f64 / ops as f64));
        }
    }
    let cpu_us = (cpu1 - cpu0) * 1e6 / ops as f64;
    eprintln!(
        "server cost per op, {label}: {cpu_us:.2} us CPU; commands: {}",
        per_op.join(", ")
    );
}

/// Times `iters` calls of `op` made by `tasks` tasks that each start their next call as soon as
/// their previous one is done: the time until the `iters`-th call finished. The calls still
/// running then (waiters) are dropped untimed, so a task that sleeps between retries adds no tail.
fn run_shared<F, Fut>(rt: &Runtime, tasks: usize, iters: u64, op: F) -> Duration
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let op = Arc::new(op);
    rt.block_on(async move {
        let done = Arc::new(AtomicU64::new(0));
        let (finished, all_done) = tokio::sync::oneshot::channel();
        let finished = Arc::new(Mutex::new(Some(finished)));
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let (op, done, finished) = (op.clone(), done.clone(), finished.clone());
                tokio::spawn(async move {
                    loop {
                        op(task).await;
                        if done.fetch_add(1, Ordering::Relaxed) + 1 == iters {
                            let elapsed = start.elapsed();
                            if let Some(tx) = finished.lock().unwrap().take() {
                                let _ = tx.send(elapsed);
                            }
                        }
                    }
                })
            })
            .collect();
        let elapsed = all_done.await.expect("a task reports the last call");
        for h in &handles {
            h.abort();
        }
        for h in handles {
            let _ = h.await;
        }
        elapsed
    })
}

/// Hand-overs of one contended resource: when the last release's reply came and from which task,
/// and every gap from such a reply to the next grant's reply in another task.
#[derive(Default)]
struct HandOvers {
    last: Mutex<Option<(Instant, usize)>>,
    gaps: Mutex<Vec<Duration>>,
}

impl HandOvers {
    fn granted(&self, task: usize) {
        let now = Instant::now();
        if let Some((released, by)) = *self.last.lock().unwrap()
            && by != task
        {
            self.gaps.lock().unwrap().push(now - released);
        }
    }

    fn released(&self, task: usize) {
        *self.last.lock().unwrap() = Some((Instant::now(), task));
    }

    fn reset(&self) {
        *self.last.lock().unwrap() = None;
    }

    fn report(&self, row: &str) {
        let mut gaps = std::mem::take(&mut *self.gaps.lock().unwrap());
        gaps.sort_unstable();
        if gaps.is_empty() {
            return;
        }
        let at = |q: f64| gaps[((gaps.len() - 1) as f64 * q) as usize];
        eprintln!(
            "lock/contended/{TASKS}-tasks {row}: hand-over to another task after a release, \
             p50 {:?}, p99 {:?}, max {:?} ({} hand-overs)",
            at(0.5),
            at(0.99),
            at(1.0),
            gaps.len()
        );
    }
}

const TASKS: usize = 10;

/// One turn of rslock's `acquire` loop on `key` (`SET NX PX`; on failure the unlock script and a
/// random pause below its default retry delay of 200 ms, then again), then its release.
async fn rslock_turn(
    mut raw: MultiplexedConnection,
    key: Key,
    release: redis::Script,
    hand_overs: Option<Arc<HandOvers>>,
    task: usize,
) {
    let token = random_token();
    loop {
        if raw_try_set(&mut raw, &key, &token).await {
            break;
        }
        let _: i64 = release
            .key(&key)
            .arg(&token)
            .invoke_async(&mut raw)
            .await
            .unwrap();
        let pause = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
                % 200
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    if let Some(h) = &hand_overs {
        h.granted(task);
    }
    raw_release(raw, release, key, token).await;
    if let Some(h) = &hand_overs {
        h.released(task);
    }
}

/// One turn of the lock on `resource`: a waiting acquire, then the release.
async fn lock_turn(
    lock: Lock,
    resource: &'static str,
    hand_overs: Option<Arc<HandOvers>>,
    task: usize,
) {
    let guard = lock.acquire(resource).await.unwrap();
    if let Some(h) = &hand_overs {
        h.granted(task);
    }
    guard.release().await.unwrap();
    if let Some(h) = &hand_overs {
        h.released(task);
    }
}

/// 10 tasks on one resource: acquisitions per second, and hand-over latency printed per row.
fn contended(
    c: &mut Criterion,
    rt: &Runtime,
    redis: &Redis,
    raw: &MultiplexedConnection,
    raw_keys: &KeySpace,
    release: &redis::Script,
    lock: &Lock,
) {
    let mut group = c.benchmark_group(format!("lock/contended/{TASKS}-tasks"));
    group.throughput(Throughput::Elements(1));
    let key = raw_keys.key("contended").unwrap();
    let hand_overs = Arc::new(HandOvers::default());
    // Server cost first, on a fresh key (a grant left by a dropped task is cleared by its TTL).
    let cost_key = raw_keys.key("contended-cost").unwrap();
    let (r, k, rel) = (raw.clone(), cost_key, release.clone());
    server_cost(
        rt,
        redis,
        "contended, raw-redis-rs-rslock-loop",
        TASKS,
        2_000,
        Box::new(move |_| Box::pin(rslock_turn(r.clone(), k.clone(), rel.clone(), None, 0))),
        true,
    );
    let l = lock.clone();
    server_cost(
        rt,
        redis,
        "contended, redis-patterns-lock",
        TASKS,
        2_000,
        Box::new(move |_| Box::pin(lock_turn(l.clone(), "contended-cost", None, 0))),
        true,
    );
    group.bench_function("raw-redis-rs-rslock-loop", |b| {
        b.iter_custom(|iters| {
            let (raw, key, release, hand_overs) = (
                raw.clone(),
                key.clone(),
                release.clone(),
                hand_overs.clone(),
            );
            hand_overs.reset();
            // A task dropped between its grant and its release leaves the key: clear it.
            let mut cleanup = raw.clone();
            let _: i64 = rt
                .block_on(redis::cmd("DEL").arg(&key).query_async(&mut cleanup))
                .unwrap();
            run_shared(rt, TASKS, iters, move |task| {
                rslock_turn(
                    raw.clone(),
                    key.clone(),
                    release.clone(),
                    Some(hand_overs.clone()),
                    task,
                )
            })
        })
    });
    hand_overs.report("raw-redis-rs-rslock-loop");
    group.bench_function("redis-patterns-lock", |b| {
        b.iter_custom(|iters| {
            let (lock, hand_overs) = (lock.clone(), hand_overs.clone());
            hand_overs.reset();
            run_shared(rt, TASKS, iters, move |task| {
                lock_turn(lock.clone(), "contended", Some(hand_overs.clone()), task)
            })
        })
    });
    hand_overs.report("redis-patterns-lock");
    group.finish();
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
    let build = |fencing: Fencing| {
        Lock::builder(redis.clone(), &keys)
            .ttl(Duration::from_secs(10))
            .fencing(fencing)
            .build()
            .unwrap()
    };
    let locks = [
        // The default: an expiring counter (a day) floored by the server clock.
        ("redis-patterns-lock", build(Fencing::default())),
        ("redis-patterns-lock/counter", build(Fencing::Counter)),
        ("redis-patterns-lock/unfenced", build(Fencing::Off)),
    ];
    let release = RELEASE.inner().clone();
    let fenced = ACQUIRE_FENCED.inner().clone();

    // What one uncontended acquire + release costs the server, at 50 tasks.
    let (r, k, rel) = (raw.clone(), raw_keys.clone(), release.clone());
    server_cost(
        &rt,
        &redis,
        "acquire-release, raw-redis-rs",
        50,
        20_000,
        Box::new(move |_| Box::pin(raw_acquire_release(r.clone(), k.clone(), rel.clone()))),
        false,
    );
    for (name, lock) in &locks {
        let lock = lock.clone();
        server_cost(
            &rt,
            &redis,
            &format!("acquire-release, {name}"),
            50,
            20_000,
            Box::new(move |_| Box::pin(take_and_release(lock.clone()))),
            false,
        );
    }

    // Each row once, as `bench_concurrent` and `interleaved` take it: (state, op).
    let raw_row = (
        (raw.clone(), raw_keys.clone(), release.clone()),
        |(raw, raw_keys, release): (MultiplexedConnection, KeySpace, redis::Script), _: u64| {
            raw_acquire_release(raw, raw_keys, release)
        },
    );
    let fenced_row = (
        (raw.clone(), raw_keys.clone(), release.clone(), fenced),
        |(mut raw, raw_keys, release, fenced): (
            MultiplexedConnection,
            KeySpace,
            redis::Script,
            redis::Script,
        ),
         _: u64| async move {
            let key = raw_keys.key(&resource()).unwrap();
            let token = random_token();
            let (taken, _fence): (i64, i64) = fenced
                .key(&key)
                .key(key.companion("fence"))
                .key(key.companion("waiters"))
                .arg(&token)
                .arg(10_000)
                .arg(0)
                .arg(0)
                .invoke_async(&mut raw)
                .await
                .unwrap();
            assert_eq!(taken, 1);
            raw_release(raw, release, key, token).await;
        },
    );
    let lock_row = |lock: &Lock| (lock.clone(), |lock: Lock, _: u64| take_and_release(lock));

    for tasks in CONCURRENCY {
        let mut group = concurrent_group(c, "lock/acquire-release", tasks);
        let (state, op) = raw_row.clone();
        bench_concurrent(&mut group, &rt, "raw-redis-rs", tasks, state, op);
        let (state, op) = fenced_row.clone();
        bench_concurrent(
            &mut group,
            &rt,
            "raw-redis-rs-fenced-script",
            tasks,
            state,
            op,
        );
        for (name, lock) in &locks {
            let (state, op) = lock_row(lock);
            bench_concurrent(&mut group, &rt, name, tasks, state, op);
        }
        group.finish();
    }

    contended(c, &rt, &redis, &raw, &raw_keys, &release, &locks[0].1);

    // The safer grant: the same lock with and without waiting for a replica's acknowledgement,
    // on a private master with one replica.
    let master = TestServer::spawn();
    let replica = TestServer::spawn_replica_of(&master);
    let replicated = rt.block_on(Redis::open(&master.url())).unwrap();
    let with_master = |ack: Option<Duration>| {
        let builder = Lock::builder(replicated.clone(), &keys).ttl(Duration::from_secs(10));
        match ack {
            Some(timeout) => builder.replica_ack(timeout),
            None => builder,
        }
        .build()
        .unwrap()
    };
    let mut group = concurrent_group(c, "lock/replica-ack", 1);
    for (name, lock) in [
        ("redis-patterns-lock", with_master(None)),
        (
            "redis-patterns-lock/replica-ack",
            with_master(Some(Duration::from_secs(1))),
        ),
    ] {
        bench_concurrent(&mut group, &rt, name, 1, lock, |lock, _| {
            take_and_release(lock)
        });
    }
    group.finish();
    drop((replica, master));

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

    // Criterion measures one row after the other; on a busy machine the load drifts between
    // them. With BENCH_INTERLEAVED=<rounds> each uncontended acquire + release row also runs
    // alternately with the raw rslock baseline, in short slices, and the ratio of their total
    // times is printed.
    let versus = "/ raw-redis-rs (SET NX PX + EVALSHA)";
    report_interleaved(|tasks, iters, rounds| {
        let mut pairs = vec![(
            format!("acquire-release raw-redis-rs-fenced-script {versus}"),
            interleaved(
                &rt,
                tasks,
                iters,
                rounds,
                raw_row.clone(),
                fenced_row.clone(),
            ),
        )];
        for (name, lock) in &locks {
            let ratio = interleaved(&rt, tasks, iters, rounds, raw_row.clone(), lock_row(lock));
            pairs.push((format!("acquire-release {name} {versus}"), ratio));
        }
        pairs
    });

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
