//! Entries a run holds: heartbeats for them while it lives (`heartbeat.lua`), and hand-back on a
//! graceful shutdown of those it will not handle (`hand_back.lua`).

use std::{
    collections::HashSet,
    sync::{Mutex, PoisonError, atomic::Ordering},
};

use redis_core::{Codec, duration_millis};
use tokio_util::sync::CancellationToken;

use super::consumer::Consumer;
use crate::scripts::{HAND_BACK, HEARTBEAT};

/// Ids per heartbeat or hand-back script call.
const CHUNK: usize = 500;

/// What one run shares between its reader, its upkeep task and its handler tasks.
#[derive(Debug)]
pub(super) struct RunState {
    /// The run's shutdown signal.
    pub(super) shutdown: CancellationToken,
    /// Entries held (read, not yet acknowledged, dead-lettered or handed back); `None` when
    /// heartbeats are off.
    held: Option<Mutex<HashSet<String>>>,
    /// Entries to hand back when the run ends: id, and whether its last delivery never reached
    /// a handler.
    hand_back: Mutex<Vec<(String, bool)>>,
}

impl RunState {
    pub(super) fn new(shutdown: CancellationToken, heartbeats: bool) -> Self {
        Self {
            shutdown,
            held: heartbeats.then(Mutex::default),
            hand_back: Mutex::default(),
        }
    }

    /// Starts heartbeats for `ids`.
    pub(super) fn hold<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        if let Some(held) = &self.held {
            let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
            held.extend(ids.into_iter().map(str::to_owned));
        }
    }

    /// Stops heartbeats for `ids` (acknowledged, dead-lettered, lost to another consumer).
    pub(super) fn release<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        if let Some(held) = &self.held {
            let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
            for id in ids {
                held.remove(id);
            }
        }
    }

    /// Hands `id` back when the run ends; `unstarted` when its last delivery reached no handler.
    pub(super) fn give_back(&self, id: String, unstarted: bool) {
        self.hand_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, unstarted));
    }

    fn held_ids(&self) -> Vec<String> {
        self.held.as_ref().map_or_else(Vec::new, |held| {
            let held = held.lock().unwrap_or_else(PoisonError::into_inner);
            held.iter().cloned().collect()
        })
    }
}

impl<C: Codec> Consumer<C> {
    /// Heartbeats for the held entries every `heartbeat_interval` until `stop`.
    pub(super) async fn heartbeat(self, state: std::sync::Arc<RunState>, stop: CancellationToken) {
        let inner = &self.inner;
        let every = inner.settings.heartbeat_interval();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let ids = state.held_ids();
            for chunk in ids.chunks(CHUNK) {
                let lost: redis_core::Result<Vec<String>> = HEARTBEAT
                    .call()
                    .key(&inner.stream)
                    .arg(&inner.group)
                    .arg(&*inner.name)
                    .arg(chunk)
                    .invoke(&inner.redis)
                    .await;
                match lost {
                    // Another consumer claimed them (this one was deemed dead): no more beats.
                    Ok(lost) => state.release(lost.iter().map(String::as_str)),
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
            }
        }
    }

    /// Hands back what the run collected: claimable by the other consumers at once.
    pub(super) async fn hand_back(&self, state: &RunState) {
        let inner = &self.inner;
        let entries = std::mem::take(
            &mut *state
                .hand_back
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for chunk in entries.chunks(CHUNK) {
            let mut call = HAND_BACK
                .call()
                .key(&inner.stream)
                .key(&inner.hand_back_mark)
                .arg(&inner.group)
                .arg(&*inner.name)
                .arg(duration_millis(inner.settings.min_idle));
            for (id, unstarted) in chunk {
                call = call.arg(id).arg(u8::from(*unstarted));
            }
            match call.invoke::<u64>(&inner.redis).await {
                Ok(n) => {
                    inner.counters.handed_back.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, count = chunk.len(), "hand-back failed; the entries are claimed after min_idle");
                }
            }
        }
    }
}
