//! The connection layer through a Sentinel failover, a Cluster failover and a live slot
//! migration, under concurrent load of commands, scripts and pipelines (plain and `MULTI`).
//!
//! What holds by design and is asserted: no caller sees a redirect (`MOVED`, `ASK`), `TRYAGAIN`
//! or `CROSSSLOT`; every error is typed and retryable; no call takes longer than
//! [`CALL_BOUND`]; load succeeds again once the new owner answers. The error window (first to
//! last failed call, from the kill) is measured and printed.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use redis::aio::ConnectionLike as _;
use redis_core::{Backoff, Redis, Script, TopologyBackoff};
use redis_test_support::{
    CallLog, ErrorWindow, MigrateOptions, TestCluster, TestSentinel, wait_until,
};

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

/// A script over two keys of which the second never exists (a free lock's holder key, a new
/// identity): during a migration it runs only once the slot has moved, and meets `ASK` and
/// `TRYAGAIN` in turn until then.
static INCR_AND_PEEK: Script = Script::new(
    "incr_and_peek",
    "local v = redis.call('INCR', KEYS[1])
     redis.call('EXPIRE', KEYS[1], 300)
     return {v, redis.call('EXISTS', KEYS[2])}",
);

#[derive(Debug, Clone, Copy)]
enum Op {
    Command,
    Script,
    SparseScript,
    Transaction,
    Pipeline,
}

const OPS: [Op; 5] = [
    Op::Command,
    Op::Script,
    Op::SparseScript,
    Op::Transaction,
    Op::Pipeline,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Script => "script",
            Self::SparseScript => "sparse script",
            Self::Transaction => "transaction",
            Self::Pipeline => "pipeline",
        }
    }

    async fn run(
        self,
        redis: &Redis,
        counter: &str,
        copy: &str,
        piped: &str,
    ) -> redis_core::Result<()> {
        match self {
            Self::Command => redis
                .query::<i64>(redis::cmd("INCR").arg(counter))
                .await
                .map(drop),
            Self::Script => INCR_AND_COPY
                .call()
                .key(counter)
                .key(copy)
                .invoke::<i64>(redis)
                .await
                .map(drop),
            Self::SparseScript => INCR_AND_PEEK
                .call()
                .key(counter)
                .key(format!("{counter}:never"))
                .invoke::<(i64, i64)>(redis)
                .await
                .map(drop),
            Self::Transaction => redis
                .query_pipeline::<(i64, i64)>(
                    redis::pipe()
                        .atomic()
                        .cmd("INCR")
                        .arg(piped)
                        .cmd("EXPIRE")
                        .arg(piped)
                        .arg(300),
                )
                .await
                .map(drop),
            Self::Pipeline => redis
                .query_pipeline::<(i64, i64)>(
                    redis::pipe().cmd("INCR").arg(piped).cmd("TTL").arg(piped),
                )
                .await
                .map(drop),
        }
    }
}

