//! Load for the failover tests: tasks that take a lease (wait, work, release) on one resource
//! through a fenced lock, a lock with expiring fences and a semaphore, while a ledger records
//! what holds by design and counts what a failover can cost.
//!
//! - Overlaps: a grant made while another holder of the same resource still counts its lease as
//!   valid (a semaphore: while all permits are held). Only a grant lost in a failover can cause
//!   one.
//! - Fence regressions: a lock's fence not above every fence seen before for it (its grants are
//!   serial, so the order they are recorded in is the order they were made); a permit's fence
//!   seen before (permits are granted concurrently, so only repeats are certain).
//! - Lost leases: found lost before or at release.
//! - Slow acquires: an `acquire` that took longer than its wait + `WAIT_MARGIN` + [`SLACK`].

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use redis_core::{KeySpace, Redis};
use redis_lock::{AcquireOptions, Fencing, LeaseHandle, Lock, LockGuard, Semaphore, WAIT_MARGIN};
use redis_test_support::{CallLog, ErrorWindow};

/// No call may take longer, failover or not.
pub(crate) const CALL_BOUND: Duration = Duration::from_secs(5);
/// Scheduling on a loaded machine, on top of the wait and its margin.
pub(crate) const SLACK: Duration = Duration::from_millis(300);
/// The resource every task contends for (its hash tag puts all its keys on one slot).
pub(crate) const RESOURCE: &str = "fo-res";
/// Tasks per kind.
const TASKS: usize = 3;
/// Permits of the semaphore.
const PERMITS: usize = 2;

/// A kind of lease under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// A lock with the default fencing counter (no TTL).
    Counter,
    /// A lock whose fences follow the server clock.
    Expiring,
    /// A semaphore with [`PERMITS`] permits.
    Semaphore,
}

pub(crate) const KINDS: [Kind; 3] = [Kind::Counter, Kind::Expiring, Kind::Semaphore];

impl Kind {
    fn ops(self) -> (&'static str, &'static str) {
        match self {
            Self::Counter => ("counter acquire", "counter release"),
            Self::Expiring => ("expiring acquire", "expiring release"),
            Self::Semaphore => ("permit acquire", "permit release"),
        }
    }

    fn capacity(self) -> usize {
        match self {
            Self::Semaphore => PERMITS,
            Self::Counter | Self::Expiring => 1,
        }
    }
}

/// A lock or a semaphore.
#[derive(Debug, Clone)]
enum Leaser {
    Lock(Lock),
    Semaphore(Semaphore),
}

impl Leaser {
    /// The three leasers, keys under `prefix`, leases of `ttl` kept by the watchdog.
    fn build(redis: &Redis, prefix: &str, ttl: Duration, kind: Kind) -> Self {
        let keys = KeySpace::new(&format!("{prefix}-{kind:?}")).unwrap();
        match kind {
            Kind::Counter | Kind::Expiring => {
                let fencing = if kind == Kind::Counter {
                    Fencing::Counter
                } else {
                    Fencing::expiring(Duration::from_secs(3600))
                };
                Self::Lock(
                    Lock::builder(redis.clone(), &keys)
                        .ttl(ttl)
                        .auto_extend(true)
                        .fencing(fencing)
                        .build()
                        .unwrap(),
                )
            }
            Kind::Semaphore => Self::Semaphore(
                Semaphore::builder(redis.clone(), &keys, PERMITS as u32)
                    .ttl(ttl)
                    .auto_extend(true)
                    .build()
                    .unwrap(),
            ),
        }
    }

    async fn acquire(&self, options: &AcquireOptions) -> redis_lock::Result<LockGuard> {
        match self {
            Self::Lock(lock) => lock.acquire_with_options(RESOURCE, options).await,
            Self::Semaphore(sem) => sem.acquire_with_options(RESOURCE, options).await,
        }
    }

    /// The main key of the resource (every key of the resource shares its slot).
    fn key(&self) -> String {
        match self {
            Self::Lock(lock) => lock.key(RESOURCE).unwrap().as_str().to_owned(),
            Self::Semaphore(sem) => sem.key(RESOURCE).unwrap().as_str().to_owned(),
        }
    }
}

struct Holding {
    id: u64,
    granted: Instant,
    handle: LeaseHandle,
}

/// A grant made while `capacity` other holders still counted their leases valid.
#[derive(Debug, Clone)]
pub(crate) struct Overlap {
    pub(crate) kind: Kind,
    /// When the oldest of those holders was granted.
    pub(crate) earlier: Instant,
    /// When the overlapping grant was made.
    pub(crate) later: Instant,
}

