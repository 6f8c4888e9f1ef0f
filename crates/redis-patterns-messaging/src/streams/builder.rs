//! Building a [`Consumer`]: names, settings, codec.

use std::{sync::Arc, time::Duration};

use redis_core::{Backoff, Codec, KeySpace, Redis, codec::Json};

use super::{
    consumer::{Consumer, Counters, Inner},
    dead_letter_key,
    delayed::{delayed_jobs_key, delayed_key},
    stream_key,
};
use crate::{
    config::{ConsumerSettings, RetryPolicy},
    error::{Error, Result},
    metrics::{ConsumerMetrics, consumer_default_name, validate_name},
};

/// Builds a [`Consumer`].
#[must_use]
#[derive(Debug, Clone)]
pub struct ConsumerBuilder<C: Codec = Json> {
    redis: Redis,
    keys: KeySpace,
    stream: String,
    group: String,
    consumer: String,
    /// The `name` of metrics and spans; `None`: the group's name if it fits, else `"default"`.
    label: Option<String>,
    codec: C,
    settings: ConsumerSettings,
}

impl Consumer<Json> {
    /// Starts building consumer `name` of `group` on the stream named `stream`, whose key is
    /// `<keys>:messaging:{<stream>}` (see [`stream_key`](crate::stream_key)). Names must be unique
    /// among the live consumers of the group (a host name plus a process id works).
    pub fn builder(
        redis: Redis,
        keys: &KeySpace,
        stream: impl Into<String>,
        group: impl Into<String>,
        name: impl Into<String>,
    ) -> ConsumerBuilder<Json> {
        ConsumerBuilder {
            redis,
            keys: keys.clone(),
            stream: stream.into(),
            group: group.into(),
            consumer: name.into(),
            label: None,
            codec: Json,
            settings: ConsumerSettings::default(),
        }
    }
}

