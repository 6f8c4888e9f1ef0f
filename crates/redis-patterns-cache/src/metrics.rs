//! What a cache records through [`redis_core::metrics`]: the documented table ([`METRICS`]) and
//! the handles a cache registers once, when it is built. The read path only increments stored
//! handles, picked by index.

use redis_core::metrics::{Counter, Description, Histogram, Kind, result_label};

use crate::error::{Error, Result};

/// Every metric a cache records. Pass it to [`redis_core::metrics::describe`] to give an
/// exporter the help texts; the `name` label is the cache's
/// [`CacheBuilder::name`](crate::CacheBuilder::name).
pub const METRICS: &[Description] = &[
    Description {
        name: "redis_patterns_cache_requests_total",
        kind: Kind::Counter,
        labels: &["name", "result"],
        help: "Reads (get and get_or_load), by what they served: hit, miss, negative_hit or stale.",
    },
    Description {
        name: "redis_patterns_cache_near_hits_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Reads served from the near cache, without a round trip.",
    },
    Description {
        name: "redis_patterns_cache_loads_total",
        kind: Kind::Counter,
        labels: &["name", "result"],
        help: "Loader runs, by result (ok or error).",
    },
    Description {
        name: "redis_patterns_cache_load_duration_seconds",
        kind: Kind::Histogram,
        labels: &["name"],
        help: "Duration of loader runs.",
    },
    Description {
        name: "redis_patterns_cache_coalesced_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Callers that joined a load already in flight in this process instead of loading.",
    },
    Description {
        name: "redis_patterns_cache_lease_waits_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Waits for another process's load (its refresh lease held, nothing to serve).",
    },
    Description {
        name: "redis_patterns_cache_early_refreshes_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Probabilistic early refreshes (XFetch) of a fresh entry started.",
    },
    Description {
        name: "redis_patterns_cache_corrupt_entries_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Entries that did not decode and were removed.",
    },
    Description {
        name: "redis_patterns_cache_near_invalidations_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Keys invalidated in the near cache by a tracking push from the server.",
    },
    Description {
        name: "redis_patterns_cache_near_flushes_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Near-cache flushes: tracking lost or (re-)established, or a flush push.",
    },
];

/// What a read served: the `result` label of `redis_patterns_cache_requests_total` and the
/// `result` field of the `cache.get` and `cache.get_or_load` spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// A fresh value (from Redis or the near cache).
    Hit,
    /// Nothing served from the cache: no entry, a stale or tag-invalidated one for `get`, a
    /// load, or Redis unavailable.
    Miss,
    /// A fresh "not found" entry.
    NegativeHit,
    /// A value past its freshness, served while another caller refreshes it or because the
    /// loader failed.
    Stale,
}

impl Read {
    const ALL: [Self; 4] = [Self::Hit, Self::Miss, Self::NegativeHit, Self::Stale];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::NegativeHit => "negative_hit",
            Self::Stale => "stale",
        }
    }
}

/// The handles of one cache (one per label combination), shared by its clones.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// Indexed by [`Read`].
    requests: [Counter; 4],
    pub(crate) near_hits: Counter,
    /// `[ok, error]`.
    loads: [Counter; 2],
    pub(crate) load_duration: Histogram,
    pub(crate) coalesced: Counter,
    pub(crate) lease_waits: Counter,
    pub(crate) early_refreshes: Counter,
    pub(crate) corrupt_entries: Counter,
    pub(crate) near: NearMetrics,
}

/// The handles the near cache and its tracking task record on.
#[derive(Debug, Clone, Default)]
pub(crate) struct NearMetrics {
    pub(crate) invalidations: Counter,
    pub(crate) flushes: Counter,
}

impl Metrics {
    /// Registers every handle of the cache called `name`.
    pub(crate) fn new(name: &str) -> Self {
        let named = |metric: &'static str| Counter::new(metric, &[("name", name)]);
        Self {
            requests: Read::ALL.map(|read| {
                Counter::new(
                    "redis_patterns_cache_requests_total",
                    &[("name", name), ("result", read.label())],
                )
            }),
            near_hits: named("redis_patterns_cache_near_hits_total"),
            loads: [true, false].map(|ok| {
                Counter::new(
                    "redis_patterns_cache_loads_total",
                    &[("name", name), ("result", result_label(ok))],
                )
            }),
            load_duration: Histogram::new(
                "redis_patterns_cache_load_duration_seconds",
                &[("name", name)],
            ),
            coalesced: named("redis_patterns_cache_coalesced_total"),
            lease_waits: named("redis_patterns_cache_lease_waits_total"),
            early_refreshes: named("redis_patterns_cache_early_refreshes_total"),
            corrupt_entries: named("redis_patterns_cache_corrupt_entries_total"),
            near: NearMetrics {
                invalidations: named("redis_patterns_cache_near_invalidations_total"),
                flushes: named("redis_patterns_cache_near_flushes_total"),
            },
        }
    }

    /// Counts one read and records what it served on its operation's span.
    #[inline]
    pub(crate) fn read(&self, read: Read, span: &tracing::Span) {
        self.requests[read as usize].increment(1);
        // A disabled span would still look the field up by name.
        if !span.is_disabled() {
            span.record("result", read.label());
        }
    }

    /// Counts one loader run.
    #[inline]
    pub(crate) fn load(&self, ok: bool) {
        self.loads[usize::from(!ok)].increment(1);
    }
}

/// Checks a cache's name: 1 to 64 characters of `[A-Za-z0-9_.-]`.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    redis_core::metrics::check_name(name).map_err(Error::invalid_config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_label_values() {
        assert!(validate_name("default").is_ok());
        assert!(validate_name("products.v2-eu_1").is_ok());
        assert!(validate_name(&"a".repeat(64)).is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name(&"a".repeat(65)).is_err());
        assert!(validate_name("user:42").is_err());
        assert!(validate_name("café").is_err());
    }

    #[test]
    fn reads_index_their_counters() {
        for (i, read) in Read::ALL.into_iter().enumerate() {
            assert_eq!(read as usize, i);
        }
        let metrics = Metrics::new("default");
        metrics.read(Read::Stale, &tracing::Span::none());
        metrics.load(false);
    }
}
