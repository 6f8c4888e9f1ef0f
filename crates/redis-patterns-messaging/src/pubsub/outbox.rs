//! The sending side of a subscription: a bounded channel that never makes the background task
//! wait, with the gaps (reconnects, dropped messages) it still owes the reader.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::mpsc::{self, error::TrySendError};

use super::event::{Gap, GapKind, Raw};
use crate::metrics::SubscriptionMetrics;

/// The sending side of the subscription's bounded channel. It never waits for the reader: a
/// message that does not fit is dropped and counted, and the gaps (reconnects, drops) wait here
/// until there is room, ahead of any later message.
pub(super) struct Outbox {
    tx: mpsc::Sender<Raw>,
    max_backlog: usize,
    /// A reconnect gap not yet delivered.
    reconnect: Option<Gap>,
    /// Messages dropped since the last delivered overflow gap: when the first was, and how many.
    overflow: Option<(tokio::time::Instant, u64)>,
    dropped: Arc<AtomicU64>,
    metrics: SubscriptionMetrics,
}

/// The reader is gone.
pub(super) struct Closed;

impl Outbox {
    pub(super) fn new(tx: mpsc::Sender<Raw>, max_backlog: usize, dropped: Arc<AtomicU64>) -> Self {
        Self {
            tx,
            max_backlog,
            reconnect: None,
            overflow: None,
            dropped,
            metrics: SubscriptionMetrics::default(),
        }
    }

    /// Records gaps and drops on `metrics` (no metrics until then).
    pub(super) fn with_metrics(mut self, metrics: SubscriptionMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// True while a gap waits for room.
    pub(super) fn has_pending(&self) -> bool {
        self.reconnect.is_some() || self.overflow.is_some()
    }

    /// Delivers the pending gaps that fit; `Ok(true)` when none is left.
    pub(super) fn flush(&mut self) -> Result<bool, Closed> {
        if let Some(gap) = self.reconnect.take() {
            match self.tx.try_reserve() {
                Ok(slot) => {
                    // Counted before the reader can see it.
                    self.metrics.gaps.increment(1);
                    slot.send(Raw::Gap(gap));
                }
                Err(TrySendError::Full(())) => {
                    self.reconnect = Some(gap);
                    return Ok(false);
                }
                Err(TrySendError::Closed(())) => return Err(Closed),
            }
        }
        if let Some((since, dropped)) = self.overflow {
            let gap = Gap {
                kind: GapKind::Overflow,
                reason: format!(
                    "the reader fell {} events behind; later messages were dropped",
                    self.max_backlog
                ),
                duration: since.elapsed(),
                attempts: 0,
                dropped,
            };
            match self.tx.try_send(Raw::Gap(gap)) {
                Ok(()) => self.overflow = None,
                Err(TrySendError::Full(_)) => return Ok(false),
                Err(TrySendError::Closed(_)) => return Err(Closed),
            }
        }
        Ok(true)
    }

    /// Waits until the channel has room for one event.
    pub(super) async fn room(&self) -> Result<(), Closed> {
        self.tx.reserve().await.map(drop).map_err(|_| Closed)
    }

    /// Queues a reconnect gap (merged with one still waiting) and delivers what fits.
    pub(super) fn gap(&mut self, gap: Gap) -> Result<(), Closed> {
        let gap = match self.reconnect.take() {
            Some(earlier) => Gap {
                duration: earlier.duration + gap.duration,
                attempts: earlier.attempts.saturating_add(gap.attempts),
                ..gap
            },
            None => gap,
        };
        self.reconnect = Some(gap);
        self.flush().map(drop)
    }

    /// Delivers a message after the pending gaps, or drops it when the backlog is full.
    pub(super) fn message(&mut self, raw: Raw) -> Result<(), Closed> {
        if self.flush()? {
            match self.tx.try_send(raw) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Closed(_)) => return Err(Closed),
            }
        }
        let overflow = self
            .overflow
            .get_or_insert_with(|| (tokio::time::Instant::now(), 0));
        overflow.1 = overflow.1.saturating_add(1);
        if overflow.1 == 1 {
            tracing::warn!(
                max_backlog = self.max_backlog,
                "pub/sub reader is behind; dropping messages"
            );
        }
        self.metrics.dropped.increment(1);
        self.dropped.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn outbox(max_backlog: usize) -> (Outbox, mpsc::Receiver<Raw>, Arc<AtomicU64>) {
        let (tx, rx) = mpsc::channel(max_backlog);
        let dropped = Arc::new(AtomicU64::new(0));
        (Outbox::new(tx, max_backlog, dropped.clone()), rx, dropped)
    }

