//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, behind the `metrics` feature.
//!
//! Every pattern records through the handles of this module: [`Counter`], [`Gauge`] and
//! [`Histogram`]. With the feature on they are `metrics` handles registered with the recorder
//! installed at the time (install your exporter before building caches, limiters, locks and
//! consumers); with it off they are empty and every call compiles to nothing.
//!
//! Names follow `redis_patterns_<crate>_<what>_<unit>` and labels are bounded: algorithm,
//! outcome, source, script or command name, and the name a user gives a limiter, cache, lock or
//! consumer in its builder. Never a key, an identity, a session id or a payload. The full table is
//! in `docs/observability.md`.
//!
//! Metrics of this crate:
//!
//! | name | kind | labels | recorded by |
//! |---|---|---|---|
//! | `redis_patterns_core_commands_total` | counter | `command`, `result` | every command and pipeline sent through a [`crate::Redis`], script calls aside (they count in `scripts_total`) |
//! | `redis_patterns_core_scripts_total` | counter | `script`, `result` | every [`crate::ScriptCall`] |
//! | `redis_patterns_core_script_duration_seconds` | histogram | `script` | one [`crate::ScriptCall`] in [`latency_sampling`] (default 8) per thread |
//! | `redis_patterns_core_script_reloads_total` | counter | `script` | a script loaded again after `NOSCRIPT` |
//! | `redis_patterns_core_reconnects_total` | counter | `result` | the shared connection re-established (`ok`) or a failed attempt (`error`) |
//! | `redis_patterns_core_pool_wait_seconds` | histogram | | each checkout of a dedicated connection |
//! | `redis_patterns_core_pool_timeouts_total` | counter | | a checkout that timed out |

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

/// True when this build records metrics (core's `metrics` feature is on, whichever crate turned
/// it on): for work that only serves a metric, such as reading a clock for a histogram.
pub const ENABLED: bool = cfg!(feature = "metrics");

/// The rule for the `name` a user gives a limiter, cache, lock, store or consumer (its `name`
/// label): 1 to 64 characters of `A-Z a-z 0-9 _ . -`, so a label stays short and bounded.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a `name` label against the rule; the error is a sentence for an `InvalidConfig`.
///
/// ```
/// use redis_core::metrics::check_name;
/// assert!(check_name("checkout.v2-eu_1").is_ok());
/// assert!(check_name("user:42").is_err());
/// assert!(check_name("").is_err());
/// assert!(check_name(&"a".repeat(65)).is_err());
/// ```
pub fn check_name(name: &str) -> Result<(), String> {
    let fits = (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if fits {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '_', '.' and '-'"
        ))
    }
}

/// By default one script call in this many, per thread, records its latency in
/// `redis_patterns_core_script_duration_seconds` (see [`set_latency_sampling`]).
pub const DEFAULT_LATENCY_SAMPLING: NonZeroU32 = NonZeroU32::new(8).unwrap();

static LATENCY_SAMPLING: AtomicU32 = AtomicU32::new(DEFAULT_LATENCY_SAMPLING.get());

/// Records the latency of one script call in `every`, per thread, in
/// `redis_patterns_core_script_duration_seconds` (default [`DEFAULT_LATENCY_SAMPLING`]; `1`
/// records every call). Every call still counts in `redis_patterns_core_scripts_total`, which is
/// the one to read for rates: the histogram's `_count` is the number of samples.
///
/// A latency sample costs two clock readings and a write to a histogram that every thread
/// shares, several times what counting the call costs on a busy multi-core service; a
/// distribution needs far fewer samples than there are calls to keep its quantiles.
///
/// ```
/// use std::num::NonZeroU32;
/// redis_core::metrics::set_latency_sampling(NonZeroU32::MIN); // every call
/// assert_eq!(redis_core::metrics::latency_sampling().get(), 1);
/// ```
pub fn set_latency_sampling(every: NonZeroU32) {
    LATENCY_SAMPLING.store(every.get(), Ordering::Relaxed);
}

/// One script call in this many, per thread, records its latency (see
/// [`set_latency_sampling`]).
pub fn latency_sampling() -> NonZeroU32 {
    NonZeroU32::new(LATENCY_SAMPLING.load(Ordering::Relaxed)).unwrap_or(NonZeroU32::MIN)
}

