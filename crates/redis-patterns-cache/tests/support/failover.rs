//! Load for the failover tests: a source of truth with a version per entry and an epoch per
//! tag, caches over it, readers and writers whose calls go through a [`CallLog`], and a record
//! of what each read returned and each write acknowledged, checked once the switch is over.
//!
//! What the record must show (see [`Load::stop`]):
//! - every value read is whole: one the loader returned or a writer wrote, never a mix;
//! - no read returns a version older than a write acknowledged (by the master of the time)
//!   before the read began, nor a tagged entry older than an acknowledged invalidation of its
//!   tag: generation and tag fencing hold through the switch. A near cache may lag a remote
//!   write by the push delivery, [`NEAR_LAG`] at most;
//! - writes acknowledged by a master that died before replicating them can be lost: reads
//!   behind them are counted and printed, not failed.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use redis_cache::{Cache, EntryOptions, FailurePolicy, NearCacheConfig, WriteMode};
use redis_core::{KeySpace, Redis};
use redis_test_support::{CallLog, ErrorWindow, wait_until};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

/// No call may take longer, failover or not.
pub(crate) const CALL_BOUND: Duration = Duration::from_secs(5);
/// Untagged entries, read and written by the main load.
pub(crate) const PLAIN: [&str; 3] = ["plain-a", "plain-b", "plain-c"];
/// Entries tagged [`TAG`].
pub(crate) const TAGGED: [&str; 2] = ["tagged-a", "tagged-b"];
/// The tag of [`TAGGED`], invalidated by the load.
pub(crate) const TAG: &str = "group";
/// Entries a near cache reads and another cache instance writes.
pub(crate) const NEAR: [&str; 2] = ["near-a", "near-b"];
/// How long after a remote write is acknowledged a near cache may still serve the old value.
pub(crate) const NEAR_LAG: Duration = Duration::from_secs(1);
/// Reader tasks on the main cache.
const READERS: usize = 4;

/// A cached value: which entry, which version of it and of its tag, and a body derived from
/// them, so a mixed or partial value shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Item {
    pub(crate) name: String,
    pub(crate) version: u64,
    pub(crate) epoch: u64,
    body: String,
}

impl Item {
    pub(crate) fn new(name: &str, version: u64, epoch: u64) -> Self {
        Self {
            name: name.to_owned(),
            version,
            epoch,
            body: Self::body(name, version, epoch),
        }
    }

    fn body(name: &str, version: u64, epoch: u64) -> String {
        format!("{name}/{version}/{epoch};").repeat(16)
    }

    /// Whole, and the value of `name`.
    pub(crate) fn intact(&self, name: &str) -> bool {
        self.name == name && self.body == Self::body(name, self.version, self.epoch)
    }
}

/// The source of truth: a version per entry, one epoch for [`TAG`], and a count of loads.
#[derive(Debug, Default)]
pub(crate) struct Source {
    versions: Mutex<HashMap<String, u64>>,
    epoch: AtomicU64,
    loads: AtomicUsize,
}

impl Source {
    fn versions(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.versions.lock().unwrap()
    }

    fn epoch_of(&self, name: &str) -> u64 {
        if TAGGED.contains(&name) {
            self.epoch.load(Ordering::SeqCst)
        } else {
            0
        }
    }

    /// The row of `name` now.
    pub(crate) fn current(&self, name: &str) -> Item {
        let version = self.versions().get(name).copied().unwrap_or(0);
        Item::new(name, version, self.epoch_of(name))
    }

    /// Writes a new version of `name` and returns it.
    pub(crate) fn bump(&self, name: &str) -> Item {
        let version = {
            let mut versions = self.versions();
            let v = versions.entry(name.to_owned()).or_insert(0);
            *v += 1;
            *v
        };
        Item::new(name, version, self.epoch_of(name))
    }

    /// A loader's read of `name`, counted.
    pub(crate) async fn load(&self, name: &str) -> Result<Option<Item>, std::io::Error> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(Some(self.current(name)))
    }

    pub(crate) fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

/// The cache instances of a test: `main` (readers and writers share it, as one process),
/// `near` (a near cache read by the load), `probe` (an idle near cache), all on one handle, and
/// `other`, another process's cache on a handle of its own, which writes what `near` reads.
pub(crate) struct Caches {
    pub(crate) main: Cache,
    pub(crate) near: Cache,
    pub(crate) probe: Cache,
    pub(crate) other: Cache,
}

