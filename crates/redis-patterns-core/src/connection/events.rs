//! Topology changes as an epoch: a counter each backend moves when the deployment changes under
//! it, which long-lived workers watch to resume at once instead of at the end of a long backoff.
//!
//! The epoch moves when
//! - **Sentinel**: a sentinel announces `+switch-master` for the service (the backend subscribes
//!   to every sentinel), or the shared connection reaches a different master than before;
//! - **Cluster**: the slot map (which master serves which slots) differs from the last one seen;
//!   the backend looks every [`CLUSTER_POLL`] and at once after a redirect or a lost node;
//! - **Standalone** (and Sentinel): the shared connection is re-established after it was lost
//!   (the server restarted, or came back).
//!
//! A worker (a stream consumer, a subscriber, near-cache tracking) keeps a [`TopologyBackoff`]
//! for its reconnect loop: its delays restart from the minimum as soon as the epoch moves, and
//! [`TopologyBackoff::wait`] returns early when it moves during a pause.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;

use crate::Backoff;

/// How often the cluster backend compares the slot map when nothing else prompts it.
pub const CLUSTER_POLL: Duration = Duration::from_millis(500);

/// The sending side, shared by a [`crate::Redis`] handle and its backend.
#[derive(Debug)]
pub(crate) struct TopologySignal {
    tx: watch::Sender<u64>,
    /// The epoch as a plain atomic, for readers on hot paths: a load touches no lock and no
    /// counter that other cores write (the channel's `borrow` and `subscribe` do).
    epoch: AtomicU64,
}

impl TopologySignal {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            tx: watch::Sender::new(0),
            epoch: AtomicU64::new(0),
        })
    }

    /// Moves the epoch and wakes every watcher.
    pub(crate) fn bump(&self, why: &str) {
        let mut epoch = 0;
        self.tx.send_modify(|e| {
            *e += 1;
            epoch = *e;
            // Stored before the watchers wake, so one that reads it sees the new epoch.
            self.epoch.store(epoch, Ordering::Release);
        });
        tracing::info!(epoch, why, "topology changed");
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn watch(&self) -> TopologyWatch {
        TopologyWatch {
            rx: self.tx.subscribe(),
        }
    }

    /// A watch that has seen `epoch` and nothing after it: when the epoch has moved since, its
    /// first [`TopologyWatch::changed`] returns at once.
    pub(crate) fn watch_since(&self, epoch: u64) -> TopologyWatch {
        let mut watch = self.watch();
        if watch.mark_seen() != epoch {
            watch.rx.mark_changed();
        }
        watch
    }
}

/// Background tasks of a backend (topology watchers), aborted when the backend is dropped.
#[derive(Debug, Default)]
pub(crate) struct BackgroundTasks(Vec<tokio::task::JoinHandle<()>>);

impl BackgroundTasks {
    pub(crate) fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(task));
    }
}

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Tells when the deployment behind a [`crate::Redis`] changed (a new master, slots moved): get
/// one from [`crate::Redis::topology_watch`]. Cheap to clone; each clone tracks what it has seen.
///
/// ```no_run
/// # async fn demo(redis: redis_core::Redis) {
/// let mut watch = redis.topology_watch();
/// tokio::spawn(async move {
///     loop {
///         let epoch = watch.changed().await;
///         tracing::info!(epoch, "new topology: reconnect now");
///     }
/// });
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TopologyWatch {
    rx: watch::Receiver<u64>,
}

impl TopologyWatch {
    /// The current epoch (0 until the first change).
    pub fn epoch(&self) -> u64 {
        *self.rx.borrow()
    }

    /// Whether the epoch moved since this watch last looked ([`changed`](Self::changed) or
    /// [`mark_seen`](Self::mark_seen)).
    pub fn has_changed(&self) -> bool {
        self.rx.has_changed().unwrap_or(false)
    }

    /// Marks the current epoch as seen and returns it.
    pub fn mark_seen(&mut self) -> u64 {
        *self.rx.borrow_and_update()
    }