/// Whether this call records its latency: the first call on each thread does, then one in
/// [`latency_sampling`]. A per-thread count, so deciding writes to no shared memory.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
#[inline]
pub(crate) fn sample_latency() -> bool {
    thread_local! {
        static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    CALLS.with(|calls| {
        let n = calls.get();
        let every = LATENCY_SAMPLING.load(Ordering::Relaxed).max(1);
        calls.set(if n + 1 >= every { 0 } else { n + 1 });
        n == 0
    })
}

/// `ok` or `error`: the `result` label of commands and scripts.
pub fn result_label(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

/// A monotonically increasing count.
#[derive(Clone)]
pub struct Counter {
    #[cfg(feature = "metrics")]
    inner: metrics::Counter,
}

/// A value that goes up and down (permits in use, consumer lag).
#[derive(Clone)]
pub struct Gauge {
    #[cfg(feature = "metrics")]
    inner: metrics::Gauge,
}

/// A distribution of values (latencies in seconds, attempts per acquisition).
#[derive(Clone)]
pub struct Histogram {
    #[cfg(feature = "metrics")]
    inner: metrics::Histogram,
}

macro_rules! debug_as_name {
    ($($ty:ident),*) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($ty))
            }
        }
    )*};
}
debug_as_name!(Counter, Gauge, Histogram);

macro_rules! noop_default {
    ($($ty:ident),*) => {$(
        /// A handle that records nothing (the `metrics` facade's no-op).
        impl Default for $ty {
            fn default() -> Self {
                Self {
                    #[cfg(feature = "metrics")]
                    inner: metrics::$ty::noop(),
                }
            }
        }
    )*};
}
noop_default!(Counter, Gauge, Histogram);

#[cfg(feature = "metrics")]
fn key(name: &'static str, labels: &[(&'static str, &str)]) -> metrics::Key {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|(k, v)| metrics::Label::new(*k, (*v).to_owned()))
        .collect();
    metrics::Key::from_parts(name, labels)
}

#[cfg(feature = "metrics")]
fn metadata() -> metrics::Metadata<'static> {
    static METADATA: metrics::Metadata<'static> =
        metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
    METADATA.clone()
}

impl Counter {
    /// Registers `name` with `labels` on the installed recorder.
    #[allow(unused_variables)]
    pub fn new(name: &'static str, labels: &[(&'static str, &str)]) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            inner: metrics::with_recorder(|r| r.register_counter(&key(name, labels), &metadata())),
        }
    }

    /// Adds `by`.
    #[inline]
    #[allow(unused_variables)]
    pub fn increment(&self, by: u64) {
        #[cfg(feature = "metrics")]
        self.inner.increment(by);
    }
}

impl Gauge {
    /// Registers `name` with `labels` on the installed recorder.
    #[allow(unused_variables)]
    pub fn new(name: &'static str, labels: &[(&'static str, &str)]) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            inner: metrics::with_recorder(|r| r.register_gauge(&key(name, labels), &metadata())),
        }
    }

    /// Sets the value.
    #[inline]
    #[allow(unused_variables)]
    pub fn set(&self, value: f64) {
        #[cfg(feature = "metrics")]
        self.inner.set(value);
    }

    /// Adds `by`.
    #[inline]
    #[allow(unused_variables)]
    pub fn increment(&self, by: f64) {
        #[cfg(feature = "metrics")]
        self.inner.increment(by);
    }

    /// Subtracts `by`.
    #[inline]
    #[allow(unused_variables)]
    pub fn decrement(&self, by: f64) {
        #[cfg(feature = "metrics")]
        self.inner.decrement(by);
    }
}

impl Histogram {
    /// Registers `name` with `labels` on the installed recorder.
    #[allow(unused_variables)]
    pub fn new(name: &'static str, labels: &[(&'static str, &str)]) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            inner: metrics::with_recorder(|r| {
                r.register_histogram(&key(name, labels), &metadata())
            }),
        }
    }

    /// Records one value.
    #[inline]
    #[allow(unused_variables)]
    pub fn record(&self, value: f64) {
        #[cfg(feature = "metrics")]
        self.inner.record(value);
    }

    /// Records a duration in seconds.
    #[inline]
    #[allow(unused_variables)]
    pub fn record_duration(&self, elapsed: Duration) {
        #[cfg(feature = "metrics")]
        self.inner.record(elapsed.as_secs_f64());
    }
}