impl<C: Codec> ConsumerBuilder<C> {
    /// The name this consumer reports in metrics (the `name` label) and spans: 1 to 64
    /// characters of `[A-Za-z0-9_.-]`, checked by [`build`](Self::build). Not the consumer's name
    /// in its group (given to [`Consumer::builder`]). Defaults to the group's name when that fits
    /// the rule, else `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.label = Some(name.into());
        self
    }

    /// How often the consumer samples its group's `lag` and `pending` (`XINFO GROUPS`) for the
    /// `redis_patterns_messaging_group_lag` and `_group_pending` gauges while it runs (only
    /// with the `metrics` feature). Defaults to 10 s.
    pub fn metrics_interval(mut self, every: Duration) -> Self {
        self.settings.metrics_interval = every;
        self
    }

    /// Entries fetched per `XREADGROUP` (and per claim). Defaults to 10.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.settings.batch_size = n;
        self
    }

    /// Handlers running at once in this consumer. Defaults to 1 (in order: then the entries of a
    /// batch but its last have their first attempt in the reading task, with no task of their
    /// own; an entry that waits for a retry waits aside, in a task, while the rest go on).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n;
        self
    }

    /// How long one `XREADGROUP` waits for new entries. It also bounds how long a shutdown waits
    /// for the read in flight (which is always finished, never abandoned). Defaults to 1 s.
    /// Keep it below the dedicated connections' reply time-out if one is configured in
    /// `redis-patterns-core` (none by default), or every blocking read fails as a time-out.
    pub fn block(mut self, block: Duration) -> Self {
        self.settings.block = block;
        self
    }

    /// How long an entry must stay unacknowledged before another consumer may claim it: how long
    /// the entries of a consumer that died wait. With [`heartbeats`](Self::heartbeats) (the
    /// default), entries this consumer holds (waiting for a permit, running, waiting for a
    /// retry) have their idle time reset every [`heartbeat_interval`](Self::heartbeat_interval),
    /// so a slow handler is not redelivered elsewhere while its process lives. Without them it
    /// must be longer than about `batch_size / concurrency` handler runs, or slow entries are
    /// processed twice. Defaults to 30 s.
    pub fn min_idle(mut self, min_idle: Duration) -> Self {
        self.settings.min_idle = min_idle;
        self
    }

    /// How often this consumer looks for stalled entries (`XAUTOCLAIM`). Defaults to half of
    /// `min_idle`.
    pub fn claim_interval(mut self, every: Duration) -> Self {
        self.settings.claim_interval = Some(every);
        self
    }

    /// When a failed entry is run again: [`RetryPolicy::Backoff`] (default: 1 s doubling to
    /// 60 s, jittered) or an explicit [`RetryPolicy::Schedule`]. The consumer that saw the
    /// failure retries; attempts count across consumers (the group's delivery counter).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.settings.retry = policy;
        self
    }

    /// Whether entries this consumer holds get heartbeats (`XCLAIM .. JUSTID` to itself, which
    /// resets their idle time and nothing else). Defaults to on.
    pub fn heartbeats(mut self, on: bool) -> Self {
        self.settings.heartbeats = on;
        self
    }

    /// How often held entries get a heartbeat: below `min_idle`, with room for a slow round
    /// trip. Defaults to a third of `min_idle`.
    pub fn heartbeat_interval(mut self, every: Duration) -> Self {
        self.settings.heartbeat_interval = Some(every);
        self
    }

    /// The longest wait between two upkeep steps, each one script: move the stream's due delayed
    /// entries (see [`Producer::schedule`](crate::Producer::schedule)) into the stream, and
    /// notice entries another consumer handed back on shutdown. The step also runs when the next
    /// delayed entry it knows of is due. Defaults to 250 ms.
    pub fn delayed_poll(mut self, every: Duration) -> Self {
        self.settings.delayed_poll = every;
        self
    }

    /// Deliveries after which an entry that still fails goes to the dead-letter stream.
    /// Defaults to 5.
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.settings.max_deliveries = n;
        self
    }

    /// Approximate length cap of the dead-letter stream. Defaults to 100 000.
    pub fn dead_letter_max_len(mut self, n: u64) -> Self {
        self.settings.dead_letter_max_len = n;
        self
    }

    /// Where a group created by this consumer starts: `"0"` (the whole stream) or `"$"` (only
    /// new entries). Ignored when the group exists. Defaults to `"0"`.
    pub fn start_id(mut self, id: impl Into<String>) -> Self {
        self.settings.start_id = id.into();
        self
    }

    /// Wait between attempts after a connection error. Defaults to [`Backoff::default`]
    /// (100 ms doubling up to 5 s, jittered).
    pub fn reconnect_backoff(mut self, backoff: Backoff) -> Self {
        self.settings.backoff = backoff;
        self
    }

    /// Decodes payloads with `codec` (the producer must use the same). Defaults to JSON.
    pub fn codec<C2: Codec>(self, codec: C2) -> ConsumerBuilder<C2> {
        ConsumerBuilder {
            redis: self.redis,
            keys: self.keys,
            stream: self.stream,
            group: self.group,
            consumer: self.consumer,
            label: self.label,
            codec,
            settings: self.settings,
        }
    }

    /// Checks the settings and builds the stream's keys.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for empty names, zero sizes or durations, a claim interval
    /// longer than `min_idle`, a heartbeat interval not below it, an empty retry schedule, or a [`name`](Self::name) that breaks its rule; [`Error::Core`]
    /// for a stream name that makes no valid key.
    pub fn build(self) -> Result<Consumer<C>> {
        crate::preflight::on_build(&self.redis, &self.keys);
        if self.group.is_empty() || self.consumer.is_empty() {
            return Err(Error::invalid_config("empty group or consumer name"));
        }
        let label = match self.label {
            Some(label) => {
                validate_name(&label)?;
                label
            }
            None => consumer_default_name(&self.group),
        };
        let settings = self.settings.validate()?;
        let stream = stream_key(&self.keys, &self.stream)?;
        Ok(Consumer {
            inner: Arc::new(Inner {
                redis: self.redis,
                dead: dead_letter_key(&stream),
                delayed: delayed_key(&stream),
                delayed_jobs: delayed_jobs_key(&stream),
                hand_back_mark: stream.companion(&format!("handback:{}", self.group)),
                stream,
                group: self.group,
                name: self.consumer.into(),
                metrics: ConsumerMetrics::new(&label),
                label,
                codec: self.codec,
                settings,
                counters: Counters::default(),
            }),
        })
    }
}
