//! The lease watchdog: renews a held lease about every `ttl / 3` until its guard goes, the lease
//! is lost, or the hold cap is reached; the lease then runs out on its own. A topology change (a
//! new master, moved slots) renews at once: a grant that did not survive a failover is found
//! lost within a round trip of the new master answering, not at the next scheduled renewal.

use std::{sync::Arc, time::Duration};

use redis_core::{Backoff, TopologyBackoff, TopologyWatch};
use tokio::{task::AbortHandle, time::Instant};

use crate::{
    config::{LeaseConfig, MIN_TTL},
    state::{Shared, Status},
};

/// The first pause after a failed renewal; pauses double up to a quarter of the renewal period
/// and restart from here when the topology changes.
const RETRY_MIN: Duration = Duration::from_millis(50);

/// Starts the watchdog of `shared` on the current runtime. `None` outside a runtime: the lease
/// is then not renewed (and a warning says so).
pub(crate) fn spawn(shared: &Arc<Shared>, config: &LeaseConfig) -> Option<AbortHandle> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => Some(
            runtime
                .spawn(watchdog(Arc::clone(shared), config.ttl, config.max_hold))
                .abort_handle(),
        ),
        Err(_) => {
            tracing::warn!(resource = %shared.resource, "no Tokio runtime: the lease will not be renewed");
            None
        }
    }
}

/// Resolves at the next topology change; never without a watch.
async fn changed(topology: Option<&mut TopologyWatch>) {
    match topology {
        Some(watch) => drop(watch.changed().await),
        None => std::future::pending().await,
    }
}

