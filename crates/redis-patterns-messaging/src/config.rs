//! Plain settings and policies: stream retention, the consumer's and the subscriber's settings.
//! The builders that fill them sit next to their types.

use std::time::Duration;

use redis_core::Backoff;

use crate::error::{Error, Result};

/// How much history a stream keeps. Trimming is approximate (`~`), which lets Redis drop whole
/// radix-tree nodes: cheap, and it keeps at least what was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retention {
    /// Keep about the newest `n` entries (`XADD .. MAXLEN ~ n`).
    MaxLen(u64),
    /// Keep about the entries younger than this, by the server's clock (`XADD .. MINID ~ now-age`).
    MaxAge(Duration),
    /// Never trim. The stream grows until something else trims it; not a default for a reason.
    Unbounded,
}

impl Default for Retention {
    /// `MaxLen(1_000_000)`.
    fn default() -> Self {
        Self::MaxLen(1_000_000)
    }
}

impl Retention {
    pub(crate) fn validate(self) -> Result<Self> {
        match self {
            Self::MaxLen(0) => Err(Error::invalid_config("retention MaxLen(0) keeps nothing")),
            Self::MaxAge(age) if age.as_millis() == 0 => Err(Error::invalid_config(
                "retention MaxAge below one millisecond",
            )),
            _ => Ok(self),
        }
    }
}

/// When a [`Consumer`](crate::Consumer) runs a failed entry's handler again.
///
/// The consumer that saw the failure keeps the entry (its heartbeats keep it from being
/// claimed), waits, then runs the handler again as the next attempt. Attempts are the entry's
/// delivery counter in the group, so they add up across consumers: an entry whose consumer dies
/// while it waits is claimed by another after `min_idle` and continues from there.
///
/// ```
/// use std::time::Duration;
/// use redis_messaging::{Backoff, RetryPolicy};
///
/// let ms = Duration::from_millis;
/// let exponential = RetryPolicy::Backoff(Backoff::new(ms(500), Duration::from_secs(60))?);
/// let fixed = RetryPolicy::Schedule(vec![ms(100), ms(1_000), ms(10_000)]);
/// assert_eq!(fixed.delay(1), ms(100)); // after the first attempt failed
/// assert_eq!(fixed.delay(7), ms(10_000)); // the last step repeats
/// assert!(exponential.delay(2) <= ms(1_000));
/// # Ok::<(), redis_messaging::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// Capped exponential with jitter: after attempt `n` failed, wait `backoff.delay(n - 1)`
    /// (between half and all of `min · 2^(n-1)`, at most `max`).
    Backoff(Backoff),
    /// Explicit waits: after attempt `n` failed, wait `schedule[n - 1]`; the last one repeats.
    /// Must not be empty.
    Schedule(Vec<Duration>),
}

impl Default for RetryPolicy {
    /// [`Backoff`] from 1 s doubling up to 60 s, jittered.
    fn default() -> Self {
        Self::Backoff(Backoff::clamped(
            Duration::from_secs(1),
            Duration::from_secs(60),
        ))
    }
}

impl RetryPolicy {
    /// How long to wait after attempt `failed` (1 for the first delivery) failed.
    pub fn delay(&self, failed: u64) -> Duration {
        let step = failed.saturating_sub(1);
        match self {
            Self::Backoff(backoff) => backoff.delay(u32::try_from(step).unwrap_or(u32::MAX)),
            Self::Schedule(waits) => {
                let i = usize::try_from(step).unwrap_or(usize::MAX);
                waits
                    .get(i)
                    .or_else(|| waits.last())
                    .copied()
                    .unwrap_or_default()
            }
        }
    }
}

/// The default of [`SubscriberBuilder::max_backlog`](crate::SubscriberBuilder::max_backlog).
pub const DEFAULT_MAX_BACKLOG: usize = 10_000;

/// How a [`Consumer`](crate::Consumer) reads, claims, retries and dead-letters; filled by
/// [`ConsumerBuilder`](crate::ConsumerBuilder), whose setters document each default.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerSettings {
    pub(crate) batch_size: usize,
    pub(crate) concurrency: usize,
    pub(crate) block: Duration,
    pub(crate) min_idle: Duration,
    /// `None`: half of `min_idle`.
    pub(crate) claim_interval: Option<Duration>,
    pub(crate) max_deliveries: u64,
    pub(crate) dead_letter_max_len: u64,
    pub(crate) start_id: String,
    pub(crate) backoff: Backoff,
    /// How often the group's lag and pending count are sampled for the gauges.
    pub(crate) metrics_interval: Duration,
    pub(crate) retry: RetryPolicy,
    /// Whether held entries get heartbeats.
    pub(crate) heartbeats: bool,
    /// `None`: a third of `min_idle`.
    pub(crate) heartbeat_interval: Option<Duration>,
    /// Longest wait between two upkeep steps (delayed entries, hand-back mark).
    pub(crate) delayed_poll: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            batch_size: 10,
            concurrency: 1,
            block: Duration::from_secs(1),
            min_idle: Duration::from_secs(30),
            claim_interval: None,
            max_deliveries: 5,
            dead_letter_max_len: 100_000,
            start_id: "0".into(),
            backoff: Backoff::default(),
            metrics_interval: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            heartbeats: true,
            heartbeat_interval: None,
            delayed_poll: Duration::from_millis(250),
        }
    }
}