/// Commands, scripts, transactions and pipelines on keys of one hash tag from `TASKS` tasks,
/// logged, until the log is stopped.
struct Load {
    log: Arc<CallLog>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(redis: &Redis, tag: &str) -> Self {
        let log = CallLog::new(CALL_BOUND);
        let tasks = (0..TASKS)
            .map(|task| {
                let (redis, log) = (redis.clone(), log.clone());
                let key = |what: &str| format!("{{{tag}}}:{what}:{task}");
                let (counter, copy, piped) = (key("counter"), key("copy"), key("piped"));
                tokio::spawn(async move {
                    for n in task.. {
                        if log.stopped() {
                            return;
                        }
                        let op = OPS[n % OPS.len()];
                        log.call(op.name(), op.run(&redis, &counter, &copy, &piped))
                            .await;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            })
            .collect();
        Self { log, tasks }
    }

    async fn succeeds(&self, n: usize, what: &str) {
        self.log.wait_successes(n, what).await;
    }

    /// Stops the load and checks it (see [`CallLog::check`]).
    async fn stop(self, what: &str, event: Instant, settled: Instant) -> ErrorWindow {
        self.log.stop();
        for task in self.tasks {
            task.await.expect("load task panicked");
        }
        self.log.check(what, event, settled)
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
    cluster.fill_slot(&format!("{{{tag}}}"), 40).await;
    let load = Load::start(&redis, tag);
    load.succeeds(200, "load before the migration").await;
    flush_scripts(&mut cluster);
    let event = Instant::now();
    // A second in the migrating state: longer than redirects alone would be followed, so the
    // sparse script's `ASK`/`TRYAGAIN` must be followed for the migration's length.
    let (there, back) = cluster
        .migrate_slot_there_and_back(
            tag.as_bytes(),
            MigrateOptions::default().dwell(Duration::from_secs(1)),
        )
        .await;
    let settled = Instant::now();
    load.succeeds(200, "load after the migrations").await;
    let window = load.stop("live slot migration", event, settled).await;
    assert_eq!(window.failed, 0, "a migration is invisible to callers");
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
    let key = format!("{{{tag}}}:dedicated");
    // A pooled dedicated connection, idle through the kill.
    drop(redis.dedicated().await.unwrap());
    let epoch = redis.topology_epoch();
    let load = Load::start(&redis, tag);
    load.succeeds(200, "load before the kill").await;
    flush_scripts(&mut cluster);
    let event = Instant::now();
    let promotion = cluster.kill_master_of(tag.as_bytes()).await;
    let settled = Instant::now();
    load.succeeds(200, "load after the promotion").await;
    eprintln!(
        "master :{} killed, replica :{} promoted after {:?}",
        promotion.killed, promotion.promoted, promotion.took
    );
    // No redirect of any kind (to the dead node or elsewhere) reaches a caller: checked here.
    load.stop("cluster master kill", event, settled).await;
    // Workers hear of it: the backend compares the slot map at least every CLUSTER_POLL.
    wait_until(
        "the topology epoch to move after the promotion",
        redis_core::CLUSTER_POLL * 4,
        || async { redis.topology_epoch() > epoch },
    )
    .await;
    // The pool was drained when the set of masters changed: a checkout writes first time.
    let mut conn = redis.dedicated().await.unwrap();
    let reply = conn
        .req_packed_command(redis::cmd("SET").arg(&key).arg(1).arg("EX").arg(60))
        .await
        .unwrap();
    assert_eq!(reply, redis::Value::Okay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_moves_the_topology_epoch() {
    let mut server = redis_test_support::TestServer::spawn();
    let redis = Redis::open(&server.url()).await.unwrap();
    let mut watch = redis.topology_watch();
    watch.mark_seen();
    server.restart();
    wait_until(
        "the server answers again",
        Duration::from_secs(10),
        || async { redis.query::<String>(&redis::cmd("PING")).await.is_ok() },
    )
    .await;
    // The shared connection was re-established: workers waiting out a backoff resume now.
    assert!(watch.has_changed(), "a reconnect moves the topology epoch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_kill_shows_callers_only_retryable_errors() {
    let mut group = TestSentinel::spawn();
    let redis = group.redis().await;
    let mut watch = redis.topology_watch();
    watch.mark_seen();
    let load = Load::start(&redis, "fo-sentinel");
    load.succeeds(200, "load before the kill").await;
    // A long-lived worker with a backoff that grows to 5 s during the outage.
    let worker = {
        let redis = redis.clone();
        tokio::spawn(async move {
            let mut backoff = TopologyBackoff::new(
                Backoff::clamped(Duration::from_millis(100), Duration::from_secs(5)),
                redis.topology_watch(),
            );
            let mut last_failure = None;
            loop {
                match redis
                    .query::<()>(redis::cmd("SET").arg("worker").arg(1).arg("EX").arg(60))
                    .await
                {
                    Ok(()) if last_failure.is_some() => return Instant::now(),
                    Ok(()) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(e) => {
                        assert!(e.is_retryable(), "{e}");
                        last_failure = Some(Instant::now());
                        backoff.wait().await;
                    }
                }
            }
        })
    };
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
    let resumed = tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("the worker resumes")
        .expect("worker panicked");
    let worker_lag = resumed.saturating_duration_since(switched);
    eprintln!(
        "sentinel: :{} killed, +switch-master to :{} after {:?}; epoch moved {heard:?} and the \
         worker resumed {worker_lag:?} after it",
        switch.old, switch.new, switch.took
    );
    assert!(
        worker_lag < Duration::from_secs(1),
        "a worker resumes within about a second of the new master: {worker_lag:?}"
    );
    load.stop("sentinel master kill", event, settled).await;
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