/// Renews the lease about every `ttl / 3`, and at once on a topology change, until the guard
/// goes, the lease is lost, or `max_hold` (from acquisition) is reached; the lease then runs out
/// on its own.
async fn watchdog(shared: Arc<Shared>, ttl: Duration, max_hold: Option<Duration>) {
    let period = (ttl / 3).max(Duration::from_millis(1));
    // A cap too far away to represent (`Duration::MAX`) is no cap.
    let hold_until = max_hold.and_then(|m| shared.acquired_at.checked_add(m));
    let mut topology = shared.lease.topology();
    let retry = Backoff::clamped(RETRY_MIN.min(period / 4), period / 4);
    let mut failures = topology
        .clone()
        .map(|watch| TopologyBackoff::new(retry, watch));
    let mut next = shared.acquired_at + period;
    loop {
        let recheck = tokio::select! {
            () = tokio::time::sleep_until(next) => false,
            () = changed(topology.as_mut()) => true,
        };
        if shared.lost_by_now() {
            if shared.state.borrow().status == Status::Lost {
                tracing::warn!(resource = %shared.resource, "lease lost: not renewed before its deadline");
            }
            return;
        }
        let now = Instant::now();
        let lease = match hold_until {
            Some(end) if end <= now => return,
            Some(end) => ttl.min(end - now),
            None => ttl,
        };
        if lease < MIN_TTL {
            return;
        }
        if recheck {
            tracing::debug!(resource = %shared.resource, "topology changed: renewing the lease now");
        }
        match shared.extend(lease).await {
            Ok(true) => {
                next = now + period;
                if let Some(failures) = failures.as_mut() {
                    failures.reset();
                }
            }
            Ok(false) => {
                tracing::warn!(resource = %shared.resource, recheck, "lease lost: renewal refused");
                return;
            }
            Err(e) => {
                if shared.lost_by_now() {
                    tracing::warn!(resource = %shared.resource, error = %e, "lease lost: renewal failed until expiry");
                    return;
                }
                let pause = failures
                    .as_mut()
                    .map_or(period / 4, TopologyBackoff::next_delay)
                    .max(Duration::from_millis(1));
                tracing::debug!(resource = %shared.resource, error = %e, ?pause, "lease renewal failed; retrying");
                next = Instant::now() + pause;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::{
        acquire::{Attempt, acquire_loop},
        testing::{Recorder, guard, ms},
    };

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_renews_every_third_of_the_ttl_and_stops_at_the_hold_cap() {
        let recorder = Arc::new(Recorder::default());
        let config = LeaseConfig {
            ttl: ms(300),
            auto_extend: true,
            max_hold: Some(ms(1000)),
            ..LeaseConfig::default()
        };
        let start = Instant::now();
        let guard = guard(&recorder, &config);
        guard.lost().await;
        let lost_at = start.elapsed();
        let renewals = recorder.renewals();
        let offsets: Vec<u64> = renewals
            .iter()
            .map(|(at, _)| (*at - start).as_millis() as u64)
            .collect();
        assert_eq!(offsets, [100, 200, 300, 400, 500, 600, 700, 800, 900]);
        // The last renewals are cut so the lease ends at the cap, not a full TTL later.
        let ttls: Vec<u64> = renewals
            .iter()
            .map(|(_, ttl)| ttl.as_millis() as u64)
            .collect();
        assert_eq!(ttls, [300, 300, 300, 300, 300, 300, 300, 200, 100]);
        // 900 ms + 100 ms lease - drift (1 ms + 2 ms).
        assert_eq!(lost_at, ms(997));
        assert!(guard.is_lost());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_renewal_marks_the_guard_lost_at_once() {
        let recorder = Arc::new(Recorder::default());
        recorder.refuse.store(true, Ordering::SeqCst);
        let config = LeaseConfig {
            ttl: ms(3000),
            auto_extend: true,
            ..LeaseConfig::default()
        };
        let start = Instant::now();
        let guard = guard(&recorder, &config);
        let handle = guard.handle();
        handle.lost().await;
        assert_eq!(
            start.elapsed(),
            ms(1000),
            "lost at the first renewal, not at expiry"
        );
        assert!(guard.is_lost() && handle.is_lost());
        assert!(guard.extend(ms(100)).await.unwrap_err().is_lost());
    }

    #[tokio::test(start_paused = true)]
    async fn a_topology_change_renews_at_once_and_finds_a_lost_grant() {
        let redis = crate::testing::offline();
        let recorder = Arc::new(Recorder {
            topology: Some(redis.topology_watch()),
            ..Recorder::default()
        });
        let config = LeaseConfig {
            ttl: ms(30_000),
            auto_extend: true,
            ..LeaseConfig::default()
        };
        let start = Instant::now();
        let guard = guard(&recorder, &config);
        tokio::time::sleep(ms(1500)).await;
        assert!(recorder.renewals().is_empty(), "next renewal due at 10 s");
        redis.notify_topology_change();
        tokio::time::sleep(ms(1)).await;
        let offsets = |r: &Recorder| -> Vec<u64> {
            r.renewals()
                .iter()
                .map(|(at, _)| (*at - start).as_millis() as u64)
                .collect()
        };
        assert_eq!(offsets(&recorder), [1500], "renewed at the change");
        // The schedule restarts from the renewal; the grant did not survive the next change.
        tokio::time::sleep(ms(10_000)).await;
        assert_eq!(offsets(&recorder), [1500, 11_500]);
        recorder.refuse.store(true, Ordering::SeqCst);
        tokio::time::sleep(ms(500)).await;
        let changed = Instant::now();
        redis.notify_topology_change();
        guard.lost().await;
        assert_eq!(
            changed.elapsed(),
            ms(0),
            "lost at the change, not at 21.5 s"
        );
        assert!(guard.is_lost());
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_answered_after_the_deadline_does_not_revive_a_lost_lease() {
        let recorder = Arc::new(Recorder::default());
        // The renewal sent at 100 ms answers at 350 ms: granted, but after the deadline (295 ms).
        recorder.delay_ms.store(250, Ordering::SeqCst);
        let config = LeaseConfig {
            ttl: ms(300),
            auto_extend: true,
            ..LeaseConfig::default()
        };
        let start = Instant::now();
        let guard = guard(&recorder, &config);
        guard.lost().await;
        assert_eq!(start.elapsed(), ms(295));
        tokio::time::sleep(ms(60)).await;
        assert_eq!(recorder.renewals().len(), 1);
        assert!(guard.is_lost(), "remaining {:?}", guard.remaining());
        assert!(guard.extend(ms(300)).await.unwrap_err().is_lost());
        assert_eq!(recorder.renewals().len(), 1, "a lost lease is not renewed");
        // The guard still gives back whatever the server holds.
        drop(guard);
        tokio::time::sleep(ms(1)).await;
        assert!(recorder.released());
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_stops_when_the_guard_is_dropped_or_released() {
        let config = LeaseConfig {
            ttl: ms(300),
            auto_extend: true,
            ..LeaseConfig::default()
        };
        for release in [false, true] {
            let recorder = Arc::new(Recorder::default());
            let guard = guard(&recorder, &config);
            tokio::time::sleep(ms(250)).await;
            assert_eq!(recorder.renewals().len(), 2);
            if release {
                guard.release().await.unwrap();
            } else {
                drop(guard);
            }
            tokio::time::sleep(ms(2000)).await;
            assert_eq!(recorder.renewals().len(), 2, "release {release}");
            assert!(recorder.released());
            assert_eq!(Arc::strong_count(&recorder), 1, "the watchdog task is gone");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unrepresentable_hold_cap_or_wait_is_no_limit() {
        let recorder = Arc::new(Recorder::default());
        let config = LeaseConfig {
            ttl: ms(300),
            auto_extend: true,
            max_hold: Some(Duration::MAX),
            wait: Duration::MAX,
            ..LeaseConfig::default()
        };
        let guard = guard(&recorder, &config);
        tokio::time::sleep(ms(1050)).await;
        assert_eq!(recorder.renewals().len(), 10);
        assert!(!guard.is_lost());
        let mut tries = 0;
        let acquired = acquire_loop(&config, None, || {
            tries += 1;
            let attempt = if tries < 3 {
                Attempt::Held(None)
            } else {
                Attempt::Acquired(crate::testing::guard(&recorder, &LeaseConfig::default()))
            };
            std::future::ready(Ok(attempt))
        })
        .await
        .unwrap();
        assert_eq!(tries, 3);
        drop((acquired, guard));
    }
}
