//! The metrics of the session store (feature `metrics`): events and operation latencies,
//! registered once per store and labelled by the store's name. Never a session id, a digest or
//! a user id in a label.

use std::time::Instant;

use redis_core::metrics::{Counter, Description, Histogram, Kind};
use tracing::Span;

use crate::error::{Error, Result};

const EVENTS: &str = "redis_patterns_session_events_total";
const DURATION: &str = "redis_patterns_session_operation_duration_seconds";

/// The metrics of `redis-patterns-session`, as documented. Pass it to
/// [`redis_core::metrics::describe`] to give an exporter their help texts.
pub const METRICS: &[Description] = &[
    Description {
        name: EVENTS,
        kind: Kind::Counter,
        labels: &["name", "event"],
        help: "Session store events (created, loaded, missing, rotated, revoked, destroyed), \
               tower-sessions store included.",
    },
    Description {
        name: DURATION,
        kind: Kind::Histogram,
        labels: &["name", "operation"],
        help: "Latency of session store operations (create, load, update, rotate, destroy, \
               revoke, list), tower-sessions store included.",
    },
];

/// The span of one public operation: `name` and `outcome`, plus the named fields, all but
/// `name` recorded when the operation ends.
macro_rules! session_span {
    ($redis:expr, $name:expr, $operation:literal $(, $field:ident)*) => {
        redis_core::operation_span!(
            $redis,
            $operation,
            name = %$name,
            outcome = tracing::field::Empty
            $(, $field = tracing::field::Empty)*
        )
    };
}
pub(crate) use session_span;

/// Runs `operation` inside `span` and records it with [`Metrics::finish`]. A macro rather than an
/// `async fn`, so that the operation's future is awaited where it is instead of being moved into
/// another future first (a copy of its whole state on every call of a hot path). Passed as the
/// call itself (`self.load_record(id)`), the future is built where it is awaited; a variable
/// holding it is moved once more.
macro_rules! observed {
    ($metrics:expr, $kind:expr, $span:expr, $operation:expr, $outcome:expr $(,)?) => {{
        let span: tracing::Span = $span;
        let started = $crate::metrics::Metrics::start();
        let result = redis_core::in_span!(span, $operation);
        $metrics.finish($kind, started, &span, &result, $outcome);
        result
    }};
}
pub(crate) use observed;

/// The `event` label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    Created,
    Loaded,
    /// A load (or touch) of an unknown, malformed, expired or ended session.
    Missing,
    Rotated,
    Revoked,
    Destroyed,
}

impl Event {
    const ALL: [Self; 6] = [
        Self::Created,
        Self::Loaded,
        Self::Missing,
        Self::Rotated,
        Self::Revoked,
        Self::Destroyed,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Loaded => "loaded",
            Self::Missing => "missing",
            Self::Rotated => "rotated",
            Self::Revoked => "revoked",
            Self::Destroyed => "destroyed",
        }
    }
}

/// The `operation` label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Operation {
    Create,
    Load,
    Update,
    Rotate,
    Destroy,
    Revoke,
    List,
}

impl Operation {
    const ALL: [Self; 7] = [
        Self::Create,
        Self::Load,
        Self::Update,
        Self::Rotate,
        Self::Destroy,
        Self::Revoke,
        Self::List,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Load => "load",
            Self::Update => "update",
            Self::Rotate => "rotate",
            Self::Destroy => "destroy",
            Self::Revoke => "revoke",
            Self::List => "list",
        }
    }
}

/// What a finished operation reports: the span's `outcome`, the event it counts (if any) and how
/// many (sessions revoked at once, sessions listed).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) label: &'static str,
    pub(crate) event: Option<Event>,
    pub(crate) count: u64,
}

impl Outcome {
    /// An outcome counted as one `event`.
    pub(crate) fn event(label: &'static str, event: Event) -> Self {
        Self {
            label,
            event: Some(event),
            count: 1,
        }
    }

    /// An outcome that counts no event.
    pub(crate) fn plain(label: &'static str) -> Self {
        Self {
            label,
            event: None,
            count: 0,
        }
    }

    /// `count` sessions: the span's `sessions` field and, with `event`, that many events.
    pub(crate) fn sessions(label: &'static str, event: Option<Event>, count: usize) -> Self {
        Self {
            label,
            event,
            count: u64::try_from(count).unwrap_or(u64::MAX),
        }
    }
}

/// The handles of one store, one per label combination.
#[derive(Debug)]
pub(crate) struct Metrics {
    events: [Counter; Event::ALL.len()],
    durations: [Histogram; Operation::ALL.len()],
}

impl Metrics {
    /// Registers every handle of the store called `name`.
    pub(crate) fn new(name: &str) -> Self {
        Self {
            events: Event::ALL
                .map(|e| Counter::new(EVENTS, &[("name", name), ("event", e.label())])),
            durations: Operation::ALL
                .map(|o| Histogram::new(DURATION, &[("name", name), ("operation", o.label())])),
        }
    }

    /// When an operation started, read only when a latency is recorded.
    pub(crate) fn start() -> Option<Instant> {
        redis_core::metrics::ENABLED.then(Instant::now)
    }

    /// Records an operation that ran inside `span` since `started`: its latency under `kind`, its
    /// event, and its outcome on the span (`error` when it failed). See [`observed!`].
    pub(crate) fn finish<T, E>(
        &self,
        kind: Operation,
        started: Option<Instant>,
        span: &Span,
        result: &Result<T, E>,
        outcome: impl FnOnce(&T) -> Outcome,
    ) {
        if let Some(started) = started {
            self.durations[kind as usize].record_duration(started.elapsed());
        }
        match result {
            Ok(value) => {
                let outcome = outcome(value);
                if let Some(event) = outcome.event {
                    self.events[event as usize].increment(outcome.count);
                }
                span.record("outcome", outcome.label);
                span.record("sessions", outcome.count);
            }
            Err(_) => {
                span.record("outcome", "error");
            }
        }
    }
}

/// Checks a store name: 1 to 64 characters of `[A-Za-z0-9_.-]`.
pub(crate) fn check_name(name: &str) -> Result<()> {
    redis_core::metrics::check_name(name).map_err(Error::invalid_config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["default", "a", "web.sessions-2_x", &"n".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "with space", "user:42", "é", &"n".repeat(65)] {
            assert!(
                matches!(check_name(bad), Err(Error::InvalidConfig(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_label_value_is_in_the_help_text() {
        for e in Event::ALL {
            assert!(METRICS[0].help.contains(e.label()));
        }
        for o in Operation::ALL {
            assert!(METRICS[1].help.contains(o.label()));
        }
    }
}
