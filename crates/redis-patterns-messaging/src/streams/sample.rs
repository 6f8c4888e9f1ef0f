//! Sampling the consumer's group for the lag and pending gauges: `XINFO GROUPS` every
//! `metrics_interval` while [`Consumer::run`] runs.

use redis_core::{
    Codec,
    redis::{self, Value},
};
use tokio_util::sync::CancellationToken;

use super::consumer::Consumer;
use crate::value::text;

/// `lag` and `pending` of one group, as `XINFO GROUPS` reports them; `lag` is `None` when the
/// server does not know it (before Redis 7, or after deletions it cannot account for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GroupSample {
    pub(super) lag: Option<u64>,
    pub(super) pending: Option<u64>,
}

impl<C: Codec> Consumer<C> {
    /// Samples the group every `metrics_interval` until `shutdown` (the first sample at once).
    /// A failed sample leaves the gauges as they were.
    pub(super) async fn sample_group(self, shutdown: CancellationToken) {
        let inner = &self.inner;
        let mut ticker = tokio::time::interval(inner.settings.metrics_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let reply: redis_core::Result<Value> = inner
                .redis
                .query(redis::cmd("XINFO").arg("GROUPS").arg(&inner.stream))
                .await;
            let sample = match reply {
                Ok(reply) => group_sample(reply, &inner.group),
                Err(e) => {
                    tracing::debug!(error = %e, "sampling the consumer group failed");
                    None
                }
            };
            if let Some(sample) = sample {
                if let Some(lag) = sample.lag {
                    inner.metrics.lag.set(lag as f64);
                }
                if let Some(pending) = sample.pending {
                    inner.metrics.pending.set(pending as f64);
                }
            }
        }
    }
}

/// The sample of `group` in an `XINFO GROUPS` reply (RESP2 flat arrays or RESP3 maps); `None`
/// when the group is not listed.
pub(super) fn group_sample(reply: Value, group: &str) -> Option<GroupSample> {
    let Value::Array(groups) = reply else {
        return None;
    };
    groups.into_iter().find_map(|g| {
        let fields = pairs(g)?;
        let mut name = None;
        let mut sample = GroupSample {
            lag: None,
            pending: None,
        };
        for (field, value) in fields {
            match text(field).as_deref() {
                Some("name") => name = text(value),
                Some("lag") => sample.lag = number(&value),
                Some("pending") => sample.pending = number(&value),
                _ => {}
            }
        }
        (name.as_deref() == Some(group)).then_some(sample)
    })
}

/// The field/value pairs of a RESP3 map or a RESP2 flat array.
fn pairs(value: Value) -> Option<Vec<(Value, Value)>> {
    match value {
        Value::Map(pairs) => Some(pairs),
        Value::Array(flat) => {
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut items = flat.into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                out.push((k, v));
            }
            Some(out)
        }
        _ => None,
    }
}

/// A non-negative integer reply; `None` for nil or anything else.
fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn resp2_group(name: &str, pending: i64, lag: Value) -> Value {
        Value::Array(vec![
            s("name"),
            s(name),
            s("consumers"),
            Value::Int(1),
            s("pending"),
            Value::Int(pending),
            s("last-delivered-id"),
            s("1-0"),
            s("entries-read"),
            Value::Int(1),
            s("lag"),
            lag,
        ])
    }

    #[test]
    fn the_own_group_is_found_in_resp2_replies() {
        let reply = Value::Array(vec![
            resp2_group("other", 9, Value::Int(9)),
            resp2_group("billing", 2, Value::Int(5)),
        ]);
        assert_eq!(
            group_sample(reply, "billing"),
            Some(GroupSample {
                lag: Some(5),
                pending: Some(2)
            })
        );
    }

    #[test]
    fn an_unknown_lag_is_none_and_a_missing_group_is_nothing() {
        let reply = Value::Array(vec![resp2_group("billing", 0, Value::Nil)]);
        assert_eq!(
            group_sample(reply.clone(), "billing"),
            Some(GroupSample {
                lag: None,
                pending: Some(0)
            })
        );
        assert_eq!(group_sample(reply, "shipping"), None);
        assert_eq!(group_sample(Value::Nil, "billing"), None);
    }

    #[test]
    fn resp3_maps_are_read_too() {
        let reply = Value::Array(vec![Value::Map(vec![
            (s("name"), s("billing")),
            (s("pending"), Value::Int(3)),
            (s("lag"), Value::Int(0)),
        ])]);
        assert_eq!(
            group_sample(reply, "billing"),
            Some(GroupSample {
                lag: Some(0),
                pending: Some(3)
            })
        );
    }
}
