//! The optional near cache: a bounded in-process copy of recently read entries, invalidated
//! per key by Redis server-assisted client tracking (`CLIENT TRACKING ON BCAST`).
//!
//! # Design
//!
//! Entries are kept as the raw bytes read from Redis (envelope and payload) and decoded on every
//! hit, so one near cache serves every value type and a hit never outlives the entry's logical
//! expiry. A dedicated RESP3 connection asks Redis for invalidation pushes on every key under
//! the cache's prefix (entries, their companions and tag versions); each push evicts that key,
//! a tag-version push evicts every entry carrying the tag, and a null push flushes everything.
//!
//! Filling races with invalidation: a reader may read the old value from Redis, a writer then
//! changes it, and the push may reach this process before the reader stores what it read. Each
//! reader therefore takes a [`Ticket`] (the global epoch and the epoch of the key's stripe)
//! *before* sending its `GET`; every invalidation bumps the key's stripe (tags, flushes and
//! tracking (re)connections bump the global epoch), and a fill whose ticket no longer matches is
//! dropped. Either the push arrives before the fill (refused) or after it (evicted).
//!
//! While the tracking connection is down, nothing is served or stored: a gap in the push stream
//! means anything may have changed. The entries are flushed when the loss is noticed and the
//! cache starts filling again once tracking is re-established on a new connection.

use std::{
    collections::{HashMap, VecDeque},
    hash::{Hash, Hasher},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis_core::{
    Endpoint, Redis,
    redis::{self, ConnectionAddr, ConnectionInfo, PushInfo, PushKind, Value, aio::ConnectionLike},
};
use tokio::sync::{mpsc, oneshot};

/// Number of per-key epoch stripes.
const STRIPES: usize = 256;
/// Name the tracking connection shows in `CLIENT LIST`.
pub(crate) const CLIENT_NAME: &str = "redis-cache-near";
/// How often the tracking connection is pinged to notice a silent loss.
const HEALTH_CHECK: Duration = Duration::from_secs(1);
/// Connect and response time-out of the tracking connection.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Settings of the optional near cache (see [`CacheBuilder::near_cache`](crate::CacheBuilder::near_cache)).
///
/// ```
/// use std::time::Duration;
/// use redis_cache::NearCacheConfig;
///
/// let near = NearCacheConfig::new(10_000).ttl(Duration::from_secs(5));
/// assert_eq!(near.capacity, 10_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearCacheConfig {
    /// Most entries kept in process; the least recently used (CLOCK) go first. At least 1.
    pub capacity: usize,
    /// Longest time an entry is served from process memory, whatever its Redis freshness: a
    /// safety net should an invalidation be lost. Defaults to 10 seconds; at least 1 ms.
    pub ttl: Duration,
}

impl NearCacheConfig {
    /// At most `capacity` entries, each served for at most 10 seconds.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ttl: Duration::from_secs(10),
        }
    }

    /// Sets the longest time an entry is served from process memory. Defaults to 10 seconds.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

/// Counters of a near cache, from [`Cache::near_cache_stats`](crate::Cache::near_cache_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearCacheStats {
    /// Entries held right now (never above the capacity).
    pub entries: usize,
    /// Reads answered from process memory.
    pub hits: u64,
    /// Reads that went to Redis while the near cache was on.
    pub misses: u64,
    /// Keys invalidated (pushes from Redis and writes of this process).
    pub invalidations: u64,
    /// Times every entry was dropped (tracking connection lost or re-established, null push).
    pub flushes: u64,
    /// Whether the tracking connection is up; while it is not, nothing is served from memory.
    pub tracking: bool,
}

/// Epochs a reader saw before its `GET`; its fill is kept only if they are unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    global: u64,
    stripe: u64,
}

struct Slot {
    raw: Arc<[u8]>,
    /// Tag version keys the entry depends on.
    tags: Box<[Box<[u8]>]>,
    expires: Instant,
    /// Identifies this slot in the CLOCK queue (a key re-inserted gets a new id).
    id: u64,
    referenced: bool,
}

struct State {
    map: HashMap<Box<[u8]>, Slot>,
    /// CLOCK order: keys with the id of the slot they were queued for. Stale ids are skipped.
    clock: VecDeque<(Box<[u8]>, u64)>,
    next_id: u64,
    global: u64,
    stripes: Box<[u64; STRIPES]>,
    tracking: bool,
}