#[derive(Default)]
struct Books {
    next_id: u64,
    holders: HashMap<Kind, Vec<Holding>>,
    last_fence: HashMap<Kind, u64>,
    permit_fences: HashSet<u64>,
    grants: HashMap<Kind, usize>,
    regressions: HashMap<Kind, Vec<(u64, u64)>>,
    overlaps: Vec<Overlap>,
    lost: HashMap<Kind, usize>,
    timed: usize,
    /// Acquires that ran into their deadline (wait reached).
    deadline: usize,
    slowest: Duration,
    slow: Vec<Duration>,
}

/// What the load tasks share.
#[derive(Default)]
pub(crate) struct Ledger {
    books: Mutex<Books>,
}

impl Ledger {
    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap()
    }

    /// An `acquire` with `wait` took `took`.
    fn timed(&self, took: Duration, wait: Duration) {
        let mut books = self.books();
        books.timed += 1;
        if took >= wait {
            books.deadline += 1;
        }
        books.slowest = books.slowest.max(took);
        if took > wait + WAIT_MARGIN + SLACK {
            books.slow.push(took);
        }
    }

    /// A grant: checks its fence and the other holders, and registers it.
    fn enter(&self, kind: Kind, guard: &LockGuard) -> u64 {
        let now = Instant::now();
        let mut books = self.books();
        let fence = guard.fence();
        *books.grants.entry(kind).or_default() += 1;
        let last = books.last_fence.get(&kind).copied().unwrap_or(0);
        let regressed = match kind {
            Kind::Semaphore => !books.permit_fences.insert(fence),
            Kind::Counter | Kind::Expiring => fence <= last,
        };
        if regressed {
            books
                .regressions
                .entry(kind)
                .or_default()
                .push((last, fence));
        }
        books.last_fence.insert(kind, last.max(fence));
        let holders = books.holders.entry(kind).or_default();
        let valid: Vec<Instant> = holders
            .iter()
            .filter(|h| !h.handle.is_lost())
            .map(|h| h.granted)
            .collect();
        if valid.len() >= kind.capacity() {
            let earlier = valid.into_iter().min().unwrap();
            books.overlaps.push(Overlap {
                kind,
                earlier,
                later: now,
            });
        }
        books.next_id += 1;
        let id = books.next_id;
        books.holders.entry(kind).or_default().push(Holding {
            id,
            granted: now,
            handle: guard.handle(),
        });
        id
    }

    /// The holder `id` is done (before its release is sent).
    fn leave(&self, kind: Kind, id: u64) {
        if let Some(holders) = self.books().holders.get_mut(&kind) {
            holders.retain(|h| h.id != id);
        }
    }

    fn lost(&self, kind: Kind) {
        *self.books().lost.entry(kind).or_default() += 1;
    }
}

/// What the ledger counted, after the load stopped.
#[derive(Debug)]
pub(crate) struct Tally {
    pub(crate) window: ErrorWindow,
    pub(crate) grants: HashMap<Kind, usize>,
    pub(crate) regressions: HashMap<Kind, Vec<(u64, u64)>>,
    pub(crate) overlaps: Vec<Overlap>,
    pub(crate) lost: HashMap<Kind, usize>,
    /// Acquires timed, the slowest, and those past their bound.
    pub(crate) timed: usize,
    pub(crate) slowest: Duration,
    pub(crate) slow: Vec<Duration>,
}

impl Tally {
    pub(crate) fn regressions(&self, kind: Kind) -> usize {
        self.regressions.get(&kind).map_or(0, Vec::len)
    }

    pub(crate) fn lost(&self, kind: Kind) -> usize {
        self.lost.get(&kind).copied().unwrap_or(0)
    }

    /// Every acquire returned within its wait + `WAIT_MARGIN` + [`SLACK`].
    pub(crate) fn assert_acquires_bounded(&self, what: &str) {
        assert!(self.timed > 0, "{what}: no acquire was timed");
        assert!(
            self.slow.is_empty(),
            "{what}: acquires past wait + {WAIT_MARGIN:?} + {SLACK:?}: {:?}",
            self.slow
        );
    }

    /// Nothing a failover can cost happened.
    pub(crate) fn assert_nothing_lost(&self, what: &str) {
        assert!(
            self.overlaps.is_empty(),
            "{what}: overlaps {:?}",
            self.overlaps
        );
        assert!(
            self.regressions.values().all(Vec::is_empty),
            "{what}: fence regressions {:?}",
            self.regressions
        );
        assert!(
            self.lost.values().all(|&n| n == 0),
            "{what}: lost leases {:?}",
            self.lost
        );
    }