impl Caches {
    /// Fail-closed caches (errors are shown, to be checked), under `keys`.
    pub(crate) fn new(redis: &Redis, other: &Redis, keys: &KeySpace) -> Self {
        let build = |redis: &Redis, near: bool| {
            let builder = Cache::builder(redis.clone(), keys)
                .failure_policy(FailurePolicy::FailClosed)
                .ttl(Duration::from_secs(60));
            let builder = if near {
                builder.near_cache(NearCacheConfig::new(100).ttl(Duration::from_secs(60)))
            } else {
                builder
            };
            builder.build().unwrap()
        };
        Self {
            main: build(redis, false),
            near: build(redis, true),
            probe: build(redis, true),
            other: build(other, false),
        }
    }

    /// Waits until both near caches track.
    pub(crate) async fn tracking(&self) {
        wait_until("near cache tracking", Duration::from_secs(10), || async {
            [&self.near, &self.probe]
                .iter()
                .all(|c| c.near_cache_stats().unwrap().tracking)
        })
        .await;
    }
}

/// An acknowledged write: of an entry's version, or of [`TAG`]'s epoch.
#[derive(Debug, Clone)]
struct Write {
    name: &'static str,
    started: Instant,
    acked: Instant,
    version: u64,
}

/// A read and what it returned (`None`: a miss).
#[derive(Debug, Clone)]
struct Read {
    name: &'static str,
    near: bool,
    started: Instant,
    item: Option<Item>,
}

#[derive(Debug, Default)]
struct Record {
    writes: Mutex<Vec<Write>>,
    reads: Mutex<Vec<Read>>,
}

impl Record {
    fn write(&self, name: &'static str, started: Instant, version: u64) {
        let acked = Instant::now();
        self.writes.lock().unwrap().push(Write {
            name,
            started,
            acked,
            version,
        });
    }

    fn read(&self, name: &'static str, near: bool, started: Instant, item: Option<Item>) {
        self.reads.lock().unwrap().push(Read {
            name,
            near,
            started,
            item,
        });
    }
}

/// The running load.
pub(crate) struct Load {
    pub(crate) log: Arc<CallLog>,
    created: Instant,
    pub(crate) source: Arc<Source>,
    record: Arc<Record>,
    tasks: Vec<JoinHandle<()>>,
}

/// What [`Load::stop`] found besides the error window.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub(crate) reads: usize,
    pub(crate) writes: usize,
    /// Reads that returned a version older than a write acknowledged before the switch (the
    /// write was lost with the old master), and the entries they were of.
    pub(crate) behind_lost: usize,
    pub(crate) lost_entries: BTreeSet<&'static str>,
}

impl Load {
    /// Starts readers and writers on `caches`.
    pub(crate) fn start(caches: &Caches) -> Self {
        let created = Instant::now();
        let log = CallLog::new(CALL_BOUND);
        let source = Arc::new(Source::default());
        let record = Arc::new(Record::default());
        let mut load = Self {
            log,
            created,
            source,
            record,
            tasks: Vec::new(),
        };
        for task in 0..READERS {
            load.spawn(caches.main.clone(), move |ctx, n| {
                Box::pin(ctx.main_read(task + n))
            });
        }
        load.spawn(caches.main.clone(), |ctx, n| Box::pin(ctx.plain_write(n)));
        load.spawn(caches.main.clone(), |ctx, n| Box::pin(ctx.tagged_write(n)));
        load.spawn(caches.near.clone(), |ctx, n| Box::pin(ctx.near_read(n)));
        load.spawn(caches.other.clone(), |ctx, n| Box::pin(ctx.near_write(n)));
        load
    }