impl ConsumerSettings {
    /// Checks the settings and fills in the claim interval.
    pub(crate) fn validate(mut self) -> Result<Self> {
        if self.batch_size == 0 || self.concurrency == 0 {
            return Err(Error::invalid_config(
                "batch size and concurrency must be at least 1",
            ));
        }
        if self.max_deliveries == 0 || self.dead_letter_max_len == 0 {
            return Err(Error::invalid_config(
                "max deliveries and dead-letter length must be at least 1",
            ));
        }
        if self.block.as_millis() == 0 {
            return Err(Error::invalid_config(
                "block below one millisecond (BLOCK 0 would wait forever)",
            ));
        }
        if self.min_idle.as_millis() == 0 {
            return Err(Error::invalid_config("min idle below one millisecond"));
        }
        let claim_interval = self.claim_interval.unwrap_or(self.min_idle / 2);
        if claim_interval.is_zero() || claim_interval > self.min_idle {
            return Err(Error::invalid_config(
                "claim interval must be above zero and at most min idle",
            ));
        }
        if self.start_id.is_empty() {
            return Err(Error::invalid_config("empty start id"));
        }
        if self.metrics_interval.as_millis() == 0 {
            return Err(Error::invalid_config(
                "metrics interval below one millisecond",
            ));
        }
        self.claim_interval = Some(claim_interval);
        if matches!(&self.retry, RetryPolicy::Schedule(waits) if waits.is_empty()) {
            return Err(Error::invalid_config("empty retry schedule"));
        }
        if self
            .heartbeat_interval
            .is_some_and(|every| every.as_millis() == 0 || every >= self.min_idle)
        {
            return Err(Error::invalid_config(
                "heartbeat interval must be at least one millisecond and below min idle",
            ));
        }
        if self.delayed_poll.as_millis() == 0 {
            return Err(Error::invalid_config("delayed poll below one millisecond"));
        }
        Ok(self)
    }

    /// The heartbeat interval: as set, or a third of `min_idle` (at least 1 ms).
    pub(crate) fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
            .unwrap_or(self.min_idle / 3)
            .max(Duration::from_millis(1))
    }

    /// The claim interval (filled in by [`validate`](Self::validate)).
    pub(crate) fn claim_interval(&self) -> Duration {
        self.claim_interval.unwrap_or(self.min_idle / 2)
    }
}

/// What a [`Subscription`](crate::Subscription) listens to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Channels {
    pub(crate) channels: Vec<String>,
    pub(crate) patterns: Vec<String>,
    pub(crate) sharded: Vec<String>,
}

/// How a [`Subscription`](crate::Subscription) stays connected and how much it buffers; filled
/// by [`SubscriberBuilder`](crate::SubscriberBuilder), whose setters document each default.
#[derive(Debug, Clone)]
pub(crate) struct SubscriberSettings {
    pub(crate) channels: Channels,
    pub(crate) backoff: Backoff,
    pub(crate) health_check: Duration,
    pub(crate) max_backlog: usize,
}

impl Default for SubscriberSettings {
    fn default() -> Self {
        Self {
            channels: Channels::default(),
            backoff: Backoff::default(),
            health_check: Duration::from_secs(5),
            max_backlog: DEFAULT_MAX_BACKLOG,
        }
    }
}

impl SubscriberSettings {
    pub(crate) fn validate(self) -> Result<Self> {
        let Channels {
            channels,
            patterns,
            sharded,
        } = &self.channels;
        if channels.is_empty() && patterns.is_empty() && sharded.is_empty() {
            return Err(Error::invalid_config(
                "a subscription needs a channel or a pattern",
            ));
        }
        if channels
            .iter()
            .chain(patterns)
            .chain(sharded)
            .any(String::is_empty)
        {
            return Err(Error::invalid_config("empty channel name or pattern"));
        }
        if self.health_check.is_zero() {
            return Err(Error::invalid_config("health check interval is zero"));
        }
        if self.max_backlog == 0 {
            return Err(Error::invalid_config("subscription max_backlog is zero"));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_interval_defaults_to_half_of_min_idle() {
        let settings = ConsumerSettings {
            min_idle: Duration::from_secs(10),
            ..ConsumerSettings::default()
        }
        .validate()
        .unwrap();
        assert_eq!(settings.claim_interval(), Duration::from_secs(5));
    }

    #[test]
    fn retention_that_keeps_nothing_is_rejected() {
        assert!(Retention::MaxLen(0).validate().is_err());
        assert!(
            Retention::MaxAge(Duration::from_micros(10))
                .validate()
                .is_err()
        );
        assert!(Retention::Unbounded.validate().is_ok());
        assert!(Retention::default().validate().is_ok());
    }
}
