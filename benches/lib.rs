//! Shared set-up for the criterion benches: a server, a runtime, and a driver that runs one
//! operation from N concurrent tasks.
//!
//! Every bench group measures the crate's operation next to a raw redis-rs baseline doing the same
//! round trips on the same server in the same run, so results read as ratios.
//!
//! Criterion measures the rows one after the other, so on a shared machine the load drifts
//! between them. With `BENCH_INTERLEAVED=<rounds>` the session, lock and cache benches also run
//! each (raw baseline, crate) pair alternately in short slices after their groups (see
//! [`interleaved`]) and print the ratios, which that drift skews less.
#![allow(missing_docs)]

// The workspace README's examples compile as doc tests of this package.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

use std::{future::Future, sync::Arc, time::Duration};

use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use redis_test_support::TestServer;
use tokio::runtime::Runtime;

/// The server a bench talks to: `REDIS_URL` when set (by `cargo xtask bench`), else a private
/// `redis-server` that lives as long as this value.
#[derive(Debug)]
pub struct BenchServer {
    _server: Option<TestServer>,
    pub url: String,
}

impl BenchServer {
    pub fn start() -> Self {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => Self { _server: None, url },
            _ => {
                let server = TestServer::spawn();
                let url = server.url();
                Self {
                    _server: Some(server),
                    url,
                }
            }
        }
    }
}

/// With the `metrics` feature: a Prometheus recorder installed once per process (histograms as
/// buckets, upkeep every second), as a production service would run it. Without it: nothing.
pub fn install_metrics_recorder() {
    #[cfg(feature = "metrics")]
    {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&[
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5,
                ])
                .expect("bucket list")
                .install_recorder()
                .expect("no other recorder");
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    handle.run_upkeep();
                }
            });
        });
    }
}

/// A multi-threaded runtime with as many workers as cores (and the metrics recorder installed
/// when the `metrics` feature is on).
pub fn runtime() -> Runtime {
    install_metrics_recorder();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `op` `iters` times in total, split over `tasks` concurrent tasks, and returns the wall time.
/// Use inside `Bencher::iter_custom` with `Throughput::Elements(1)` to read operations per second.
pub fn run_concurrent<F, Fut>(rt: &Runtime, tasks: usize, iters: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let op = Arc::new(op);
    rt.block_on(async move {
        let per_task = iters.div_ceil(tasks as u64);
        let start = std::time::Instant::now();
        let handles: Vec<_> = (0..tasks as u64)
            .map(|t| {
                let op = op.clone();
                tokio::spawn(async move {
                    let first = t * per_task;
                    let last = ((t + 1) * per_task).min(iters);
                    for i in first..last {
                        op(i).await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("bench task panicked");
        }
        start.elapsed()
    })
}

/// The concurrency levels every bench reports.
pub const CONCURRENCY: [usize; 2] = [1, 50];

/// A criterion group named `<name>/<tasks>-tasks` that reports operations per second.
pub fn concurrent_group<'a>(
    c: &'a mut Criterion,
    name: &str,
    tasks: usize,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(format!("{name}/{tasks}-tasks"));
    group.throughput(Throughput::Elements(1));
    group
}

/// One row of a group: `op` run from `tasks` concurrent tasks (see [`run_concurrent`]). Each call
/// gets its own clone of `state` (a connection, a key, a limiter) and its index.
///
/// ```ignore
/// bench_concurrent(&mut group, &rt, "raw-redis-rs", tasks, (raw.clone(), key.clone()),
///     |(mut raw, key), _| async move {
///         let _: String = redis::cmd("GET").arg(&key).query_async(&mut raw).await.unwrap();
///     });
/// ```
pub fn bench_concurrent<S, F, Fut>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    tasks: usize,
    state: S,
    op: F,
) where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let state = state.clone();
            let op = op.clone();
            run_concurrent(rt, tasks, iters, move |i| op(state.clone(), i))
        })
    });
}

/// The rounds of the interleaved mode: `BENCH_INTERLEAVED=<rounds>` (`SESSION_INTERLEAVED`, the
/// older name, still read when `BENCH_INTERLEAVED` is unset), 0 (off) when neither is set to a
/// number.
pub fn interleaved_rounds() -> u32 {
    let read = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    read("BENCH_INTERLEAVED")
        .or_else(|| read("SESSION_INTERLEAVED"))
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or(0)
}

/// The raw baseline's total time over the crate's, both run `rounds` times alternately, `iters`
/// operations from `tasks` tasks each time (see [`run_concurrent`]): the crate's throughput as a
/// fraction of the raw one (above 1: faster than raw).
///
/// Each pair is `(state, op)` as [`bench_concurrent`] takes it, so a bench builds each row once
/// and hands the same pair to both, and the two measurements cannot drift apart. The slices are
/// short (a few dozen operations per task), so load that comes and goes on a shared machine falls
/// on both sides alike, unlike criterion's rows measured one after the other.
pub fn interleaved<S, F, Fut, T, G, Gut>(
    rt: &Runtime,
    tasks: usize,
    iters: u64,
    rounds: u32,
    (raw_state, raw_op): (S, F),
    (state, op): (T, G),
) -> f64
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    T: Clone + Send + Sync + 'static,
    G: Fn(T, u64) -> Gut + Clone + Send + Sync + 'static,
    Gut: Future<Output = ()> + Send + 'static,
{
    let (mut raw_time, mut time) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let (s, f) = (raw_state.clone(), raw_op.clone());
        raw_time += run_concurrent(rt, tasks, iters, move |i| f(s.clone(), i));
        let (s, f) = (state.clone(), op.clone());
        time += run_concurrent(rt, tasks, iters, move |i| f(s.clone(), i));
    }
    raw_time.as_secs_f64() / time.as_secs_f64()
}

/// The interleaved mode's whole run, when it is on ([`interleaved_rounds`] > 0): for each of
/// [`CONCURRENCY`], `pairs(tasks, iters, rounds)` measures its pairs with [`interleaved`] (slices
/// of 40 operations per task) and names them, and each ratio is printed as
/// `interleaved, <tasks> tasks: <name>: <ratio>`.
pub fn report_interleaved(mut pairs: impl FnMut(usize, u64, u32) -> Vec<(String, f64)>) {
    let rounds = interleaved_rounds();
    if rounds == 0 {
        return;
    }
    for tasks in CONCURRENCY {
        for (what, ratio) in pairs(tasks, 40 * tasks as u64, rounds) {
            eprintln!("interleaved, {tasks} tasks: {what}: {ratio:.2}");
        }
    }
}
