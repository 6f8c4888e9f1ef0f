//! Limiters through a Sentinel failover, a Cluster failover and a live slot migration, under
//! concurrent load: GCRA, a sliding window, a sliding log, a coalesced GCRA whose batches span two slots, a
//! multi-limit limiter, and a fail-open sliding window.
//!
//! What holds by design and is asserted: no caller sees a redirect, `TRYAGAIN` or `CROSSSLOT`;
//! every error is typed and retryable (the fail-open limiter returns none: its policy decides,
//! and its decisions say so); no call hangs; after the switch every limiter decides on Redis
//! again, exactly (a fresh identity admits exactly its limit). During a migration nothing is
//! lost: no error at all, and every identity that was denied had been admitted exactly its
//! limit. After a kill, units admitted by the old master and not yet replicated can be admitted
//! again: that over-admission is counted, printed, and bounded (loosely) by what was admitted
//! from a second before the kill until the switch settled.

mod support;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use redis_ratelimit::{
    FailurePolicy, Limit, MultiLimiter, Outcome, RateLimiter, Source,
    redis_core::{KeySpace, Redis, keys::slot},
};
use redis_test_support::{CallLog, ErrorWindow, MigrateOptions, TestCluster, TestSentinel};
use support::HOUR;

/// No call may take longer, failover or not.
const CALL_BOUND: Duration = Duration::from_secs(5);
/// Units per identity (nothing refills within a test).
const LIMIT: u64 = 40;
/// A short node time-out so a killed master's replica takes over within seconds.
const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gcra,
    SlidingWindow,
    SlidingLog,
    Coalesced,
    Multi,
    FailOpen,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Gcra => "gcra",
            Self::SlidingWindow => "sliding_window",
            Self::SlidingLog => "sliding_log",
            Self::Coalesced => "coalesced_gcra",
            Self::Multi => "multi",
            Self::FailOpen => "fail_open",
        }
    }
}

/// The lanes of the load: a kind of limiter and a stream of identities, each shared by its
/// tasks. The coalesced limiter's second lane is on other slots, so its batches span slots.
const LANES: [(Kind, bool); 7] = [
    (Kind::Gcra, true),
    (Kind::SlidingWindow, true),
    (Kind::Coalesced, true),
    (Kind::Coalesced, false),
    (Kind::Multi, true),
    (Kind::FailOpen, true),
    (Kind::SlidingLog, true),
];
/// Tasks per lane.
const TASKS_PER_LANE: usize = 2;

/// What a check answered.
#[derive(Debug, Clone, Copy)]
struct Checked {
    outcome: Outcome,
    remaining: u64,
    source: Source,
}

struct Limiters {
    gcra: RateLimiter,
    sliding: RateLimiter,
    log: RateLimiter,
    coalesced: RateLimiter,
    multi: MultiLimiter,
    fail_open: RateLimiter,
}

impl Limiters {
    fn new(redis: &Redis) -> Self {
        let keys = KeySpace::new("rlfo").unwrap();
        let gcra = Limit::gcra(1, HOUR, LIMIT);
        let window = Limit::sliding_window(LIMIT, HOUR);
        let build = |space: &str, limit: Limit| {
            RateLimiter::builder(redis.clone(), &keys.pattern(space).unwrap(), limit)
        };
        Self {
            gcra: build("plain", gcra).build().unwrap(),
            sliding: build("plain", window).build().unwrap(),
            log: build("plain", Limit::sliding_log(LIMIT, HOUR))
                .build()
                .unwrap(),
            coalesced: build("coalesced", gcra).coalesce(true).build().unwrap(),
            multi: MultiLimiter::builder(redis.clone(), &keys.pattern("multi").unwrap())
                .limit("burst", gcra)
                .limit("hour", Limit::fixed_window(LIMIT, HOUR))
                .build()
                .unwrap(),
            fail_open: build("open", window)
                .on_redis_error(FailurePolicy::FailOpen)
                .build()
                .unwrap(),
        }
    }

    async fn check(&self, kind: Kind, identity: &str) -> redis_ratelimit::Result<Checked> {
        let decision = match kind {
            Kind::Gcra => self.gcra.check(identity).await?,
            Kind::SlidingWindow => self.sliding.check(identity).await?,
            Kind::SlidingLog => self.log.check(identity).await?,
            Kind::Coalesced => self.coalesced.check(identity).await?,
            Kind::FailOpen => self.fail_open.check(identity).await?,
            Kind::Multi => *self.multi.check(identity).await?.decision(),
        };
        Ok(Checked {
            outcome: decision.outcome(),
            remaining: decision.remaining(),
            source: decision.source(),
        })
    }
}

/// Identities `<prefix>-<n>` whose keys all fall in one slot (or anywhere).
fn identities_in(prefix: String, slot_of: Option<u16>) -> impl Iterator<Item = String> {
    (0..)
        .map(move |n| format!("{prefix}-{n}"))
        .filter(move |id| slot_of.is_none_or(|s| slot(id.as_bytes()) == s))
}

