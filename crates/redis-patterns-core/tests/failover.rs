//! The connection layer through a Sentinel failover, a Cluster failover and a live slot
//! migration, under concurrent load of commands, scripts and pipelines (plain and `MULTI`).
//!
//! What holds by design and is asserted: no caller sees a redirect (`MOVED`, `ASK`), `TRYAGAIN`
//! or `CROSSSLOT`; every error is typed and retryable; no call takes longer than
//! [`CALL_BOUND`]; load succeeds again once the new owner answers. The error window (first to
//! last failed call, from the kill) is measured and printed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use redis::aio::ConnectionLike as _;
use redis_core::{Redis, Script};
use redis_test_support::{MigrateOptions, TestCluster, TestSentinel, wait_until};

/// No call may take longer, failover or not.
const CALL_BOUND: Duration = Duration::from_secs(5);
/// Load tasks per test.
const TASKS: usize = 8;
/// A short node time-out so a killed master's replica takes over within seconds.
const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

static INCR_AND_COPY: Script = Script::new(
    "incr_and_copy",
    "local v = redis.call('INCR', KEYS[1])
     redis.call('EXPIRE', KEYS[1], 300)
     redis.call('SET', KEYS[2], v, 'EX', 300)
     return v",
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Command,
    Script,
    Transaction,
    Pipeline,
}

const OPS: [Op; 4] = [Op::Command, Op::Script, Op::Transaction, Op::Pipeline];

#[derive(Debug)]
struct Failure {
    text: String,
    retryable: bool,
    redirect: bool,
    hang: bool,
}

impl Failure {
    /// A redirect, `TRYAGAIN` or `CROSSSLOT` shown to the caller (alone or inside `EXECABORT`).
    fn is_routing(&self) -> bool {
        self.redirect
            || [
                "MOVED",
                "ASK ",
                "TRYAGAIN",
                "CROSSSLOT",
                "different cluster slots",
            ]
            .iter()
            .any(|marker| self.text.contains(marker))
    }
}

#[derive(Debug)]
struct Outcome {
    /// When the call started, since the load started.
    at: Duration,
    took: Duration,
    op: Op,
    failure: Option<Failure>,
}

/// Commands, scripts, transactions and pipelines on keys of one hash tag, from `TASKS` tasks,
/// until `stop`.
struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

impl Load {
    fn start(redis: &Redis, tag: &str) -> Self {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let tasks = (0..TASKS)
            .map(|task| {
                let (redis, stop, ok) = (redis.clone(), stop.clone(), ok.clone());
                let key = |what: &str| format!("{{{tag}}}:{what}:{task}");
                let (counter, copy, piped) = (key("counter"), key("copy"), key("piped"));
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut n = task;
                    while !stop.load(Ordering::Relaxed) {
                        let op = OPS[n % OPS.len()];
                        n += 1;
                        let at = started.elapsed();
                        let call = async {
                            match op {
                                Op::Command => redis
                                    .query::<i64>(redis::cmd("INCR").arg(&counter))
                                    .await
                                    .map(drop),
                                Op::Script => INCR_AND_COPY
                                    .call()
                                    .key(&counter)
                                    .key(&copy)
                                    .invoke::<i64>(&redis)
                                    .await
                                    .map(drop),
                                Op::Transaction => redis
                                    .query_pipeline::<(i64, i64)>(
                                        redis::pipe()
                                            .atomic()
                                            .cmd("INCR")
                                            .arg(&piped)
                                            .cmd("EXPIRE")
                                            .arg(&piped)
                                            .arg(300),
                                    )
                                    .await
                                    .map(drop),
                                Op::Pipeline => redis
                                    .query_pipeline::<(i64, i64)>(
                                        redis::pipe()
                                            .cmd("INCR")
                                            .arg(&piped)
                                            .cmd("TTL")
                                            .arg(&piped),
                                    )
                                    .await
                                    .map(drop),
                            }
                        };
                        let result = tokio::time::timeout(CALL_BOUND, call).await;
                        let took = started.elapsed() - at;
                        let failure = match result {
                            Ok(Ok(())) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                None
                            }
                            Ok(Err(e)) => Some(Failure {
                                text: e.to_string(),
                                retryable: e.is_retryable(),
                                redirect: e.is_redirect(),
                                hang: false,
                            }),
                            Err(_) => Some(Failure {
                                text: "no reply within the bound".into(),
                                retryable: false,
                                redirect: false,
                                hang: true,
                            }),
                        };
                        let failed = failure.is_some();
                        outcomes.push(Outcome {
                            at,
                            took,
                            op,
                            failure,
                        });
                        // Failing calls return fast; keep the loop from spinning on them.
                        tokio::time::sleep(Duration::from_millis(if failed { 5 } else { 1 })).await;
                    }
                    outcomes
                })
            })
            .collect();
        Self {
            started,
            stop,
            ok,
            tasks,
        }
    }

    /// Waits until `n` more calls succeeded.
    async fn succeeds(&self, n: usize, what: &str) {
        let target = self.ok.load(Ordering::Relaxed) + n;
        wait_until(what, Duration::from_secs(20), || async {
            self.ok.load(Ordering::Relaxed) >= target
        })
        .await;
    }

    async fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut outcomes = Vec::new();
        for task in self.tasks {
            outcomes.extend(task.await.expect("load task panicked"));
        }
        Report {
            started: self.started,
            outcomes,
        }
    }
}