/// Kinds of metric, for [`describe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// [`Counter`].
    Counter,
    /// [`Gauge`].
    Gauge,
    /// [`Histogram`].
    Histogram,
}

/// One documented metric: what exporters show as its help text and unit.
#[derive(Debug, Clone, Copy)]
pub struct Description {
    /// Full name (`redis_patterns_<crate>_<what>_<unit>`).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The label names it carries.
    pub labels: &'static [&'static str],
    /// One line of help.
    pub help: &'static str,
}

/// Tells the installed recorder the help text and unit of each metric in `table` (Prometheus
/// shows them as `# HELP` lines). Call once after installing the recorder; recording works
/// without it.
#[allow(unused_variables)]
pub fn describe(table: &[Description]) {
    #[cfg(feature = "metrics")]
    for d in table {
        let unit = if d.name.ends_with("_seconds") {
            Some(metrics::Unit::Seconds)
        } else if d.name.ends_with("_bytes") {
            Some(metrics::Unit::Bytes)
        } else {
            None
        };
        metrics::with_recorder(|r| match d.kind {
            Kind::Counter => r.describe_counter(d.name.into(), unit, d.help.into()),
            Kind::Gauge => r.describe_gauge(d.name.into(), unit, d.help.into()),
            Kind::Histogram => r.describe_histogram(d.name.into(), unit, d.help.into()),
        });
    }
}

/// The metrics of `redis-patterns-core`, as documented.
pub const METRICS: &[Description] = &[
    Description {
        name: "redis_patterns_core_commands_total",
        kind: Kind::Counter,
        labels: &["command", "result"],
        help: "Commands sent through a Redis handle, by command name and result.",
    },
    Description {
        name: "redis_patterns_core_scripts_total",
        kind: Kind::Counter,
        labels: &["script", "result"],
        help: "Lua script calls, by script name and result.",
    },
    Description {
        name: "redis_patterns_core_script_duration_seconds",
        kind: Kind::Histogram,
        labels: &["script"],
        help: "Latency of Lua script calls, by script name (one call in latency_sampling per thread).",
    },
    Description {
        name: "redis_patterns_core_script_reloads_total",
        kind: Kind::Counter,
        labels: &["script"],
        help: "Scripts loaded again after NOSCRIPT (server restart, failover, SCRIPT FLUSH).",
    },
    Description {
        name: "redis_patterns_core_reconnects_total",
        kind: Kind::Counter,
        labels: &["result"],
        help: "Attempts to re-establish the shared connection, by result.",
    },
    Description {
        name: "redis_patterns_core_pool_wait_seconds",
        kind: Kind::Histogram,
        labels: &[],
        help: "Time spent waiting for a dedicated connection from the pool.",
    },
    Description {
        name: "redis_patterns_core_pool_timeouts_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Checkouts of a dedicated connection that timed out.",
    },
];

/// Command counters by name and result, registered on first use of each command.
///
/// An append-only table searched front to back: a service sends a handful of distinct commands,
/// and comparing a few short byte strings costs less than hashing one. Reading takes no lock
/// (one atomic load), so concurrent callers on different cores never write to a shared cache
/// line just to find their counter; only the first use of a name takes the writers' mutex.
#[cfg(feature = "metrics")]
pub(crate) struct CommandMetrics {
    slots: Box<[std::sync::OnceLock<CommandCounters>]>,
    /// Slots filled so far; the first `len` slots are set.
    len: std::sync::atomic::AtomicUsize,
    /// Serialises appends.
    append: std::sync::Mutex<()>,
}

/// A command name and its counters by result (`ok`, `error`).
#[cfg(feature = "metrics")]
type CommandCounters = (Box<[u8]>, [Counter; 2]);

#[cfg(feature = "metrics")]
impl std::fmt::Debug for CommandMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommandMetrics")
    }
}

#[cfg(feature = "metrics")]
impl Default for CommandMetrics {
    fn default() -> Self {
        Self {
            slots: (0..Self::MAX_NAMES)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            len: std::sync::atomic::AtomicUsize::new(0),
            append: std::sync::Mutex::new(()),
        }
    }
}

#[cfg(feature = "metrics")]
impl CommandMetrics {
    /// At most this many distinct names are kept; later ones register on every use.
    const MAX_NAMES: usize = 256;

