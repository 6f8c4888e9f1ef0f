//! The session store through a Sentinel failover, a Cluster failover and a live slot migration,
//! under concurrent load: each task lives sessions through create, login (`rotate_for_user`,
//! which moves a session across slots), field updates, loads, rotation, and an end by
//! `destroy` or `revoke` (or none: kept to the end).
//!
//! What holds by design and is asserted: no caller sees a redirect, `TRYAGAIN` or `CROSSSLOT`;
//! every error is typed and retryable; no call hangs; every kind of call succeeds again after
//! the switch; no load ever serves a session to an id it was not given to; the absolute timeout
//! still ends sessions, by the server's clock, on the new master; every acknowledged session a
//! user has is in that user's index. During a migration nothing is lost. After a kill, writes
//! the old master acknowledged just before it died and had not replicated can be lost (a
//! session, an update, a rotation or an end undone): each is counted and printed, and must have
//! been acknowledged between a second before the kill and the end of the switch.

mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use redis_core::{KeySpace, Redis, keys::slot};
use redis_session::{Session, SessionStore};
use redis_test_support::{CallLog, MigrateOptions, TestCluster, TestSentinel};
use sha2::{Digest as _, Sha256};

/// No call may take longer, failover or not.
const CALL_BOUND: Duration = Duration::from_secs(5);
/// Load tasks per test, each with a user of its own.
const TASKS: usize = 6;
/// A short node time-out so a killed master's replica takes over within seconds.
const NODE_TIMEOUT: Duration = Duration::from_millis(1000);
/// The bucket every test user's sessions and index live in: `{0a7}`.
const BUCKET: u16 = 0x0a7;
/// The absolute timeout of the sessions that check the timeouts across the switch.
const SHORT: Duration = Duration::from_secs(6);

/// `{0a7}`: the hash tag of [`BUCKET`].
fn tag() -> String {
    format!("{BUCKET:03x}")
}

/// Users whose sessions fall in [`BUCKET`] (the store's bucket of a user without a secret: the
/// first 12 bits of `SHA-256("user" 0 <user>)`).
fn users(prefix: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|user| {
            let mut h = Sha256::new();
            h.update(b"user\0");
            h.update(user.as_bytes());
            let d = h.finalize();
            ((u16::from(d[0]) << 4) | (u16::from(d[1]) >> 4)) % 4096 == BUCKET
        })
        .take(n)
        .collect()
}

fn store(redis: &Redis, space: &str) -> SessionStore {
    SessionStore::builder(redis.clone(), &KeySpace::new(space).unwrap())
        .idle_timeout(Duration::from_secs(600))
        .absolute_timeout(Duration::from_secs(3600))
        .build()
        .unwrap()
}

/// What a session must hold.
#[derive(Debug, Clone)]
struct Expect {
    task: usize,
    n: u64,
    user: String,
    step: u64,
    /// When its last write was acknowledged.
    written: Instant,
}

/// A write acknowledged and later found undone.
#[derive(Debug)]
struct Lost {
    what: &'static str,
    written: Instant,
}

/// The acknowledged state of every session the load made.
#[derive(Default)]
struct Ledger {
    live: HashMap<String, Expect>,
    /// Ids that must not load any more (rotated away, destroyed, revoked), with when.
    dead: Vec<(String, Instant)>,
    lost: Vec<Lost>,
}

type Shared = Arc<Mutex<Ledger>>;

/// Checks what a load served against what `id` was given; counts an update undone.
fn verify(ledger: &Shared, id: &str, session: &Session) {
    let mut ledger = ledger.lock().unwrap();
    let Some(expect) = ledger.live.get(id).cloned() else {
        return;
    };
    let task: Option<usize> = session.get("task").unwrap();
    let n: Option<u64> = session.get("n").unwrap();
    assert_eq!(
        (task, n, session.user()),
        (
            Some(expect.task),
            Some(expect.n),
            Some(expect.user.as_str())
        ),
        "a session was served to an id it was not given to"
    );
    let step: u64 = session.get("step").unwrap().unwrap_or(0);
    assert!(step <= expect.step, "a step never written: {step}");
    if step < expect.step {
        ledger.lost.push(Lost {
            what: "update",
            written: expect.written,
        });
        ledger.live.get_mut(id).unwrap().step = step;
    }
}

fn lost(ledger: &Shared, id: &str, what: &'static str) {
    let mut ledger = ledger.lock().unwrap();
    if let Some(expect) = ledger.live.remove(id) {
        ledger.lost.push(Lost {
            what,
            written: expect.written,
        });
    }
}