struct Report {
    started: Instant,
    outcomes: Vec<Outcome>,
}

impl Report {
    fn since(&self, event: Instant) -> Duration {
        event.saturating_duration_since(self.started)
    }

    /// Checks what holds through any switch, and that every kind of call succeeds again after
    /// `settled`; prints the error window from `event`.
    fn check(&self, what: &str, event: Instant, settled: Instant) {
        let failures: Vec<&Outcome> = self
            .outcomes
            .iter()
            .filter(|o| o.failure.is_some())
            .collect();
        let slowest = self
            .outcomes
            .iter()
            .map(|o| o.took)
            .max()
            .unwrap_or_default();
        let event_at = self.since(event);
        let window = match (failures.first(), failures.last()) {
            (Some(_), Some(_)) => {
                let first = failures.iter().map(|o| o.at).min().unwrap_or_default();
                let last = failures
                    .iter()
                    .map(|o| o.at + o.took)
                    .max()
                    .unwrap_or_default();
                format!(
                    "errors from {:?} to {:?} after the event (window {:?})",
                    first.saturating_sub(event_at),
                    last.saturating_sub(event_at),
                    last.saturating_sub(first)
                )
            }
            _ => "no errors".to_owned(),
        };
        eprintln!(
            "{what}: {} calls, {} failed; {window}; slowest call {slowest:?}",
            self.outcomes.len(),
            failures.len(),
        );
        let mut seen = std::collections::BTreeSet::new();
        for o in &failures {
            let f = o.failure.as_ref().expect("filtered");
            if seen.insert(f.text.clone()) {
                eprintln!("  {:?}: {}", o.op, f.text);
            }
        }
        for o in &failures {
            let f = o.failure.as_ref().expect("filtered");
            assert!(!f.hang, "{what}: a {:?} call hung: {f:?}", o.op);
            assert!(
                !f.is_routing(),
                "{what}: a {:?} call saw a routing error: {f:?}",
                o.op
            );
            assert!(
                f.retryable,
                "{what}: a {:?} call failed with a non-retryable error: {f:?}",
                o.op
            );
        }
        assert!(slowest < CALL_BOUND, "{what}: a call took {slowest:?}");
        let settled_at = self.since(settled);
        for op in OPS {
            assert!(
                self.outcomes
                    .iter()
                    .any(|o| o.op == op && o.at >= settled_at && o.failure.is_none()),
                "{what}: no {op:?} call succeeded after the switch"
            );
        }
    }
}

/// `CONFIG GET port` over `conn`: the server a connection talks to.
async fn port_of(conn: &mut impl redis::aio::ConnectionLike) -> u16 {
    let (_, port): (String, u16) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query_async(conn)
        .await
        .expect("CONFIG GET port");
    port
}

