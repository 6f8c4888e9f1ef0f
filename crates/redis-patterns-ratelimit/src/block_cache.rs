//! The block cache: recently denied identities, answered in process until their `retry_after`
//! passes, without a round trip.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::decision::{Decision, Source};

/// Recently denied identities, answered locally until their `retry_after` passes.
pub(crate) struct BlockCache {
    capacity: usize,
    entries: Mutex<Blocked>,
}

struct Blocked {
    map: HashMap<String, (Instant, u64, Decision)>,
    /// When full: the earliest time an entry runs out, before which sweeping frees nothing.
    /// Keeps a full cache of live entries from scanning all of them on every denial.
    next_sweep: Option<Instant>,
}

/// When a cached denial runs out.
fn runs_out(since: Instant, decision: &Decision) -> Instant {
    // A wait past the end of `Instant` (not a real one) counts as run out at once.
    since
        .checked_add(decision.retry_after().unwrap_or(Duration::ZERO))
        .unwrap_or(since)
}

impl BlockCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(Blocked {
                map: HashMap::new(),
                next_sweep: None,
            }),
        }
    }

    pub(crate) fn get(&self, identity: &str, cost: u64) -> Option<Decision> {
        let mut entries = self.entries.lock().ok()?;
        let &(since, denied_cost, decision) = entries.map.get(identity)?;
        let elapsed = since.elapsed();
        if decision.retry_after().is_none_or(|retry| elapsed >= retry) {
            entries.map.remove(identity);
            return None;
        }
        (cost >= denied_cost).then(|| decision.aged(elapsed).with_source(Source::BlockCache))
    }

    pub(crate) fn insert(&self, identity: &str, cost: u64, decision: Decision) {
        self.insert_at(identity, cost, decision, Instant::now());
    }

    fn insert_at(&self, identity: &str, cost: u64, decision: Decision, now: Instant) {
        if decision.retry_after().is_none() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let entries = &mut *entries;
        if entries.map.len() >= self.capacity && !entries.map.contains_key(identity) {
            if entries.next_sweep.is_some_and(|at| now < at) {
                return;
            }
            entries
                .map
                .retain(|_, (since, _, d)| runs_out(*since, d) > now);
            entries.next_sweep = entries
                .map
                .values()
                .map(|(since, _, d)| runs_out(*since, d))
                .min();
            if entries.map.len() >= self.capacity {
                return;
            }
        }
        // Keep `next_sweep` at or before the earliest run-out of any entry.
        let out = runs_out(now, &decision);
        entries.next_sweep = Some(entries.next_sweep.map_or(out, |at| at.min(out)));
        entries
            .map
            .insert(identity.to_owned(), (now, cost, decision));
    }

    /// How many identities it holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(retry: Duration) -> Decision {
        Decision::denied(1, 0, retry, retry)
    }

    #[test]
    fn a_full_block_cache_stays_bounded_and_sweeps_only_when_an_entry_can_have_run_out() {
        let cache = BlockCache::new(2);
        let t0 = Instant::now();
        let sec = Duration::from_secs(1);
        cache.insert_at("a", 1, denied(sec), t0);
        cache.insert_at("b", 1, denied(10 * sec), t0);
        // Full of live entries: not cached, and no sweep before `a` runs out.
        cache.insert_at("c", 1, denied(sec), t0);
        let next = |cache: &BlockCache| cache.entries.lock().unwrap().next_sweep;
        assert_eq!(next(&cache), Some(t0 + sec));
        cache.insert_at("d", 1, denied(sec), t0 + sec / 2);
        assert_eq!(next(&cache), Some(t0 + sec));
        let keys = |cache: &BlockCache| {
            let mut keys: Vec<_> = cache.entries.lock().unwrap().map.keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(&cache), ["a", "b"]);
        // Once `a` has run out, the next denial takes its place.
        cache.insert_at("e", 1, denied(sec), t0 + sec);
        assert_eq!(keys(&cache), ["b", "e"]);
        // A shorter denial cached after a sweep moves the next sweep forward.
        cache.entries.lock().unwrap().map.remove("e");
        cache.insert_at("f", 1, denied(sec / 10), t0 + sec);
        assert_eq!(next(&cache), Some(t0 + sec + sec / 10));
        cache.insert_at("g", 1, denied(sec), t0 + sec + sec / 10);
        assert_eq!(keys(&cache), ["b", "g"]);
        // An identity already cached is updated even when full.
        cache.insert_at("b", 2, denied(sec), t0 + sec);
        assert_eq!(cache.entries.lock().unwrap().map["b"].1, 2);
    }
}