    /// Overlaps only between a grant made before `switched` (possibly on the old master) and
    /// one made after `event`; no regression of the clock-based fences.
    pub(crate) fn assert_only_failover_losses(
        &self,
        what: &str,
        event: Instant,
        switched: Instant,
    ) {
        for overlap in &self.overlaps {
            assert!(
                overlap.earlier < switched && overlap.later >= event,
                "{what}: an overlap not explained by the failover: {overlap:?}"
            );
        }
        assert_eq!(
            self.regressions(Kind::Expiring),
            0,
            "{what}: clock-based fences went back: {:?}",
            self.regressions.get(&Kind::Expiring)
        );
    }

    /// One line per kind: grants, lost leases, fence regressions; then overlaps and acquire times.
    pub(crate) fn print(&self, what: &str) {
        for kind in KINDS {
            eprintln!(
                "{what}: {kind:?}: {} grants, {} lost, {} fence regressions {:?}",
                self.grants.get(&kind).copied().unwrap_or(0),
                self.lost(kind),
                self.regressions(kind),
                self.regressions.get(&kind).cloned().unwrap_or_default()
            );
        }
        eprintln!(
            "{what}: {} overlaps; {} acquires timed, slowest {:?}",
            self.overlaps.len(),
            self.timed,
            self.slowest
        );
    }
}

/// `TASKS` tasks per kind taking leases on [`RESOURCE`] until stopped.
pub(crate) struct Load {
    pub(crate) log: Arc<CallLog>,
    ledger: Arc<Ledger>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    keys: Vec<String>,
}

impl Load {
    /// Starts the load: leases of `ttl` (watchdog on), acquires waiting up to `wait`.
    pub(crate) fn start(redis: &Redis, prefix: &str, ttl: Duration, wait: Duration) -> Self {
        let log = CallLog::new(CALL_BOUND);
        let ledger = Arc::new(Ledger::default());
        let mut tasks = Vec::new();
        let mut keys = Vec::new();
        for kind in KINDS {
            let leaser = Leaser::build(redis, prefix, ttl, kind);
            keys.push(leaser.key());
            for _ in 0..TASKS {
                let (leaser, log, ledger) = (leaser.clone(), log.clone(), ledger.clone());
                tasks.push(tokio::spawn(run(kind, leaser, log, ledger, wait)));
            }
        }
        Self {
            log,
            ledger,
            tasks,
            keys,
        }
    }

    /// Acquires so far that ran into their deadline.
    pub(crate) fn deadlines(&self) -> usize {
        self.ledger.books().deadline
    }

    /// The main keys of the resource, one per kind (all on one slot).
    pub(crate) fn keys(&self) -> &[String] {
        &self.keys
    }

    pub(crate) async fn succeeds(&self, n: usize, what: &str) {
        self.log.wait_successes(n, what).await;
    }

    /// Stops the load, checks the calls (see [`CallLog::check`]) and returns the tally.
    pub(crate) async fn stop(self, what: &str, event: Instant, settled: Instant) -> Tally {
        self.log.stop();
        for task in self.tasks {
            task.await.expect("load task panicked");
        }
        let window = self.log.check(what, event, settled);
        let books = std::mem::take(&mut *self.ledger.books());
        let tally = Tally {
            window,
            grants: books.grants,
            regressions: books.regressions,
            overlaps: books.overlaps,
            lost: books.lost,
            timed: books.timed,
            slowest: books.slowest,
            slow: books.slow,
        };
        tally.print(what);
        tally
    }
}

/// One task: acquire (timed), work a few ms, release; a lease found lost is counted, not failed.
async fn run(kind: Kind, leaser: Leaser, log: Arc<CallLog>, ledger: Arc<Ledger>, wait: Duration) {
    let options = AcquireOptions::new().wait(wait);
    let (acquire_op, release_op) = kind.ops();
    while !log.stopped() {
        let acquire = async {
            let started = Instant::now();
            let result = leaser.acquire(&options).await;
            ledger.timed(started.elapsed(), wait);
            result
        };
        let Some(Ok(guard)) = log.call(acquire_op, acquire).await else {
            continue;
        };
        let id = ledger.enter(kind, &guard);
        tokio::time::sleep(Duration::from_millis(1 + rand::random::<u64>() % 8)).await;
        ledger.leave(kind, id);
        let release = async {
            let lost = guard.is_lost();
            match guard.release().await {
                Err(e) if e.is_lost() => {
                    ledger.lost(kind);
                    Ok(())
                }
                Ok(()) if lost => {
                    ledger.lost(kind);
                    Ok(())
                }
                other => other,
            }
        };
        log.call(release_op, release).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