    fn message(n: u8) -> Raw {
        Raw::Message {
            channel: "c".into(),
            pattern: None,
            sharded: false,
            payload: vec![n],
        }
    }

    fn reconnect(reason: &str, secs: u64, attempts: u32) -> Gap {
        Gap {
            kind: GapKind::Reconnect,
            reason: reason.into(),
            duration: Duration::from_secs(secs),
            attempts,
            dropped: 0,
        }
    }

    /// What the reader gets next: `Ok(payload byte)` for a message, `Err(gap)` for a gap.
    fn next(rx: &mut mpsc::Receiver<Raw>) -> Option<Result<u8, Gap>> {
        match rx.try_recv().ok()? {
            Raw::Message { payload, .. } => Some(Ok(payload[0])),
            Raw::Gap(gap) => Some(Err(gap)),
        }
    }

    #[test]
    fn reconnects_while_the_backlog_is_full_merge_into_one_gap() {
        let (mut out, mut rx, _) = outbox(1);
        assert!(out.message(message(1)).is_ok());
        // No room: both gaps wait, merged into one.
        assert!(out.gap(reconnect("first", 2, 3)).is_ok());
        assert!(out.gap(reconnect("second", 5, 1)).is_ok());
        assert!(out.has_pending());

        assert_eq!(next(&mut rx), Some(Ok(1)));
        assert!(matches!(out.flush(), Ok(true)));
        assert!(!out.has_pending());
        let Some(Err(gap)) = next(&mut rx) else {
            panic!("expected the merged gap");
        };
        assert_eq!(gap.kind, GapKind::Reconnect);
        assert_eq!(gap.reason, "second", "the latest reason");
        assert_eq!(gap.duration, Duration::from_secs(7), "durations add up");
        assert_eq!(gap.attempts, 4, "attempts add up");
        assert_eq!(next(&mut rx), None);
    }

    #[test]
    fn a_waiting_gap_goes_out_before_the_next_message() {
        let (mut out, mut rx, dropped) = outbox(2);
        assert!(out.message(message(1)).is_ok());
        assert!(out.message(message(2)).is_ok());
        assert!(out.gap(reconnect("lost", 1, 1)).is_ok());
        assert_eq!(next(&mut rx), Some(Ok(1)));
        // One slot free: the gap takes it, so the message after it does not fit and is dropped.
        assert!(out.message(message(3)).is_ok());
        assert_eq!(next(&mut rx), Some(Ok(2)));
        assert!(matches!(next(&mut rx), Some(Err(g)) if g.kind == GapKind::Reconnect));
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_overflow_drops_counts_and_reports_before_later_messages() {
        let (mut out, mut rx, dropped) = outbox(2);
        for n in 1..=4 {
            assert!(out.message(message(n)).is_ok());
        }
        // Two kept, two dropped.
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        assert_eq!(rx.len(), 2, "never more than max_backlog waiting");
        assert_eq!(next(&mut rx), Some(Ok(1)));

        // One slot: the overflow gap takes it and message 5 is dropped too.
        assert!(out.message(message(5)).is_ok());
        assert_eq!(next(&mut rx), Some(Ok(2)));
        let Some(Err(gap)) = next(&mut rx) else {
            panic!("expected the overflow gap");
        };
        assert_eq!(
            (gap.kind, gap.dropped, gap.attempts),
            (GapKind::Overflow, 2, 0)
        );
        assert_eq!(dropped.load(Ordering::Relaxed), 3);

        // Room again: the gap for message 5 first, then message 6.
        assert!(out.message(message(6)).is_ok());
        let Some(Err(gap)) = next(&mut rx) else {
            panic!("expected the second overflow gap");
        };
        assert_eq!((gap.kind, gap.dropped), (GapKind::Overflow, 1));
        assert_eq!(next(&mut rx), Some(Ok(6)));
        assert!(!out.has_pending());
    }

    #[test]
    fn a_gone_reader_closes_the_outbox() {
        let (mut out, rx, _) = outbox(1);
        drop(rx);
        assert!(out.message(message(1)).is_err());
        assert!(out.gap(reconnect("lost", 1, 1)).is_err());
    }
}