/// An error left the session's state unknown: stop tracking it.
fn forget(ledger: &Shared, id: &str) {
    ledger.lock().unwrap().live.remove(id);
}

fn dead(ledger: &Shared, id: &str) {
    let mut ledger = ledger.lock().unwrap();
    ledger.live.remove(id);
    ledger.dead.push((id.to_owned(), Instant::now()));
}

/// The handle (`list_user`, `revoke`) of a session: its key's digest.
fn handle(store: &SessionStore, id: &str) -> String {
    let key = store.key_of(id).unwrap().unwrap();
    key.as_str().rsplit(':').next().unwrap().to_owned()
}

/// One session's life, from creation to its end. Returns when a call failed.
async fn life(
    store: &SessionStore,
    log: &CallLog,
    ledger: &Shared,
    (task, n, user): (usize, u64, &str),
) {
    let data = serde_json::json!({ "task": task, "n": n });
    let Some(Ok(anonymous)) = log.call("create", store.create(&data)).await else {
        return;
    };
    let created = Instant::now();
    let id = match log
        .call("login", store.rotate_for_user(&anonymous, user))
        .await
    {
        Some(Ok(Some(id))) => id.as_str().to_owned(),
        Some(Ok(None)) => {
            // The anonymous session was never tracked: count its loss here.
            ledger.lock().unwrap().lost.push(Lost {
                what: "session",
                written: created,
            });
            return;
        }
        _ => return,
    };
    ledger.lock().unwrap().live.insert(
        id.clone(),
        Expect {
            task,
            n,
            user: user.to_owned(),
            step: 0,
            written: Instant::now(),
        },
    );
    dead(ledger, anonymous.as_str());
    for step in 1..=2 {
        match log
            .call("update", store.set_field(&id, "step", &step))
            .await
        {
            Some(Ok(true)) => {
                let mut ledger = ledger.lock().unwrap();
                if let Some(expect) = ledger.live.get_mut(&id) {
                    expect.step = step;
                    expect.written = Instant::now();
                }
            }
            Some(Ok(false)) => return lost(ledger, &id, "session"),
            _ => return forget(ledger, &id),
        }
        match log.call("load", store.load(&id)).await {
            Some(Ok(Some(session))) => verify(ledger, &id, &session),
            Some(Ok(None)) => return lost(ledger, &id, "session"),
            _ => {}
        }
    }
    let new = match log.call("rotate", store.rotate(&id)).await {
        Some(Ok(Some(new))) => new.as_str().to_owned(),
        Some(Ok(None)) => return lost(ledger, &id, "session"),
        _ => return forget(ledger, &id),
    };
    {
        let mut guard = ledger.lock().unwrap();
        if let Some(mut expect) = guard.live.remove(&id) {
            expect.written = Instant::now();
            guard.live.insert(new.clone(), expect);
        }
        guard.dead.push((id.clone(), Instant::now()));
    }
    if let Some(Ok(old)) = log.call("load", store.load(&id)).await {
        assert!(old.is_none(), "a rotated-away id still loads");
    }
    let ended = match n % 3 {
        0 => return,
        1 => log.call("destroy", store.destroy(&new)).await,
        _ => {
            log.call("revoke", store.revoke(user, &handle(store, &new)))
                .await
        }
    };
    match ended {
        Some(Ok(true)) => dead(ledger, &new),
        Some(Ok(false)) => lost(ledger, &new, "session"),
        _ => forget(ledger, &new),
    }
}

