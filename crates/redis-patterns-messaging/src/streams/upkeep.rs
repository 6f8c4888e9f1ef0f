//! A run's upkeep task: moves due delayed entries into the stream (`tick.lua`), notices the
//! group's hand-back mark, and runs claim passes (`claim.lua`), without waiting for the reader's
//! blocking read.

use std::{fmt, future::Future, sync::atomic::Ordering, time::Duration};

use redis_core::{Codec, duration_millis, redis::Value};
use serde::de::DeserializeOwned;
use tokio::{task::JoinSet, time::Instant};

use super::{
    consumer::{Consumer, Delivery},
    handle::Workers,
    reply::{Claimed, Fetched, parse_claim},
    run::later,
};
use crate::{
    error::{Error, Result},
    scripts::{CLAIM, TICK},
};

/// Most delayed entries one upkeep step moves; a full step is followed by another at once.
const MOVE_LIMIT: i64 = 1_000;

/// What one `tick.lua` step reported.
struct Tick {
    moved: i64,
    /// Until the next delayed entry is due, if any waits.
    next_due: Option<Duration>,
    /// Whether another consumer handed entries back.
    handed_back: bool,
}

impl<C: Codec> Consumer<C> {
    /// The upkeep loop, until the run shuts down; returns the workers it dispatched claimed
    /// entries to, for the run to wait for.
    pub(super) async fn upkeep<T, F, Fut, E>(
        self,
        workers: Workers<C, T, F>,
    ) -> JoinSet<Workers<C, T, F>>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Delivery<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let settings = &self.inner.settings;
        let shutdown = workers.shutdown().clone();
        // Claimed entries are dispatched by tasks of their own: waiting for a permit must not
        // hold up the next step.
        let mut passes = JoinSet::new();
        let mut cursor = "0-0".to_owned();
        let mut next_claim = Instant::now();
        while !shutdown.is_cancelled() {
            let mut wait = settings.delayed_poll;
            match self.tick().await {
                Ok(tick) => {
                    if tick.handed_back {
                        next_claim = Instant::now();
                        cursor = "0-0".to_owned();
                    }
                    if tick.moved >= MOVE_LIMIT {
                        wait = Duration::ZERO;
                    } else if let Some(due) = tick.next_due {
                        wait = wait.min(due);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "upkeep step failed"),
            }
            if Instant::now() >= next_claim {
                // Whatever the outcome, the next pass is one interval away.
                next_claim = later(settings.claim_interval());
                match self.claim(&mut cursor).await {
                    Ok(entries) if !entries.is_empty() => {
                        let mut forked = workers.fork();
                        passes.spawn(async move {
                            forked.dispatch(entries).await;
                            forked
                        });
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "claim pass failed"),
                }
            }
            while passes.try_join_next().is_some() {}
            wait = wait.min(next_claim.saturating_duration_since(Instant::now()));
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        passes
    }

    /// One `tick.lua` step.
    async fn tick(&self) -> Result<Tick> {
        let inner = &self.inner;
        let reply: Value = TICK
            .call()
            .key(&inner.stream)
            .key(&inner.delayed)
            .key(&inner.delayed_jobs)
            .key(&inner.hand_back_mark)
            .arg(MOVE_LIMIT)
            .invoke(&inner.redis)
            .await?;
        let Value::Array(parts) = reply else {
            return Err(Error::unexpected_reply("tick script: not an array"));
        };
        let int = |i: usize| match parts.get(i) {
            Some(Value::Int(n)) => Ok(*n),
            _ => Err(Error::unexpected_reply("tick script: expected integers")),
        };
        let next_due = int(1)?;
        Ok(Tick {
            moved: int(0)?,
            next_due: u64::try_from(next_due).ok().map(Duration::from_millis),
            handed_back: int(2)? == 1,
        })
    }

    /// One pass of the claim script from `cursor` (continuing where the last pass stopped).
    async fn claim(&self, cursor: &mut String) -> Result<Vec<Fetched>> {
        let inner = &self.inner;
        let settings = &inner.settings;
        let mut out = Vec::new();
        // A bounded number of steps per pass keeps reads flowing while a large backlog is claimed.
        for _ in 0..10 {
            let reply: Value = CLAIM
                .call()
                .key(&inner.stream)
                .key(&inner.dead)
                .arg(&inner.group)
                .arg(&*inner.name)
                .arg(duration_millis(settings.min_idle))
                .arg(cursor.as_str())
                .arg(settings.batch_size)
                .arg(settings.max_deliveries)
                .arg(settings.dead_letter_max_len)
                .invoke(&inner.redis)
                .await?;
            let Claimed {
                cursor: next,
                entries,
                dead,
            } = parse_claim(reply)?;
            inner.metrics.dead_lettered.increment(dead);
            inner.metrics.reclaimed.increment(entries.len() as u64);
            let counters = &inner.counters;
            counters.dead_lettered.fetch_add(dead, Ordering::Relaxed);
            counters
                .claimed
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            out.extend(entries);
            *cursor = next;
            // A step that claimed nothing may only have scanned entries still in their min-idle
            // (XAUTOCLAIM looks at up to 10 × COUNT pending ids per step): go on scanning, or a
            // stalled entry behind many fresh ones would wait one claim interval per step.
            if cursor == "0-0" {
                break;
            }
        }
        Ok(out)
    }
}