    /// Waits until the epoch moves past the last one seen, and returns it. Never returns once
    /// every [`crate::Redis`] clone is dropped.
    pub async fn changed(&mut self) -> u64 {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.mark_seen()
    }
}

/// A [`Backoff`] for reconnect loops of long-lived workers that restarts from its minimum when
/// the topology changes, so a worker resumes within one short step of a new master answering
/// instead of finishing a pause that grew during the outage.
///
/// ```no_run
/// use std::time::Duration;
/// use redis_core::{Backoff, TopologyBackoff};
///
/// # async fn read_once(redis: &redis_core::Redis) -> redis_core::Result<()> { Ok(()) }
/// # async fn demo(redis: redis_core::Redis) {
/// let mut backoff = TopologyBackoff::new(Backoff::default(), redis.topology_watch());
/// loop {
///     match read_once(&redis).await {
///         Ok(()) => backoff.reset(),
///         // Sleeps 100 ms, 200 ms, ... up to 5 s, but returns early when a new master is
///         // announced (and the next step is 100 ms again).
///         Err(e) if e.is_retryable() => backoff.wait().await,
///         Err(e) => break,
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TopologyBackoff {
    backoff: Backoff,
    attempt: u32,
    watch: TopologyWatch,
}

impl TopologyBackoff {
    /// Steps of `backoff`, restarted by changes `watch` reports.
    pub fn new(backoff: Backoff, mut watch: TopologyWatch) -> Self {
        watch.mark_seen();
        Self {
            backoff,
            attempt: 0,
            watch,
        }
    }

    /// After a success: the next failure waits the minimum again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failures since the last reset (or topology change).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The pause before the next retry, counting one more failure; restarts from the minimum
    /// when the topology changed since the last call.
    pub fn next_delay(&mut self) -> Duration {
        if self.watch.has_changed() {
            self.watch.mark_seen();
            self.attempt = 0;
        }
        let delay = self.backoff.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Sleeps [`next_delay`](Self::next_delay), returning early (and restarting the steps)
    /// when the topology changes meanwhile.
    pub async fn wait(&mut self) {
        let delay = self.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = self.watch.changed() => self.attempt = 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_topology_change_restarts_the_steps_and_cuts_a_pause_short() {
        let signal = TopologySignal::new();
        let backoff = Backoff::clamped(Duration::from_millis(100), Duration::from_secs(30));
        let mut steps = TopologyBackoff::new(backoff, signal.watch());
        for _ in 0..8 {
            steps.next_delay();
        }
        assert_eq!(steps.attempt(), 8);
        signal.bump("test");
        assert!(steps.next_delay() <= Duration::from_millis(100));
        assert_eq!(steps.attempt(), 1);

        for _ in 0..10 {
            steps.next_delay();
        }
        // The next pause would be 15 s or more; a change ends it at once.
        let started = std::time::Instant::now();
        let bump = {
            let signal = signal.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                signal.bump("test");
            })
        };
        steps.wait().await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(steps.attempt(), 0);
        bump.await.unwrap();
        assert_eq!(signal.watch().epoch(), 2);
    }

    #[tokio::test]
    async fn a_watch_sees_each_change_once() {
        let signal = TopologySignal::new();
        let mut watch = signal.watch();
        assert!(!watch.has_changed());
        signal.bump("test");
        assert!(watch.has_changed());
        assert_eq!(watch.changed().await, 1);
        assert!(!watch.has_changed());
        assert_eq!(signal.epoch(), 1);
    }

    #[tokio::test]
    async fn a_watch_since_an_old_epoch_reports_the_change_it_missed() {
        let signal = TopologySignal::new();
        let before = signal.epoch();
        assert!(!signal.watch_since(before).has_changed());
        signal.bump("test");
        let mut missed = signal.watch_since(before);
        assert!(missed.has_changed());
        assert_eq!(missed.changed().await, 1);
        assert!(!missed.has_changed());
        assert!(!signal.watch_since(signal.epoch()).has_changed());
    }
}
