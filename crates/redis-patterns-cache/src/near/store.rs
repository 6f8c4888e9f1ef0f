//! The bounded store of the near cache: raw entries under a CLOCK bound, per-key epochs that
//! refuse fills which raced an invalidation, and the counters. No I/O: the tracking task and the
//! read path drive it.

use std::{
    collections::{HashMap, VecDeque},
    hash::{Hash, Hasher},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{config::NearCacheConfig, metrics::NearMetrics};

/// Number of per-key epoch stripes.
const STRIPES: usize = 256;

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
    /// Push metrics, next to the counters of [`NearCacheStats`].
    metrics: NearMetrics,
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
            metrics: NearMetrics::default(),
        }
    }

    /// Records invalidations and flushes on `metrics` too.
    pub(crate) fn metered(mut self, metrics: NearMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// `<keys>:cache:`, the prefix Redis is asked to track.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
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

    /// Evicts `key` named by an invalidation push from the server (see [`invalidate`]).
    ///
    /// [`invalidate`]: Self::invalidate
    pub(crate) fn invalidate_pushed(&self, key: &[u8]) {
        self.metrics.invalidations.increment(1);
        self.invalidate(key);
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
        self.metrics.flushes.increment(1);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NearCacheConfig;

    /// A store under `p:cache:` with tracking up.
    fn tracked(config: NearCacheConfig) -> Near {
        let near = Near::new(config, "p:cache:".into(), "p:cache:tag:".into());
        near.flush(true);
        near
    }

    fn near(capacity: usize) -> Near {
        tracked(NearCacheConfig::new(capacity))
    }

    /// Stores `key` as a reader that took `ticket` before its `GET` would.
    fn fill(near: &Near, key: &str, ticket: Ticket, tags: &[&str]) {
        let tags = tags.iter().map(|t| t.as_bytes().into()).collect();
        near.insert(key, ticket, b"v", tags, Duration::from_secs(60));
    }

    fn put(near: &Near, key: &str, tags: &[&str]) {
        fill(near, key, near.ticket(key).unwrap(), tags);
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
        fill(&near, "p:cache:{a}", ticket, &[]);
        assert!(near.get("p:cache:{a}").is_none());

        let ticket = near.ticket("p:cache:{a}").unwrap();
        near.flush(false);
        assert!(
            near.ticket("p:cache:{a}").is_none(),
            "no ticket while tracking is down"
        );
        near.flush(true);
        fill(&near, "p:cache:{a}", ticket, &[]);
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
    fn the_near_ttl_caps_the_entry_freshness() {
        let near = tracked(NearCacheConfig::new(10).ttl(Duration::from_millis(1)));
        put(&near, "a", &[]);
        std::thread::sleep(Duration::from_millis(5));
        assert!(near.get("a").is_none());
    }
}