struct Load {
    log: Arc<CallLog>,
    ledger: Shared,
    users: Vec<String>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(store: &SessionStore, users: Vec<String>) -> Self {
        let log = CallLog::new(CALL_BOUND);
        let ledger = Shared::default();
        let tasks = users
            .iter()
            .enumerate()
            .map(|(task, user)| {
                let (store, log, ledger, user) =
                    (store.clone(), log.clone(), ledger.clone(), user.clone());
                tokio::spawn(async move {
                    for n in 0.. {
                        if log.stopped() {
                            return;
                        }
                        life(&store, &log, &ledger, (task, n, &user)).await;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            })
            .collect();
        Self {
            log,
            ledger,
            users,
            tasks,
        }
    }

    /// Stops the load, checks the calls (see [`CallLog::check`]), then every session the
    /// ledger knows and every user's index. Returns the writes found undone, each of which must
    /// have been acknowledged within `at_risk` (none when it is `None`).
    async fn stop(
        self,
        what: &str,
        store: &SessionStore,
        (event, settled): (Instant, Instant),
        at_risk: Option<Duration>,
    ) -> usize {
        self.log.stop();
        for task in self.tasks {
            task.await.expect("load task panicked");
        }
        let window = self.log.check(what, event, settled);
        if at_risk.is_none() {
            assert_eq!(
                window.failed, 0,
                "{what}: a migration is invisible to callers"
            );
        }
        let (live, dead) = {
            let ledger = self.ledger.lock().unwrap();
            (ledger.live.clone(), ledger.dead.clone())
        };
        for id in live.keys() {
            match store.load(id).await.unwrap() {
                Some(session) => verify(&self.ledger, id, &session),
                None => lost(&self.ledger, id, "session"),
            }
        }
        let mut ended_undone = 0;
        for (id, when) in &dead {
            if store.load(id).await.unwrap().is_some() {
                ended_undone += 1;
                self.ledger.lock().unwrap().lost.push(Lost {
                    what: "end or rotation",
                    written: *when,
                });
            }
        }
        let mut missing_from_index = 0;
        let mut listed = 0;
        for user in &self.users {
            let handles: Vec<String> = store
                .list_user(user)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.handle)
                .collect();
            listed += handles.len();
            let ledger = self.ledger.lock().unwrap();
            missing_from_index += ledger
                .live
                .iter()
                .filter(|(id, e)| &e.user == user && !handles.contains(&handle(store, id)))
                .count();
        }
        let ledger = self.ledger.lock().unwrap();
        let mut kinds: HashMap<&str, usize> = HashMap::new();
        for lost in &ledger.lost {
            *kinds.entry(lost.what).or_default() += 1;
            let bound = at_risk.unwrap_or_default();
            assert!(
                lost.written + bound >= event && lost.written <= settled,
                "{what}: a {} acknowledged {:?} before the event was lost",
                lost.what,
                event.saturating_duration_since(lost.written)
            );
        }
        eprintln!(
            "{what}: {} sessions live, {} ended or rotated away, {listed} listed; lost: {kinds:?} \
             ({ended_undone} ends or rotations undone); {missing_from_index} live sessions \
             missing from their user's index",
            live.len(),
            dead.len()
        );
        assert_eq!(
            missing_from_index, 0,
            "{what}: an acknowledged session is missing from its user's index"
        );
        ledger.lost.len()
    }
}

/// Sessions with a short absolute timeout, created before the switch and watched through it:
/// none may load after its end (by the server's clock, on whichever master serves it), and all
/// end.
struct Short {
    watch: tokio::task::JoinHandle<usize>,
}

impl Short {
    async fn start(redis: &Redis, users: &[String]) -> Self {
        let store = SessionStore::builder(redis.clone(), &KeySpace::new("sess-fo-short").unwrap())
            .idle_timeout(SHORT)
            .absolute_timeout(SHORT)
            .touch_interval(Duration::ZERO)
            .build()
            .unwrap();
        let mut ids = Vec::new();
        for user in users {
            let id = store
                .create_for_user(user, &serde_json::json!({ "short": true }))
                .await
                .unwrap();
            let session = store.load(&id).await.unwrap().unwrap();
            assert!(session.expires_at() <= session.created_at() + SHORT);
            ids.push((id.as_str().to_owned(), session.created_at() + SHORT));
        }
        let watch = tokio::spawn(async move {
            let mut loads = 0;
            while !ids.is_empty() {
                let mut live = Vec::new();
                for (id, end) in ids {
                    let before = SystemTime::now();
                    match store.load(&id).await {
                        Ok(Some(_)) => {
                            // The server read its clock after `before`.
                            assert!(
                                before <= end + Duration::from_millis(100),
                                "a session loaded {:?} after its absolute end",
                                before.duration_since(end).unwrap_or_default()
                            );
                            loads += 1;
                            live.push((id, end));
                        }
                        Ok(None) => {}
                        // The switch under way: try again.
                        Err(_) => live.push((id, end)),
                    }
                }
                ids = live;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            loads
        });
        Self { watch }
    }

    /// Waits until every short session has ended.
    async fn ended(self, what: &str) {
        let loads = tokio::time::timeout(SHORT + Duration::from_secs(20), self.watch)
            .await
            .unwrap_or_else(|_| panic!("{what}: a short session never ended"))
            .expect("short session watch panicked");
        assert!(loads > 0, "{what}: the short sessions were watched live");
    }
}

/// Sessions created after the switch live and end as usual.
async fn fresh_after_switch(store: &SessionStore, user: &str) {
    let id = store
        .create_for_user(user, &serde_json::json!({ "fresh": 1 }))
        .await
        .unwrap();
    assert!(store.set_field(&id, "fresh", &2).await.unwrap());
    let rotated = store.rotate(&id).await.unwrap().unwrap();
    assert!(store.load(&id).await.unwrap().is_none());
    let session = store.load(&rotated).await.unwrap().unwrap();
    assert_eq!(session.get::<u64>("fresh").unwrap(), Some(2));
    assert!(
        store
            .revoke(user, &handle(store, rotated.as_str()))
            .await
            .unwrap()
    );
    assert!(store.load(&rotated).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_slot_migration_loses_no_session_and_shows_no_error() {
    let mut cluster = TestCluster::spawn_with_node_timeout(3, 0, NODE_TIMEOUT);
    let redis = cluster.redis().await;
    let store = store(&redis, "sess-fo-migrate");
    let users = users("migrating", TASKS + 1);
    // Keys to move besides the sessions, so the slot stays split for a while.
    cluster.fill_slot(&format!("{{{}}}", tag()), 40).await;
    let short = Short::start(&redis, &users[..2]).await;
    let load = Load::start(&store, users[..TASKS].to_vec());
    load.log
        .wait_successes(300, "load before the migration")
        .await;
    let event = Instant::now();
    let (there, back) = cluster
        .migrate_slot_there_and_back(tag().as_bytes(), MigrateOptions::default())
        .await;
    let settled = Instant::now();
    load.log
        .wait_successes(300, "load after the migrations")
        .await;
    eprintln!(
        "slot {} moved :{} -> :{} ({} keys, {:?}) and back ({} keys, {:?})",
        there.slot, there.from, there.to, there.keys, there.took, back.keys, back.took
    );
    assert_eq!(there.slot, slot(tag().as_bytes()));
    assert!(there.keys >= 40, "the migration moved the slot's keys");
    let lost = load
        .stop("live slot migration", &store, (event, settled), None)
        .await;
    assert_eq!(lost, 0, "a migration loses nothing");
    short.ended("live slot migration").await;
    fresh_after_switch(&store, &users[TASKS]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_kill_loses_at_most_the_last_unreplicated_writes() {
    let mut cluster = TestCluster::spawn_with_node_timeout(3, 1, NODE_TIMEOUT);
    let redis = cluster.redis().await;
    let store = store(&redis, "sess-fo-kill");
    let users = users("killed", TASKS + 1);
    let short = Short::start(&redis, &users[..2]).await;
    let load = Load::start(&store, users[..TASKS].to_vec());
    load.log.wait_successes(300, "load before the kill").await;
    let event = Instant::now();
    let promotion = cluster.kill_master_of(tag().as_bytes()).await;
    let settled = Instant::now();
    load.log
        .wait_successes(300, "load after the promotion")
        .await;
    eprintln!(
        "master :{} killed, replica :{} promoted after {:?}",
        promotion.killed, promotion.promoted, promotion.took
    );
    load.stop(
        "cluster master kill",
        &store,
        (event, settled),
        Some(Duration::from_secs(1)),
    )
    .await;
    short.ended("cluster master kill").await;
    fresh_after_switch(&store, &users[TASKS]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_kill_loses_at_most_the_last_unreplicated_writes() {
    let mut group = TestSentinel::spawn();
    let redis = group.redis().await;
    let store = store(&redis, "sess-fo-sentinel");
    let users = users("sentinel", TASKS + 1);
    let short = Short::start(&redis, &users[..2]).await;
    let load = Load::start(&store, users[..TASKS].to_vec());
    load.log.wait_successes(300, "load before the kill").await;
    let event = Instant::now();
    let switch = group.kill_master_and_wait_switch().await;
    let settled = Instant::now();
    load.log.wait_successes(300, "load after the switch").await;
    eprintln!(
        "sentinel: :{} killed, +switch-master to :{} after {:?}",
        switch.old, switch.new, switch.took
    );
    load.stop(
        "sentinel master kill",
        &store,
        (event, settled),
        Some(Duration::from_secs(1)),
    )
    .await;
    short.ended("sentinel master kill").await;
    fresh_after_switch(&store, &users[TASKS]).await;
}
