//! What the patterns report: metrics (through a process-wide `metrics-util` debugging recorder)
//! and span fields (through a process-wide `tracing` subscriber), captured for assertions.
//!
//! Both are installed once per process. Tests that read them take [`observe`], which also
//! serialises them, so parallel tests in one process never see each other's recordings.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex, OnceLock},
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use redis_core::metrics::{Description, Kind};
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};

/// One metric as recorded since the previous [`Observed::take_metrics`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Label names and values, in recording order.
    pub labels: Vec<(String, String)>,
    /// Counter: the increments; gauge: its change since the previous take (the recorder sets
    /// gauges back to zero when it is read); histogram: how many values were recorded.
    pub value: f64,
}

/// The samples of one [`Observed::take_metrics`].
#[derive(Debug, Clone, Default)]
pub struct Metrics(pub Vec<Sample>);

/// One span as created, with every field recorded on it (at creation or later).
#[derive(Debug, Clone, Default)]
pub struct SpanRecord {
    /// Span name.
    pub name: String,
    /// Field names and values (`Debug` text).
    pub fields: Vec<(String, String)>,
    /// The name of the span it was created in (explicitly, or the current one), `None` for a
    /// root span.
    pub parent: Option<String>,
}

/// Access to what was recorded; holding it keeps other tests of this process from recording.
#[derive(Debug)]
pub struct Observed {
    _serial: tokio::sync::MutexGuard<'static, ()>,
    snapshotter: &'static Snapshotter,
    spans: &'static Arc<Mutex<Vec<SpanRecord>>>,
}

struct Installed {
    snapshotter: Snapshotter,
    spans: Arc<Mutex<Vec<SpanRecord>>>,
}

fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        // Fails only when another recorder is already installed: then nothing is captured and
        // the first assertion says so.
        let _ = recorder.install();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let _ = tracing::subscriber::set_global_default(SpanCollector {
            spans: spans.clone(),
            metadata: Mutex::new(std::collections::HashMap::new()),
            next: std::sync::atomic::AtomicU64::new(1),
        });
        Installed { snapshotter, spans }
    })
}

/// Installs the recorder and the span collector (once per process), waits for other observing
/// tests of this process, and clears what earlier code recorded.
pub async fn observe() -> Observed {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let serial = SERIAL.lock().await;
    let installed = installed();
    let observed = Observed {
        _serial: serial,
        snapshotter: &installed.snapshotter,
        spans: &installed.spans,
    };
    observed.take_metrics();
    observed.take_spans();
    observed
}

impl Observed {
    /// The metrics recorded since the previous call (the recorder is drained).
    pub fn take_metrics(&self) -> Metrics {
        let samples = self
            .snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let (kind, value) = match value {
                    DebugValue::Counter(n) => (Kind::Counter, n as f64),
                    DebugValue::Gauge(v) => (Kind::Gauge, v.into_inner()),
                    DebugValue::Histogram(values) => (Kind::Histogram, values.len() as f64),
                };
                let (_, key) = key.into_parts();
                Sample {
                    name: key.name().to_owned(),
                    kind,
                    labels: key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect(),
                    value,
                }
            })
            .collect();
        Metrics(samples)
    }

    /// The spans created (and fields recorded) since the previous call.
    pub fn take_spans(&self) -> Vec<SpanRecord> {
        std::mem::take(&mut *self.spans.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Metrics {
    /// The sum of `name`'s values over samples whose labels include every `(name, value)` of
    /// `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name && has_labels(s, labels))
            .map(|s| s.value)
            .sum()
    }

    /// Panics unless `name` was recorded (a non-zero count, or any gauge value) with `labels`.
    #[track_caller]
    pub fn assert_recorded(&self, name: &str, labels: &[(&str, &str)]) {
        let recorded = self.0.iter().any(|s| {
            s.name == name && has_labels(s, labels) && (s.value != 0.0 || s.kind == Kind::Gauge)
        });
        assert!(
            recorded,
            "{name} {labels:?} was not recorded; recorded:\n{}",
            self.dump()
        );
    }

    /// Panics unless every sample named in `tables` carries exactly the documented label names
    /// and kind, and every `redis_patterns_` sample is documented in one of them.
    #[track_caller]
    pub fn assert_documented(&self, tables: &[&[Description]]) {
        for sample in &self.0 {
            if !sample.name.starts_with("redis_patterns_") {
                continue;
            }
            let Some(doc) = tables
                .iter()
                .flat_map(|t| t.iter())
                .find(|d| d.name == sample.name)
            else {
                panic!("{} is recorded but not documented", sample.name);
            };
            let mut names: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
            let mut documented = doc.labels.to_vec();
            names.sort_unstable();
            documented.sort_unstable();
            assert_eq!(names, documented, "labels of {}", sample.name);
            assert_eq!(sample.kind, doc.kind, "kind of {}", sample.name);
        }
    }

    /// Panics when a label value contains any of `needles` (keys, identities, session ids).
    #[track_caller]
    pub fn assert_no_label_contains(&self, needles: &[&str]) {
        for sample in &self.0 {
            for (label, value) in &sample.labels {
                for needle in needles {
                    assert!(
                        !value.contains(needle),
                        "label {label}={value:?} of {} contains {needle:?}",
                        sample.name
                    );
                }
            }
        }
    }

    /// Every sample, one per line.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for s in &self.0 {
            let _ = writeln!(
                out,
                "  {} {:?} {:?} = {}",
                s.name, s.kind, s.labels, s.value
            );
        }
        out
    }
}