    fn spawn<F>(&mut self, cache: Cache, step: F)
    where
        F: for<'a> Fn(&'a Ctx, usize) -> futures_util::future::BoxFuture<'a, ()>
            + Send
            + Sync
            + 'static,
    {
        let ctx = Ctx {
            cache,
            log: self.log.clone(),
            source: self.source.clone(),
            record: self.record.clone(),
        };
        self.tasks.push(tokio::spawn(async move {
            for n in 0.. {
                if ctx.log.stopped() {
                    return;
                }
                step(&ctx, n).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }

    /// Waits for `n` more successful calls.
    pub(crate) async fn succeeds(&self, n: usize, what: &str) {
        self.log.wait_successes(n, what).await;
    }

    /// Waits for `n` more successful calls, and one of every kind started after `since`.
    pub(crate) async fn recovers(&self, n: usize, since: Instant, what: &str) {
        self.succeeds(n, what).await;
        // Calls count their start from the log's creation, just after `created`: measured from
        // here, `since` is a little later, which only makes the wait stricter.
        let since = since.saturating_duration_since(self.created);
        wait_until(what, Duration::from_secs(20), || async {
            let calls = self.log.calls();
            let ops: BTreeSet<&str> = calls.iter().map(|c| c.op).collect();
            ops.iter().all(|op| {
                calls
                    .iter()
                    .any(|c| c.op == *op && c.at >= since && c.error.is_none())
            })
        })
        .await;
    }

    /// Stops the load, checks the calls ([`CallLog::check`]) and the record: reads after
    /// `durable_from`-started writes see them; reads behind writes acknowledged before `event`
    /// are counted.
    pub(crate) async fn stop(
        self,
        what: &str,
        event: Instant,
        settled: Instant,
        durable_from: Instant,
    ) -> (ErrorWindow, Verdict) {
        self.log.stop();
        for task in self.tasks {
            task.await.expect("load task panicked");
        }
        let window = self.log.check(what, event, settled);
        let verdict = check_record(&self.record, event, durable_from);
        eprintln!(
            "{what}: {} reads, {} writes checked, {} loads; {} reads behind a write lost with \
             the old master (entries {:?})",
            verdict.reads,
            verdict.writes,
            self.source.loads(),
            verdict.behind_lost,
            verdict.lost_entries
        );
        (window, verdict)
    }
}

/// Checks every read against the writes acknowledged before it began; panics with the first
/// violations.
fn check_record(record: &Record, event: Instant, durable_from: Instant) -> Verdict {
    let writes = record.writes.lock().unwrap().clone();
    let reads = record.reads.lock().unwrap().clone();
    // Per name: acknowledged writes by acknowledgement time, with the running maximum.
    let floors = |keep: &dyn Fn(&Write) -> bool| {
        let mut by_name: BTreeMap<&'static str, Vec<(Instant, u64)>> = BTreeMap::new();
        for w in writes.iter().filter(|w| keep(w)) {
            by_name
                .entry(w.name)
                .or_default()
                .push((w.acked, w.version));
        }
        for acks in by_name.values_mut() {
            acks.sort_by_key(|(at, _)| *at);
            let mut max = 0;
            for (_, v) in acks.iter_mut() {
                max = max.max(*v);
                *v = max;
            }
        }
        by_name
    };
    let durable = floors(&|w| w.started >= durable_from);
    let before = floors(&|w| w.acked < event);
    let floor = |table: &BTreeMap<&str, Vec<(Instant, u64)>>, name: &str, at: Instant| {
        table.get(name).map_or(0, |acks| {
            let n = acks.partition_point(|(acked, _)| *acked < at);
            if n == 0 { 0 } else { acks[n - 1].1 }
        })
    };
    let mut violations = Vec::new();
    let mut verdict = Verdict {
        reads: reads.len(),
        writes: writes.len(),
        behind_lost: 0,
        lost_entries: BTreeSet::new(),
    };
    for r in &reads {
        if let Some(item) = &r.item
            && !item.intact(r.name)
        {
            violations.push(format!("{}: a broken value {item:?}", r.name));
            continue;
        }
        // A near cache may lag a remote write by the push delivery.
        let seen = if r.near {
            r.started.checked_sub(NEAR_LAG).unwrap_or(r.started)
        } else {
            r.started
        };
        let (version, epoch) = r.item.as_ref().map_or((0, 0), |i| (i.version, i.epoch));
        let needs = floor(&durable, r.name, seen);
        // A miss of a plain read is allowed (deleted, tag-invalidated); a near read of an
        // entry that was written never misses.
        if (r.item.is_some() || r.near) && version < needs {
            violations.push(format!(
                "{}: read version {version} at {:?} after version {needs} was acknowledged",
                r.name,
                r.started.saturating_duration_since(durable_from)
            ));
        }
        if r.item.is_some() && TAGGED.contains(&r.name) {
            let needs = floor(&durable, TAG, seen);
            if epoch < needs {
                violations.push(format!(
                    "{}: read tag epoch {epoch} after the invalidation to {needs}",
                    r.name
                ));
            }
        }
        let lost = floor(&before, r.name, seen.min(event));
        if r.started >= event && (r.item.is_some() || r.near) && version < lost {
            verdict.behind_lost += 1;
            verdict.lost_entries.insert(r.name);
        }
    }
    assert!(
        violations.is_empty(),
        "{} of {} reads broke a promise, first: {:#?}",
        violations.len(),
        reads.len(),
        &violations[..violations.len().min(10)]
    );
    verdict
}

/// What one load task works with.
struct Ctx {
    cache: Cache,
    log: Arc<CallLog>,
    source: Arc<Source>,
    record: Arc<Record>,
}

impl Ctx {
    /// `get_or_load` (plain or tagged) or `get` of a main entry.
    async fn main_read(&self, n: usize) {
        let names: Vec<&'static str> = PLAIN.iter().chain(&TAGGED).copied().collect();
        let name = names[n % names.len()];
        let tagged = TAGGED.contains(&name);
        let started = Instant::now();
        let result = match (n / names.len() % 3, tagged) {
            (2, _) => self.log.call("get", self.cache.get::<Item>(name)).await,
            (_, false) => {
                let load = self.cache.get_or_load(name, || self.source.load(name));
                self.log.call("get_or_load", load).await
            }
            (_, true) => {
                let opts = EntryOptions::new().tag(TAG);
                let load = self
                    .cache
                    .get_or_load_with(name, &opts, || self.source.load(name));
                self.log.call("get_or_load tagged", load).await
            }
        };
        if let Some(Ok(item)) = result {
            self.record.read(name, false, started, item);
        }
    }

    /// Writes of untagged entries, every kind in turn.
    async fn plain_write(&self, n: usize) {
        let name = PLAIN[n % PLAIN.len()];
        let started = Instant::now();
        let kind = n / PLAIN.len() % 4;
        let written = match kind {
            0 | 1 => {
                let (op, mode) = match kind {
                    0 => ("write_through invalidate", WriteMode::Invalidate),
                    _ => ("write_through update", WriteMode::Update),
                };
                let write = self.cache.write_through(name, mode, || async {
                    Ok::<_, std::io::Error>(self.source.bump(name))
                });
                self.log.call(op, write).await.and_then(Result::ok)
            }
            2 => {
                let item = self.source.bump(name);
                let set = self.cache.set(name, &item);
                self.log
                    .call("set", set)
                    .await
                    .and_then(Result::ok)
                    .map(|()| item)
            }
            _ => {
                let item = self.source.bump(name);
                let delete = self.cache.delete(name);
                self.log
                    .call("delete", delete)
                    .await
                    .and_then(Result::ok)
                    .map(|_| item)
            }
        };
        if let Some(item) = written {
            self.record.write(name, started, item.version);
        }
    }

    /// Tagged sets, then an invalidation of the tag, in turn.
    async fn tagged_write(&self, n: usize) {
        let started = Instant::now();
        if n % 3 == 2 {
            let epoch = self.source.epoch.fetch_add(1, Ordering::SeqCst) + 1;
            let invalidate = self.cache.invalidate_tag(TAG);
            if let Some(Ok(())) = self.log.call("invalidate_tag", invalidate).await {
                self.record.write(TAG, started, epoch);
            }
            return;
        }
        let name = TAGGED[n % 3];
        let item = self.source.bump(name);
        let opts = EntryOptions::new().tag(TAG);
        let set = self.cache.set_with(name, &item, &opts);
        if let Some(Ok(())) = self.log.call("set tagged", set).await {
            self.record.write(name, started, item.version);
        }
    }

    /// A `get` through the near cache.
    async fn near_read(&self, n: usize) {
        let name = NEAR[n % NEAR.len()];
        let started = Instant::now();
        if let Some(Ok(item)) = self
            .log
            .call("near get", self.cache.get::<Item>(name))
            .await
        {
            self.record.read(name, true, started, item);
        }
    }

    /// A `set` by the other process of what the near cache reads.
    async fn near_write(&self, n: usize) {
        let name = NEAR[n % NEAR.len()];
        let item = self.source.bump(name);
        let started = Instant::now();
        let set = self.cache.set(name, &item);
        if let Some(Ok(())) = self.log.call("near set", set).await {
            self.record.write(name, started, item.version);
        }
        // Writes are rarer than reads, as a near cache assumes.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Eight callers on each of two processes' caches ask for a cold entry at once: the loader
/// runs once (in-process single flight, then the refresh lease). Returns the loads.
pub(crate) async fn coalesced_loads(a: &Cache, b: &Cache, name: &str) -> usize {
    let loads = AtomicUsize::new(0);
    let counter = &loads;
    let load = move || async move {
        counter.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok::<_, std::io::Error>(Some(Item::new(name, 1, 0)))
    };
    let callers = (0..16).map(|i| {
        let cache = if i % 2 == 0 { a } else { b };
        cache.get_or_load(name, load)
    });
    for got in join_all(callers).await {
        assert_eq!(got.unwrap(), Some(Item::new(name, 1, 0)));
    }
    loads.load(Ordering::SeqCst)
}

/// Caches for [`coalesced_loads`]: two processes whose callers wait for each other's load.
pub(crate) fn patient(redis: &Redis, other: &Redis, keys: &KeySpace) -> (Cache, Cache) {
    let build = |redis: &Redis| {
        Cache::builder(redis.clone(), keys)
            .failure_policy(FailurePolicy::FailClosed)
            .lease_wait(Duration::from_secs(20))
            .lease_ttl(Duration::from_secs(20))
            .build()
            .unwrap()
    };
    (build(redis), build(other))
}