/// The near cache shared by a cache's clones and its tracking task.
pub(crate) struct Near {
    config: NearCacheConfig,
    /// `<keys>:cache:`, the prefix Redis is asked to track.
    prefix: String,
    /// `<keys>:cache:tag:`, the prefix of tag version keys.
    tag_prefix: String,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    flushes: AtomicU64,
}

fn stripe(key: &[u8]) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    // Truncation is the point: any bits pick a stripe.
    #[allow(clippy::cast_possible_truncation)]
    let i = h.finish() as usize;
    i % STRIPES
}

impl Near {
    pub(crate) fn new(config: NearCacheConfig, prefix: String, tag_prefix: String) -> Self {
        Self {
            config,
            prefix,
            tag_prefix,
            state: Mutex::new(State {
                map: HashMap::new(),
                clock: VecDeque::new(),
                next_id: 0,
                global: 0,
                stripes: Box::new([0; STRIPES]),
                tracking: false,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; recover the data if something ever does.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The raw entry if held and within the near TTL.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        let found = {
            let mut state = self.lock();
            if !state.tracking {
                return None;
            }
            match state.map.get_mut(key.as_bytes()) {
                Some(slot) if slot.expires > Instant::now() => {
                    slot.referenced = true;
                    Some(slot.raw.clone())
                }
                Some(_) => {
                    state.map.remove(key.as_bytes());
                    None
                }
                None => None,
            }
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Drops `key` without counting an invalidation (an entry that turned stale or undecodable).
    pub(crate) fn remove(&self, key: &str) {
        self.lock().map.remove(key.as_bytes());
    }

    /// Epochs to present when storing what a `GET` sent from now on returns; `None` while
    /// tracking is down (nothing may be stored).
    pub(crate) fn ticket(&self, key: &str) -> Option<Ticket> {
        let state = self.lock();
        state.tracking.then(|| Ticket {
            global: state.global,
            stripe: state.stripes[stripe(key.as_bytes())],
        })
    }

    /// Stores an entry read from Redis under `ticket`, served until `fresh_for` or the near TTL
    /// passes, whichever comes first. Refused if anything was invalidated meanwhile.
    pub(crate) fn insert(
        &self,
        key: &str,
        ticket: Ticket,
        raw: &[u8],
        tags: Box<[Box<[u8]>]>,
        fresh_for: Duration,
    ) {
        let expires = Instant::now() + fresh_for.min(self.config.ttl);
        let raw: Arc<[u8]> = Arc::from(raw);
        let key: Box<[u8]> = key.as_bytes().into();
        let mut state = self.lock();
        let current = Ticket {
            global: state.global,
            stripe: state.stripes[stripe(&key)],
        };
        if !state.tracking || current != ticket {
            return;
        }
        let id = state.next_id;
        state.next_id = state.next_id.wrapping_add(1);
        let slot = Slot {
            raw,
            tags,
            expires,
            id,
            referenced: false,
        };
        let fresh = state.map.insert(key.clone(), slot).is_none();
        state.clock.push_back((key, id));
        if fresh {
            while state.map.len() > self.config.capacity {
                if !state.evict_one() {
                    break;
                }
            }
        }
        state.compact(self.config.capacity);
    }

    /// Evicts `key` (a write of this process, or a push). A tag version key also evicts every
    /// entry carrying that tag.
    pub(crate) fn invalidate(&self, key: &[u8]) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        let s = stripe(key);
        state.stripes[s] = state.stripes[s].wrapping_add(1);
        state.map.remove(key);
        if key.starts_with(self.tag_prefix.as_bytes()) {
            state.global = state.global.wrapping_add(1);
            state
                .map
                .retain(|_, slot| !slot.tags.iter().any(|t| **t == *key));
        }
    }

    /// Drops every entry and sets whether tracking is up; readers that started before cannot
    /// store what they read.
    pub(crate) fn flush(&self, tracking: bool) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        state.map.clear();
        state.clock.clear();
        state.global = state.global.wrapping_add(1);
        state.tracking = tracking;
    }

    pub(crate) fn stats(&self) -> NearCacheStats {
        let (entries, tracking) = {
            let state = self.lock();
            (state.map.len(), state.tracking)
        };
        NearCacheStats {
            entries,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            tracking,
        }
    }
}

impl State {
    /// One CLOCK step set: evicts the first queued entry not referenced since its last pass.
    /// False when the queue ran dry.
    fn evict_one(&mut self) -> bool {
        while let Some((key, id)) = self.clock.pop_front() {
            match self.map.get_mut(&key) {
                Some(slot) if slot.id == id => {
                    if slot.referenced {
                        slot.referenced = false;
                        self.clock.push_back((key, id));
                    } else {
                        self.map.remove(&key);
                        return true;
                    }
                }
                // Invalidated or re-inserted since it was queued.
                _ => {}
            }
        }
        false
    }

    /// Keeps the queue within a constant factor of the capacity: invalidations and re-inserts
    /// leave stale ids behind.
    fn compact(&mut self, capacity: usize) {
        if self.clock.len() <= capacity.saturating_mul(2).saturating_add(16) {
            return;
        }
        let map = &self.map;
        self.clock
            .retain(|(key, id)| map.get(key).is_some_and(|slot| slot.id == *id));
    }
}

impl std::fmt::Debug for Near {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Near")
            .field("config", &self.config)
            .field("prefix", &self.prefix)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Starts the tracking task; it ends when `stop`'s sender is dropped (the last cache clone).
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    near: Arc<Near>,
    redis: Redis,
    stop: oneshot::Receiver<()>,
) {
    runtime.spawn(track(near, redis, stop));
}

/// Turns the near cache off when the tracking task ends for any reason, including its runtime
/// shutting down while the cache lives on: without the task nobody applies invalidations.
struct Bypass(Arc<Near>);

impl Drop for Bypass {
    fn drop(&mut self) {
        self.0.flush(false);
    }
}

async fn track(near: Arc<Near>, redis: Redis, mut stop: oneshot::Receiver<()>) {
    let near = Bypass(near);
    let near = &near.0;
    let mut backoff = BACKOFF_MIN;
    loop {
        let (push_tx, mut push_rx) = mpsc::unbounded_channel();
        let connected = tokio::select! {
            _ = &mut stop => return,
            c = connect(&redis, &near.prefix, &push_tx) => c,
        };
        match connected {
            Ok(mut tracking) => {
                backoff = BACKOFF_MIN;
                near.flush(true);
                tracing::debug!(prefix = %near.prefix, "near cache tracking established");
                let reason = tokio::select! {
                    _ = &mut stop => return,
                    reason = listen(near, &mut tracking, &mut push_rx) => reason,
                };
                near.flush(false);
                tracing::warn!(%reason, "near cache tracking connection lost; near cache flushed");
            }
            Err(e) => {
                tracing::warn!(error = %e, "near cache tracking connection failed; near cache bypassed");
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The tracking connections: one to the server, or one to each master of a cluster.
struct Tracking {
    conns: Vec<redis::aio::MultiplexedConnection>,
    /// On a cluster, the masters tracked (`host:port`, sorted) and how to ask for them again.
    cluster: Option<(Vec<String>, ConnectionInfo)>,
}

/// Opens the tracking connections, pushes going to `push_tx`: to the server (or the current
/// master behind Sentinel), or to every master of a cluster.
async fn connect(
    redis: &Redis,
    prefix: &str,
    push_tx: &mpsc::UnboundedSender<PushInfo>,
) -> redis_core::Result<Tracking> {
    match redis.endpoint().await? {
        Endpoint::Single(client) => {
            let info = client.get_connection_info().clone();
            Ok(Tracking {
                conns: vec![track_node(info, prefix, push_tx.clone()).await?],
                cluster: None,
            })
        }
        Endpoint::Cluster { nodes, .. } => {
            let mut last = redis_core::Error::Unsupported("a cluster endpoint without nodes");
            for seed in nodes {
                match masters(&seed).await {
                    Ok(masters) => {
                        let mut conns = Vec::with_capacity(masters.len());
                        for (host, port) in &masters {
                            let info = at(&seed, host.clone(), *port)?;
                            conns.push(track_node(info, prefix, push_tx.clone()).await?);
                        }
                        let names = masters.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                        return Ok(Tracking {
                            conns,
                            cluster: Some((names, seed)),
                        });
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        _ => Err(redis_core::Error::Unsupported(
            "near cache on this kind of endpoint",
        )),
    }
}

/// `info` with its address replaced by `host:port` (same transport, credentials, database).
fn at(info: &ConnectionInfo, host: String, port: u16) -> redis_core::Result<ConnectionInfo> {
    let addr = match info.addr() {
        ConnectionAddr::Tcp(..) => ConnectionAddr::Tcp(host, port),
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => {
            return Err(redis_core::Error::Unsupported(
                "near cache on a cluster reached through this kind of address",
            ));
        }
    };
    Ok(info.clone().set_addr(addr))
}

/// The masters of the cluster `seed` belongs to, from `CLUSTER NODES` (sorted).
async fn masters(seed: &ConnectionInfo) -> redis_core::Result<Vec<(String, u16)>> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(IO_TIMEOUT))
        .set_response_timeout(Some(IO_TIMEOUT));
    let mut conn = redis::Client::open(seed.clone())?
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    cluster_masters(&mut conn).await
}

async fn cluster_masters(
    conn: &mut redis::aio::MultiplexedConnection,
) -> redis_core::Result<Vec<(String, u16)>> {
    let reply = conn
        .req_packed_command(redis::cmd("CLUSTER").arg("NODES"))
        .await?
        .extract_error()?;
    let text: String = redis::FromRedisValue::from_redis_value(reply)
        .map_err(|e| redis_core::Error::Redis(redis::RedisError::from(e)))?;
    let mut masters: Vec<(String, u16)> = text.lines().filter_map(parse_master).collect();
    masters.sort();
    masters.dedup();
    if masters.is_empty() {
        return Err(redis_core::Error::Unsupported("a cluster without masters"));
    }
    Ok(masters)
}

/// `host:port` of a healthy master in one `CLUSTER NODES` line
/// (`<id> <ip:port@cport[,hostname]> <flags> ...`).
fn parse_master(line: &str) -> Option<(String, u16)> {
    let mut fields = line.split(' ');
    let addr = fields.nth(1)?;
    let flags = fields.next()?;
    let flags: Vec<&str> = flags.split(',').collect();
    if !flags.contains(&"master")
        || flags
            .iter()
            .any(|f| matches!(*f, "fail" | "noaddr" | "handshake"))
    {
        return None;
    }
    let addr = addr.split(['@', ',']).next()?;
    let (host, port) = addr.rsplit_once(':')?;
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port.parse().ok()?))
}

/// Opens a RESP3 connection to one node whose pushes go to `push_tx`, and turns on broadcast
/// tracking of `prefix`.
async fn track_node(
    info: ConnectionInfo,
    prefix: &str,
    push_tx: mpsc::UnboundedSender<PushInfo>,
) -> redis_core::Result<redis::aio::MultiplexedConnection> {
    let mut conn = redis_core::connect_with_pushes(&info, push_tx, IO_TIMEOUT).await?;
    conn.req_packed_command(redis::cmd("CLIENT").arg("SETNAME").arg(CLIENT_NAME))
        .await?
        .extract_error()?;
    conn.req_packed_command(
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("BCAST")
            .arg("PREFIX")
            .arg(prefix),
    )
    .await?
    .extract_error()?;
    Ok(conn)
}

/// Applies pushes until a connection is lost or the cluster's masters change; returns why.
async fn listen(
    near: &Near,
    tracking: &mut Tracking,
    push_rx: &mut mpsc::UnboundedReceiver<PushInfo>,
) -> String {
    let mut health = tokio::time::interval(HEALTH_CHECK);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    health.tick().await;
    loop {
        tokio::select! {
            push = push_rx.recv() => match push {
                None => return "push channel closed".into(),
                Some(push) => match push.kind {
                    PushKind::Disconnection => return "disconnected".into(),
                    PushKind::Invalidate => apply(near, push.data),
                    _ => {}
                },
            },
            _ = health.tick() => {
                if let Err(reason) = check(tracking).await {
                    return reason;
                }
            }
        }
    }
}

/// Pings every tracking connection; on a cluster, also checks the masters did not change
/// (a failover or a new master: keys may now live where nobody tracks them).
async fn check(tracking: &mut Tracking) -> Result<(), String> {
    for conn in &mut tracking.conns {
        let pong = conn.req_packed_command(&redis::cmd("PING")).await;
        if let Err(e) = pong.and_then(Value::extract_error) {
            return Err(format!("health check failed: {e}"));
        }
    }
    if let (Some((known, _)), Some(conn)) = (&tracking.cluster, tracking.conns.first_mut()) {
        let now = cluster_masters(conn)
            .await
            .map_err(|e| format!("cluster topology check failed: {e}"))?;
        let now: Vec<String> = now.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        if &now != known {
            return Err(format!("cluster masters changed: {known:?} -> {now:?}"));
        }
    }
    Ok(())
}

/// One `invalidate` push: an array of keys, or null for "everything".
fn apply(near: &Near, data: Vec<Value>) {
    for value in data {
        match value {
            Value::Array(keys) => {
                for key in keys {
                    match key {
                        Value::BulkString(key) => near.invalidate(&key),
                        Value::SimpleString(key) => near.invalidate(key.as_bytes()),
                        _ => near.flush(true),
                    }
                }
            }
            _ => near.flush(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(capacity: usize) -> Near {
        let near = Near::new(
            NearCacheConfig::new(capacity),
            "p:cache:".into(),
            "p:cache:tag:".into(),
        );
        near.flush(true);
        near
    }

    fn put(near: &Near, key: &str, tags: &[&str]) {
        let ticket = near.ticket(key).unwrap();
        let tags = tags.iter().map(|t| t.as_bytes().into()).collect();
        near.insert(key, ticket, b"v", tags, Duration::from_secs(60));
    }

    #[test]
    fn the_bound_holds_and_recently_used_entries_stay() {
        let near = near(3);
        for k in ["a", "b", "c"] {
            put(&near, k, &[]);
        }
        assert!(near.get("a").is_some());
        put(&near, "d", &[]);
        assert_eq!(near.stats().entries, 3);
        assert!(near.get("a").is_some(), "a was used and stays");
        assert!(near.get("b").is_none(), "b was the oldest unused");
        for i in 0..1000 {
            put(&near, &format!("k{i}"), &[]);
            near.invalidate(format!("k{}", i / 2).as_bytes());
        }
        let state = near.lock();
        assert!(state.map.len() <= 3);
        assert!(state.clock.len() <= 2 * 3 + 16 + 1, "{}", state.clock.len());
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_dropped() {
        let near = near(10);
        let ticket = near.ticket("p:cache:{a}").unwrap();
        near.invalidate(b"p:cache:{a}");
        near.insert(
            "p:cache:{a}",
            ticket,
            b"old",
            Box::new([]),
            Duration::from_secs(60),
        );
        assert!(near.get("p:cache:{a}").is_none());

        let ticket = near.ticket("p:cache:{a}").unwrap();
        near.flush(false);
        assert!(
            near.ticket("p:cache:{a}").is_none(),
            "no ticket while tracking is down"
        );
        near.flush(true);
        near.insert(
            "p:cache:{a}",
            ticket,
            b"old",
            Box::new([]),
            Duration::from_secs(60),
        );
        assert!(
            near.get("p:cache:{a}").is_none(),
            "a fill across a gap is dropped"
        );
    }

    #[test]
    fn a_tag_version_push_evicts_the_entries_carrying_the_tag() {
        let near = near(10);
        put(&near, "p:cache:{a}", &["p:cache:tag:{t}"]);
        put(&near, "p:cache:{b}", &["p:cache:tag:{u}"]);
        near.invalidate(b"p:cache:tag:{t}");
        assert!(near.get("p:cache:{a}").is_none());
        assert!(near.get("p:cache:{b}").is_some());
    }

    #[test]
    fn cluster_nodes_lines_yield_healthy_masters() {
        let text = "\
a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:30002@40002,node-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:30003@40003 master,fail - 0 0 3 connected 10923-16383
d4 127.0.0.1:30004@40004 slave a1 0 0 1 connected
e5 :0@0 master,noaddr - 0 0 0 disconnected
f6 ::1:30006@40006 master - 0 0 6 connected";
        let masters: Vec<_> = text.lines().filter_map(parse_master).collect();
        assert_eq!(
            masters,
            vec![
                ("127.0.0.1".to_owned(), 30001),
                ("127.0.0.1".to_owned(), 30002),
                ("::1".to_owned(), 30006),
            ]
        );
    }

    #[test]
    fn the_near_ttl_caps_the_entry_freshness() {
        let near = Near::new(
            NearCacheConfig::new(10).ttl(Duration::from_millis(1)),
            "p:cache:".into(),
            "p:cache:tag:".into(),
        );
        near.flush(true);
        put(&near, "a", &[]);
        std::thread::sleep(Duration::from_millis(5));
        assert!(near.get("a").is_none());
    }
}