/// One lane: its identities in use, one at a time, and the units Redis admitted for each.
struct Lane {
    kind: Kind,
    identities: Mutex<Vec<String>>,
    next: Mutex<Box<dyn Iterator<Item = String> + Send>>,
    current: AtomicUsize,
    /// Per identity: when each admission (decided on Redis) returned.
    admitted: Mutex<HashMap<String, Vec<Instant>>>,
    /// Identities Redis denied at least once.
    denied: Mutex<Vec<String>>,
    fail_open: AtomicUsize,
}

impl Lane {
    fn new(kind: Kind, index: usize, slot_of: Option<u16>) -> Self {
        let prefix = format!("{}-{index}", kind.name());
        Self {
            kind,
            identities: Mutex::new(Vec::new()),
            next: Mutex::new(Box::new(identities_in(prefix, slot_of))),
            current: AtomicUsize::new(0),
            admitted: Mutex::new(HashMap::new()),
            denied: Mutex::new(Vec::new()),
            fail_open: AtomicUsize::new(0),
        }
    }

    fn identity(&self, n: usize) -> String {
        let mut ids = self.identities.lock().unwrap();
        while ids.len() <= n {
            let next = self.next.lock().unwrap().next().unwrap();
            ids.push(next);
        }
        ids[n].clone()
    }