/// Flushes every live node's script cache, so scripts take the `NOSCRIPT` path during the switch.
fn flush_scripts(cluster: &mut TestCluster) {
    for node in cluster.nodes() {
        if node.is_running() {
            let _: redis::RedisResult<()> = node.cmd(redis::cmd("SCRIPT").arg("FLUSH"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_slot_migration_shows_callers_no_redirect() {
    let mut cluster = TestCluster::spawn_with_node_timeout(3, 0, NODE_TIMEOUT);
    let redis = cluster.redis().await;
    let tag = "fo-migrate";
    // Keys to move besides the load's own, so the slot stays split for a while.
    for i in 0..40 {
        let _: () = redis
            .query(
                redis::cmd("SET")
                    .arg(format!("{{{tag}}}:fill:{i}"))
                    .arg(i)
                    .arg("EX")
                    .arg(300),
            )
            .await
            .unwrap();
    }
    let load = Load::start(&redis, tag);
    load.succeeds(200, "load before the migration").await;
    flush_scripts(&mut cluster);
    let event = Instant::now();
    let there = cluster
        .migrate_slot_of(tag.as_bytes(), MigrateOptions::default())
        .await;
    let back = cluster
        .migrate_slot_of(
            tag.as_bytes(),
            MigrateOptions::default()
                .batch(5)
                .pause(Duration::from_millis(2)),
        )
        .await;
    let settled = Instant::now();
    load.succeeds(200, "load after the migrations").await;
    let report = load.stop().await;
    eprintln!(
        "slot {} moved :{} -> :{} ({} keys, {:?}) and :{} -> :{} ({} keys, {:?})",
        there.slot,
        there.from,
        there.to,
        there.keys,
        there.took,
        back.from,
        back.to,
        back.keys,
        back.took
    );
    report.check("live slot migration", event, settled);
    assert!(there.keys >= 40, "the migration moved the slot's keys");
    // Migrations and re-routing lose nothing: each task's counter and its copy agree.
    for task in 0..TASKS {
        let counter: i64 = redis
            .query(redis::cmd("GET").arg(format!("{{{tag}}}:counter:{task}")))
            .await
            .unwrap();
        assert!(counter > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_kill_shows_callers_only_retryable_errors() {
    let mut cluster = TestCluster::spawn_with_node_timeout(3, 1, NODE_TIMEOUT);
    let redis = cluster.redis().await;
    let tag = "fo-kill";
    let epoch = redis.topology_epoch();
    let load = Load::start(&redis, tag);
    load.succeeds(200, "load before the kill").await;
    flush_scripts(&mut cluster);
    let event = Instant::now();
    let promotion = cluster.kill_master_of(tag.as_bytes()).await;
    let settled = Instant::now();
    load.succeeds(200, "load after the promotion").await;
    let resumed = event.elapsed();
    let report = load.stop().await;
    eprintln!(
        "master :{} killed, replica :{} promoted after {:?}; load resumed {:?} after the kill",
        promotion.killed, promotion.promoted, promotion.took, resumed
    );
    report.check("cluster master kill", event, settled);
    for f in report.outcomes.iter().filter_map(|o| o.failure.as_ref()) {
        assert!(
            !f.text.contains(&format!(":{} ", promotion.killed)) || !f.text.contains("MOVED"),
            "a redirect to the dead node reached a caller: {}",
            f.text
        );
    }
    // Workers hear of it: the backend compares the slot map at least every CLUSTER_POLL.
    wait_until(
        "the topology epoch to move after the promotion",
        redis_core::CLUSTER_POLL * 4,
        || async { redis.topology_epoch() > epoch },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_kill_shows_callers_only_retryable_errors() {
    let mut group = TestSentinel::spawn();
    let redis = group.redis().await;
    let mut watch = redis.topology_watch();
    watch.mark_seen();
    let load = Load::start(&redis, "fo-sentinel");
    load.succeeds(200, "load before the kill").await;
    let event = Instant::now();
    let switch = group.kill_master_and_wait_switch().await;
    let switched = Instant::now();
    // Workers hear of it at once: the backend follows +switch-master itself.
    tokio::time::timeout(Duration::from_secs(2), watch.changed())
        .await
        .expect("the topology epoch moves on +switch-master");
    let heard = switched.elapsed();
    let settled = Instant::now();
    load.succeeds(200, "load after the switch").await;
    let report = load.stop().await;
    eprintln!(
        "sentinel: :{} killed, +switch-master to :{} after {:?}; epoch moved {:?} after it",
        switch.old, switch.new, switch.took, heard
    );
    report.check("sentinel master kill", event, settled);
    let mut conn = redis.dedicated().await.unwrap();
    assert_eq!(port_of(&mut conn).await, switch.new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_taken_after_switch_master_talks_to_the_new_master() {
    let mut group = TestSentinel::spawn();
    let redis = group.redis().await;
    let old = group.current_master_port().await;
    {
        // Pooled, idle, and healthy: the old master stays up (demoted) in a manual failover.
        let mut conns = Vec::new();
        for _ in 0..3 {
            let mut conn = redis.dedicated().await.unwrap();
            assert_eq!(port_of(&mut conn).await, old);
            conns.push(conn);
        }
    }
    let epoch = redis.topology_epoch();
    let switch = group.failover_and_wait_switch().await;
    assert_eq!(switch.old, old);
    wait_until(
        "the backend hears +switch-master",
        Duration::from_secs(2),
        || async { redis.topology_epoch() > epoch },
    )
    .await;
    for _ in 0..3 {
        let mut conn = redis.dedicated().await.unwrap();
        assert_eq!(port_of(&mut conn).await, switch.new);
        // A write, first try, on a connection taken after the switch.
        let reply = conn
            .req_packed_command(
                redis::cmd("SET")
                    .arg("after-switch")
                    .arg(1)
                    .arg("EX")
                    .arg(60),
            )
            .await
            .unwrap();
        assert_eq!(reply, redis::Value::Okay);
    }
    // The shared connection followed too.
    let _: () = redis
        .query(
            redis::cmd("SET")
                .arg("shared-after-switch")
                .arg(1)
                .arg("EX")
                .arg(60),
        )
        .await
        .unwrap();
}