fn has_labels(sample: &Sample, labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|(k, v)| sample.labels.iter().any(|(sk, sv)| sk == k && sv == v))
}

/// Panics when a span field value (or span name) contains any of `needles`.
#[track_caller]
pub fn assert_no_field_contains(spans: &[SpanRecord], needles: &[&str]) {
    for span in spans {
        for needle in needles {
            assert!(
                !span.name.contains(needle),
                "span name {:?} contains {needle:?}",
                span.name
            );
            for (field, value) in &span.fields {
                assert!(
                    !value.contains(needle),
                    "field {field}={value:?} of span {} contains {needle:?}",
                    span.name
                );
            }
        }
    }
}

/// A subscriber that keeps every span's name and fields (and nothing else), and knows the
/// current span of each thread so `Span::current().record(..)` reaches it.
struct SpanCollector {
    spans: Arc<Mutex<Vec<SpanRecord>>>,
    metadata: Mutex<std::collections::HashMap<u64, &'static tracing::Metadata<'static>>>,
    next: std::sync::atomic::AtomicU64,
}

thread_local! {
    /// The spans entered on this thread, innermost last.
    static ENTERED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct FieldText<'a>(&'a mut Vec<(String, String)>);

impl Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl SpanCollector {
    fn with_spans(&self, f: impl FnOnce(&mut Vec<SpanRecord>)) {
        f(&mut self.spans.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl Subscriber for SpanCollector {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut fields = Vec::new();
        attrs.record(&mut FieldText(&mut fields));
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let parent = if attrs.is_contextual() {
            ENTERED.with(|entered| entered.borrow().last().copied())
        } else {
            attrs.parent().map(Id::into_u64)
        };
        let mut metadata = self.metadata.lock().unwrap_or_else(|e| e.into_inner());
        let parent = parent.and_then(|p| metadata.get(&p).map(|m| m.name().to_owned()));
        metadata.insert(id, attrs.metadata());
        drop(metadata);
        self.with_spans(|spans| {
            spans.push(SpanRecord {
                name: attrs.metadata().name().to_owned(),
                fields,
                parent,
            });
        });
        Id::from_u64(id)
    }

    fn record(&self, _span: &Id, values: &Record<'_>) {
        let mut fields = Vec::new();
        values.record(&mut FieldText(&mut fields));
        // Values recorded later are kept under a span of their own name: the assertion only
        // needs every value, not which span it belongs to.
        self.with_spans(|spans| {
            spans.push(SpanRecord {
                name: "(recorded)".to_owned(),
                fields,
                parent: None,
            });
        });
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &tracing::Event<'_>) {}

    fn enter(&self, span: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered.iter().rposition(|id| *id == span.into_u64()) {
                entered.remove(at);
            }
        });
    }

    fn current_span(&self) -> tracing_core::span::Current {
        let Some(id) = ENTERED.with(|entered| entered.borrow().last().copied()) else {
            return tracing_core::span::Current::none();
        };
        match self
            .metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            Some(metadata) => tracing_core::span::Current::new(Id::from_u64(id), metadata),
            None => tracing_core::span::Current::none(),
        }
    }
}