    /// Counts one command (named by its first argument) with its result.
    #[inline]
    pub(crate) fn record(&self, cmd: &redis::Cmd, ok: bool) {
        if let Some(redis::Arg::Simple(name)) = cmd.args_iter().next() {
            self.record_name(name, ok);
        }
    }

    /// Counts one command named `name` with its result.
    #[inline]
    pub(crate) fn record_name(&self, name: &[u8], ok: bool) {
        let index = usize::from(!ok);
        match self.find(name) {
            Some(counters) => counters[index].increment(1),
            None => self.register(name)[index].increment(1),
        }
    }

    /// The counters of `name`, when registered.
    #[inline]
    fn find(&self, name: &[u8]) -> Option<&[Counter; 2]> {
        let len = self.len.load(std::sync::atomic::Ordering::Acquire);
        self.slots[..len]
            .iter()
            .filter_map(std::sync::OnceLock::get)
            .find(|(known, _)| **known == *name)
            .map(|(_, counters)| counters)
    }

    #[cold]
    fn register(&self, name: &[u8]) -> [Counter; 2] {
        let label = command_label(name);
        let counters = [true, false].map(|ok| {
            Counter::new(
                "redis_patterns_core_commands_total",
                &[("command", &label), ("result", result_label(ok))],
            )
        });
        // Bounded: command names are the server's command set, and anything that does not
        // look like one is counted as `OTHER`. A poisoned mutex only means a panic elsewhere
        // while appending; the table itself stays consistent.
        let _append = self
            .append
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let len = self.len.load(std::sync::atomic::Ordering::Acquire);
        if len < Self::MAX_NAMES && self.find(name).is_none() {
            let _ = self.slots[len].set((name.into(), counters.clone()));
            self.len
                .store(len + 1, std::sync::atomic::Ordering::Release);
        }
        counters
    }
}

/// A command's name as a label: upper case, or `OTHER` for anything that is not a plausible
/// command name (so a label never carries arbitrary bytes).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn command_label(name: &[u8]) -> String {
    let plausible = !name.is_empty()
        && name.len() <= 32
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'|'));
    if plausible {
        String::from_utf8_lossy(name).to_ascii_uppercase()
    } else {
        "OTHER".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_labels_are_bounded() {
        assert_eq!(command_label(b"get"), "GET");
        assert_eq!(command_label(b"CLIENT|TRACKING"), "CLIENT|TRACKING");
        assert_eq!(command_label(b""), "OTHER");
        assert_eq!(command_label(b"user:42 {secret}"), "OTHER");
        assert_eq!(command_label(&[b'A'; 33]), "OTHER");
    }

    #[test]
    #[cfg(feature = "metrics")]
    fn command_table_registers_each_name_once_and_stays_bounded() {
        let table = CommandMetrics::default();
        for _ in 0..3 {
            table.record_name(b"GET", true);
            table.record_name(b"SET", false);
        }
        assert_eq!(table.len.load(std::sync::atomic::Ordering::Acquire), 2);
        assert!(table.find(b"GET").is_some() && table.find(b"SET").is_some());
        assert!(table.find(b"DEL").is_none());
        for i in 0..CommandMetrics::MAX_NAMES + 10 {
            table.record_name(format!("CMD{i}").as_bytes(), true);
        }
        assert_eq!(
            table.len.load(std::sync::atomic::Ordering::Acquire),
            CommandMetrics::MAX_NAMES
        );
    }

    #[test]
    fn one_call_in_every_is_sampled_per_thread() {
        // Other tests of this binary may change the global rate: run on a fresh thread and
        // read the rate once.
        std::thread::spawn(|| {
            let every = latency_sampling().get() as usize;
            let sampled = (0..every * 5).filter(|_| sample_latency()).count();
            assert_eq!(sampled, 5);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn handles_work_without_a_recorder() {
        let counter = Counter::new("redis_patterns_core_test_total", &[("a", "b")]);
        counter.increment(1);
        Gauge::new("redis_patterns_core_test", &[]).set(1.0);
        Histogram::new("redis_patterns_core_test_seconds", &[])
            .record_duration(Duration::from_millis(1));
        describe(METRICS);
        assert_eq!(result_label(true), "ok");
        assert_eq!(result_label(false), "error");
    }
}
