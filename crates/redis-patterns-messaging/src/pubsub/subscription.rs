//! The reading end of a subscription.

use std::{
    fmt,
    marker::PhantomData,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use redis_core::{Codec, codec::Json};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::DropGuard;

use super::event::{Event, Message, Raw, Undecodable};

/// A live subscription. Read it with [`next`](Self::next); drop it to unsubscribe and close the
/// connection.
pub struct Subscription<T, C: Codec = Json> {
    rx: mpsc::Receiver<Raw>,
    dropped: Arc<AtomicU64>,
    codec: C,
    _stop: DropGuard,
    _payload: PhantomData<fn() -> T>,
}

impl<T, C: Codec> fmt::Debug for Subscription<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned, C: Codec> Subscription<T, C> {
    /// The reading end of the background task's channel; dropping it (the guard) stops the task.
    pub(super) fn new(
        rx: mpsc::Receiver<Raw>,
        dropped: Arc<AtomicU64>,
        codec: C,
        stop: DropGuard,
    ) -> Self {
        Self {
            rx,
            dropped,
            codec,
            _stop: stop,
            _payload: PhantomData,
        }
    }

    /// How many events wait for [`next`](Self::next) right now; never more than
    /// [`max_backlog`](crate::SubscriberBuilder::max_backlog).
    pub fn backlog(&self) -> usize {
        self.rx.len()
    }

    /// How many messages this subscription has dropped so far because its backlog was full (each
    /// drop is also reported by an [`Event::Gap`] of kind [`GapKind::Overflow`](crate::GapKind::Overflow)).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The next event: a message, a gap, or a payload that did not decode. `None` only after the
    /// background task stopped (it does not give up on its own while the subscription lives).
    pub async fn next(&mut self) -> Option<Event<T>> {
        let raw = self.rx.recv().await?;
        Some(match raw {
            Raw::Gap(gap) => Event::Gap(gap),
            Raw::Message {
                channel,
                pattern,
                sharded,
                payload,
            } => match self.codec.decode::<T>(&payload) {
                Ok(payload) => Event::Message(Message {
                    channel,
                    pattern,
                    sharded,
                    payload,
                }),
                Err(error) => Event::Undecodable(Undecodable {
                    channel,
                    payload,
                    error,
                }),
            },
        })
    }
}
