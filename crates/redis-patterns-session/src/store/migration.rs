//! Sending a script again while its slot is being migrated.
//!
//! A script that touches several keys of a slot in migration is refused with `TRYAGAIN` while
//! those keys are split between the two nodes, and for as long as the migration lasts when one
//! of them does not exist yet (a new session key next to its user's index, a rotation's new
//! key): the importing node serves a multi-key call only when it holds every key. That can
//! outlast the connection layer's own hops, so the store waits the migration out here.

use std::time::{Duration, Instant};

use redis_core::{
    Backoff,
    redis::{ErrorKind, ServerErrorKind},
};

/// How long a script refused for its slot keeps being sent again before the error is returned.
pub(super) const MIGRATION_WAIT: Duration = Duration::from_secs(5);

/// Pause between the sends.
const PAUSE: Backoff = Backoff::clamped(Duration::from_millis(5), Duration::from_millis(100));

/// Whether `e` says the script did not run because its slot is moving: `TRYAGAIN`, or a
/// redirect the connection layer stopped following.
fn slot_in_motion(e: &redis_core::Error) -> bool {
    e.is_redirect()
        || e.redis_error()
            .is_some_and(|e| matches!(e.kind(), ErrorKind::Server(ServerErrorKind::TryAgain)))
}

/// Runs `call`, and again while its slot is being migrated, for up to [`MIGRATION_WAIT`]. Safe
/// for every script of the store: a script refused for its slot did not run.
pub(super) async fn through_migration<T, F, Fut>(mut call: F) -> redis_core::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis_core::Result<T>>,
{
    let deadline = Instant::now() + MIGRATION_WAIT;
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if slot_in_motion(&e) && Instant::now() < deadline => {
                tracing::debug!(error = %e, attempt, "slot in migration; sending the script again");
                tokio::time::sleep(PAUSE.delay(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn server(text: &str) -> redis_core::Error {
        redis_core::Error::from(
            redis_core::redis::parse_redis_value(text.as_bytes())
                .unwrap()
                .extract_error()
                .unwrap_err(),
        )
    }

    #[test]
    fn only_a_refusal_for_the_slot_means_the_slot_is_moving() {
        assert!(slot_in_motion(&server(
            "-TRYAGAIN Multiple keys request during rehashing of slot\r\n"
        )));
        assert!(slot_in_motion(&server("-MOVED 3999 127.0.0.1:6381\r\n")));
        assert!(slot_in_motion(&server("-ASK 3999 127.0.0.1:6381\r\n")));
        assert!(!slot_in_motion(&server(
            "-CLUSTERDOWN The cluster is down\r\n"
        )));
        assert!(!slot_in_motion(&redis_core::Error::Timeout(
            Duration::from_millis(1)
        )));
    }

    #[tokio::test]
    async fn a_refused_call_is_sent_again_and_other_errors_return_at_once() {
        let calls = AtomicUsize::new(0);
        let result = through_migration(|| async {
            match calls.fetch_add(1, Ordering::Relaxed) {
                0 | 1 => Err(server("-TRYAGAIN rehashing\r\n")),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        calls.store(0, Ordering::Relaxed);
        let result: redis_core::Result<()> = through_migration(|| async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(server("-CLUSTERDOWN The cluster is down\r\n"))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