    async fn run(&self, limiters: &Limiters, log: &CallLog) {
        while !log.stopped() {
            let n = self.current.load(Ordering::Relaxed);
            let id = self.identity(n);
            if let Some(Ok(checked)) = log
                .call(self.kind.name(), limiters.check(self.kind, &id))
                .await
            {
                match (checked.source, checked.outcome) {
                    (Source::Redis, Outcome::Allowed) => self
                        .admitted
                        .lock()
                        .unwrap()
                        .entry(id)
                        .or_default()
                        .push(Instant::now()),
                    (Source::Redis, _) => {
                        self.denied.lock().unwrap().push(id);
                        let _ = self.current.compare_exchange(
                            n,
                            n + 1,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                    (Source::FailOpen, Outcome::Allowed) if self.kind == Kind::FailOpen => {
                        self.fail_open.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("{:?}: unexpected decision {other:?}", self.kind),
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Over-admission after a kill: units admitted above the limit, and what bounds them.
#[derive(Debug, Default)]
struct Admission {
    identities: usize,
    admitted: usize,
    over: usize,
    at_risk: usize,
    fail_open: usize,
}

struct Load {
    log: Arc<CallLog>,
    lanes: Vec<Arc<Lane>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Lanes of identities in `slot_of`'s slot (the coalesced limiter's second lane anywhere).
    fn start(limiters: &Arc<Limiters>, slot_of: Option<u16>) -> Self {
        let log = CallLog::new(CALL_BOUND);
        let lanes: Vec<Arc<Lane>> = LANES
            .iter()
            .enumerate()
            .map(|(i, &(kind, on_slot))| Arc::new(Lane::new(kind, i, slot_of.filter(|_| on_slot))))
            .collect();
        let tasks = lanes
            .iter()
            .flat_map(|lane| (0..TASKS_PER_LANE).map(move |_| lane.clone()))
            .map(|lane| {
                let (limiters, log) = (limiters.clone(), log.clone());
                tokio::spawn(async move { lane.run(&limiters, &log).await })
            })
            .collect();
        Self { log, lanes, tasks }
    }

    async fn stop(mut self, what: &str, event: Instant, settled: Instant) -> (ErrorWindow, Self) {
        self.log.stop();
        for task in self.tasks.drain(..) {
            task.await.expect("load task panicked");
        }
        let window = self.log.check(what, event, settled);
        let fail_open_errors = self
            .log
            .calls()
            .iter()
            .filter(|c| c.op == Kind::FailOpen.name() && c.error.is_some())
            .count();
        assert_eq!(
            fail_open_errors, 0,
            "{what}: the fail-open limiter's policy decides instead of returning errors"
        );
        (window, self)
    }

    /// Checks every identity: admitted at most `LIMIT` plus what was admitted from a second
    /// before `event` until the switch settled (`risk`), exactly `LIMIT` for a denied identity
    /// when nothing can be lost (`risk` is `None`).
    fn admission(&self, what: &str, risk: Option<(Instant, Instant)>) -> Admission {
        let mut total = Admission::default();
        for lane in &self.lanes {
            total.fail_open += lane.fail_open.load(Ordering::Relaxed);
            let admitted = lane.admitted.lock().unwrap();
            let denied = lane.denied.lock().unwrap();
            for (id, times) in admitted.iter() {
                total.identities += 1;
                total.admitted += times.len();
                let count = times.len() as u64;
                let at_risk = risk.map_or(0, |(event, until)| {
                    times
                        .iter()
                        .filter(|&&t| t + Duration::from_secs(1) >= event && t <= until)
                        .count() as u64
                });
                let over = count.saturating_sub(LIMIT);
                total.over += over as usize;
                total.at_risk += at_risk as usize;
                assert!(
                    over <= at_risk,
                    "{what}: {:?} {id} admitted {count} > {LIMIT} + {at_risk} at risk",
                    lane.kind
                );
                if risk.is_none() && denied.contains(id) {
                    assert_eq!(
                        count, LIMIT,
                        "{what}: {:?} {id}: a denied identity had its limit exactly",
                        lane.kind
                    );
                }
            }
        }
        eprintln!(
            "{what}: {} units admitted to {} identities, {} over the limit (at risk: {} admitted \
             from a second before the kill until the switch settled); {} fail-open decisions",
            total.admitted, total.identities, total.over, total.at_risk, total.fail_open
        );
        total
    }
}

/// A fresh identity (in `slot_of`'s slot) is decided exactly on Redis by every limiter:
/// `LIMIT` admissions counting down, then denials.
async fn exact_after_switch(limiters: &Limiters, slot_of: Option<u16>, what: &str) {
    for kind in [
        Kind::Gcra,
        Kind::SlidingWindow,
        Kind::SlidingLog,
        Kind::Coalesced,
        Kind::Multi,
        Kind::FailOpen,
    ] {
        let id = identities_in(format!("fresh-{}", kind.name()), slot_of)
            .next()
            .unwrap();
        for n in 1..=LIMIT + 2 {
            let checked = limiters.check(kind, &id).await.unwrap();
            assert_eq!(checked.source, Source::Redis, "{what}: {kind:?}");
            if n <= LIMIT {
                assert_eq!(checked.outcome, Outcome::Allowed, "{what}: {kind:?} #{n}");
                assert_eq!(checked.remaining, LIMIT - n, "{what}: {kind:?} #{n}");
            } else {
                assert_eq!(checked.outcome, Outcome::Denied, "{what}: {kind:?} #{n}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_slot_migration_loses_nothing_and_shows_no_error() {
    let mut cluster = TestCluster::spawn_with_node_timeout(3, 0, NODE_TIMEOUT);
    let redis = cluster.redis().await;
    let tag = "rl-migrate";
    let target = Some(slot(tag.as_bytes()));
    // Keys to move besides the limiters' own, so the slot stays split for a while.
    cluster.fill_slot(&format!("{{{tag}}}"), 40).await;
    let limiters = Arc::new(Limiters::new(&redis));
    let load = Load::start(&limiters, target);
    load.log
        .wait_successes(300, "load before the migration")
        .await;
    let event = Instant::now();
    let (there, back) = cluster
        .migrate_slot_there_and_back(tag.as_bytes(), MigrateOptions::default())
        .await;
    let settled = Instant::now();
    load.log
        .wait_successes(300, "load after the migrations")
        .await;
    let (window, load) = load.stop("live slot migration", event, settled).await;
    eprintln!(
        "slot {} moved :{} -> :{} ({} keys, {:?}) and back ({} keys, {:?})",
        there.slot, there.from, there.to, there.keys, there.took, back.keys, back.took
    );
    assert_eq!(window.failed, 0, "a migration is invisible to callers");
    assert!(there.keys >= 40, "the migration moved the slot's keys");
    let admission = load.admission("live slot migration", None);
    assert_eq!(admission.over, 0);
    assert_eq!(admission.fail_open, 0, "Redis decided every check");
    exact_after_switch(&limiters, target, "after the migrations").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_kill_shows_only_retryable_errors_and_bounded_over_admission() {
    let mut cluster = TestCluster::spawn_with_node_timeout(3, 1, NODE_TIMEOUT);
    let redis = cluster.redis().await;
    let tag = "rl-kill";
    let target = Some(slot(tag.as_bytes()));
    let limiters = Arc::new(Limiters::new(&redis));
    let load = Load::start(&limiters, target);
    load.log.wait_successes(300, "load before the kill").await;
    let event = Instant::now();
    let promotion = cluster.kill_master_of(tag.as_bytes()).await;
    let settled = Instant::now();
    load.log
        .wait_successes(300, "load after the promotion")
        .await;
    eprintln!(
        "master :{} killed, replica :{} promoted after {:?}",
        promotion.killed, promotion.promoted, promotion.took
    );
    let (_, load) = load.stop("cluster master kill", event, settled).await;
    load.admission("cluster master kill", Some((event, settled)));
    exact_after_switch(&limiters, target, "after the promotion").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_kill_shows_only_retryable_errors_and_bounded_over_admission() {
    let mut group = TestSentinel::spawn();
    let redis = group.redis().await;
    let limiters = Arc::new(Limiters::new(&redis));
    let load = Load::start(&limiters, None);
    load.log.wait_successes(300, "load before the kill").await;
    let event = Instant::now();
    let switch = group.kill_master_and_wait_switch().await;
    let settled = Instant::now();
    load.log.wait_successes(300, "load after the switch").await;
    eprintln!(
        "sentinel: :{} killed, +switch-master to :{} after {:?}",
        switch.old, switch.new, switch.took
    );
    let (_, load) = load.stop("sentinel master kill", event, settled).await;
    load.admission("sentinel master kill", Some((event, settled)));
    exact_after_switch(&limiters, None, "after the switch").await;
}
