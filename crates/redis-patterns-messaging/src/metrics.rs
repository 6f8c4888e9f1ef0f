//! The metrics of this crate: their documentation ([`METRICS`]) and the handles each producer,
//! publisher, consumer and subscription registers once when it is built.
//!
//! Every metric carries one label, `name`: the name given with the builders' `name` setter
//! (`"default"` unless set; a consumer defaults to its group name when that fits the rule). Never
//! a stream key, a channel or a payload.

use redis_core::metrics::{Counter, Description, Gauge, Histogram, Kind};

use crate::error::{Error, Result};

/// Whether the handles record anything (the `metrics` feature): work done only for metrics (a
/// clock read, sampling the group) is skipped when they do not.
pub(crate) const ENABLED: bool = redis_core::metrics::ENABLED;

/// The name used when none is given.
pub(crate) const DEFAULT_NAME: &str = "default";

/// Every metric this crate records, for [`redis_core::metrics::describe`].
///
/// | name | kind | labels | recorded by |
/// |---|---|---|---|
/// | `redis_patterns_messaging_delivered_total` | counter | `name` | an entry handed to a consumer's handler (new or reclaimed) |
/// | `redis_patterns_messaging_acked_total` | counter | `name` | entries acknowledged after their handler succeeded |
/// | `redis_patterns_messaging_failed_total` | counter | `name` | a handler error or panic |
/// | `redis_patterns_messaging_reclaimed_total` | counter | `name` | entries a consumer claimed from stalled consumers |
/// | `redis_patterns_messaging_dead_lettered_total` | counter | `name` | entries a consumer moved to the dead-letter stream |
/// | `redis_patterns_messaging_handler_duration_seconds` | histogram | `name` | every handler run |
/// | `redis_patterns_messaging_group_lag` | gauge | `name` | `lag` of the consumer's group (`XINFO GROUPS`, Redis 7+), every `metrics_interval` |
/// | `redis_patterns_messaging_group_pending` | gauge | `name` | `pending` of the consumer's group, same sample |
/// | `redis_patterns_messaging_published_total` | counter | `name` | entries sent by a producer, messages published by a publisher |
/// | `redis_patterns_messaging_pubsub_gaps_total` | counter | `name` | reconnect gaps reported to a subscription |
/// | `redis_patterns_messaging_pubsub_dropped_total` | counter | `name` | messages a subscription dropped because its backlog was full |
pub const METRICS: &[Description] = &[
    Description {
        name: "redis_patterns_messaging_delivered_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Stream entries handed to a consumer's handler (new and reclaimed).",
    },
    Description {
        name: "redis_patterns_messaging_acked_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Stream entries acknowledged after their handler succeeded.",
    },
    Description {
        name: "redis_patterns_messaging_failed_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Handler errors and panics; the entry stays pending and is retried.",
    },
    Description {
        name: "redis_patterns_messaging_reclaimed_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Stream entries claimed from dead or slow consumers.",
    },
    Description {
        name: "redis_patterns_messaging_dead_lettered_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Stream entries moved to the dead-letter stream.",
    },
    Description {
        name: "redis_patterns_messaging_handler_duration_seconds",
        kind: Kind::Histogram,
        labels: &["name"],
        help: "How long a consumer's handler ran per delivery.",
    },
    Description {
        name: "redis_patterns_messaging_group_lag",
        kind: Kind::Gauge,
        labels: &["name"],
        help: "Entries of the stream not yet read by the consumer's group (XINFO GROUPS lag, Redis 7+).",
    },
    Description {
        name: "redis_patterns_messaging_group_pending",
        kind: Kind::Gauge,
        labels: &["name"],
        help: "Entries read by the consumer's group and not yet acknowledged (XINFO GROUPS pending).",
    },
    Description {
        name: "redis_patterns_messaging_published_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Entries sent by a stream producer and messages published on pub/sub channels.",
    },
    Description {
        name: "redis_patterns_messaging_pubsub_gaps_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Reconnect gaps reported to a pub/sub subscription (messages may have been missed).",
    },
    Description {
        name: "redis_patterns_messaging_pubsub_dropped_total",
        kind: Kind::Counter,
        labels: &["name"],
        help: "Pub/sub messages dropped because the subscription's backlog was full.",
    },
];

/// Checks a name given to a `name` setter: 1 to 64 characters of `[A-Za-z0-9_.-]`.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    redis_core::metrics::check_name(name).map_err(Error::invalid_config)
}

fn is_valid_name(name: &str) -> bool {
    redis_core::metrics::check_name(name).is_ok()
}

/// A consumer's name when none is given: its group's name if that is a valid name, else
/// [`DEFAULT_NAME`].
pub(crate) fn consumer_default_name(group: &str) -> String {
    if is_valid_name(group) {
        group.to_owned()
    } else {
        DEFAULT_NAME.to_owned()
    }
}

/// The handles of one consumer.
#[derive(Debug, Default)]
pub(crate) struct ConsumerMetrics {
    pub(crate) delivered: Counter,
    pub(crate) acked: Counter,
    pub(crate) failed: Counter,
    pub(crate) reclaimed: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) handler_duration: Histogram,
    pub(crate) lag: Gauge,
    pub(crate) pending: Gauge,
}

impl ConsumerMetrics {
    pub(crate) fn new(name: &str) -> Self {
        let labels = [("name", name)];
        let counter = |metric| Counter::new(metric, &labels);
        Self {
            delivered: counter("redis_patterns_messaging_delivered_total"),
            acked: counter("redis_patterns_messaging_acked_total"),
            failed: counter("redis_patterns_messaging_failed_total"),
            reclaimed: counter("redis_patterns_messaging_reclaimed_total"),
            dead_lettered: counter("redis_patterns_messaging_dead_lettered_total"),
            handler_duration: Histogram::new(
                "redis_patterns_messaging_handler_duration_seconds",
                &labels,
            ),
            lag: Gauge::new("redis_patterns_messaging_group_lag", &labels),
            pending: Gauge::new("redis_patterns_messaging_group_pending", &labels),
        }
    }
}

/// The handle of a producer or a publisher.
pub(crate) fn published(name: &str) -> Counter {
    Counter::new(
        "redis_patterns_messaging_published_total",
        &[("name", name)],
    )
}

/// The handles of one subscription.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionMetrics {
    pub(crate) gaps: Counter,
    pub(crate) dropped: Counter,
}

impl SubscriptionMetrics {
    pub(crate) fn new(name: &str) -> Self {
        let labels = [("name", name)];
        Self {
            gaps: Counter::new("redis_patterns_messaging_pubsub_gaps_total", &labels),
            dropped: Counter::new("redis_patterns_messaging_pubsub_dropped_total", &labels),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("billing").is_ok());
        assert!(validate_name("orders.v2-eu_1").is_ok());
        assert!(validate_name(&"a".repeat(64)).is_ok());
        for bad in ["", "has space", "user:42", "é", &"a".repeat(65)] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidConfig(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_consumer_is_named_after_its_group_when_the_group_fits() {
        assert_eq!(consumer_default_name("billing"), "billing");
        assert_eq!(consumer_default_name("billing:eu"), DEFAULT_NAME);
        assert_eq!(consumer_default_name(&"g".repeat(65)), DEFAULT_NAME);
    }

    #[test]
    fn every_metric_is_named_after_the_crate_and_labelled_by_name() {
        for d in METRICS {
            assert!(
                d.name.starts_with("redis_patterns_messaging_"),
                "{}",
                d.name
            );
            assert_eq!(d.labels, ["name"], "{}", d.name);
        }
    }
}
