//! Scripts whose keys a slot migration has split between two nodes.
//!
//! While a cluster slot migrates, a script over several keys of it runs only where *all* its keys
//! are: the source node serves it while it has every key, sends it to the target (`ASK`) when it
//! has none, and otherwise answers `TRYAGAIN`; the target answers `TRYAGAIN` whenever one of the
//! keys is missing. A lock's keys are often missing on purpose (a free lock, no waiter), so its
//! acquire and release scripts can meet `TRYAGAIN` for as long as the migration lasts, longer than
//! the connection layer sends again on its own (it can also hand back the `ASK` of that
//! ping-pong when its hops run out). The script did not run, so sending it again is always safe:
//! [`resend_while_split`] does, for up to [`SPLIT_BUDGET`].

use std::{future::Future, time::Duration};

use redis_core::{Backoff, redis::ErrorKind, redis::ServerErrorKind};
use tokio::time::Instant;

/// How long a script keeps being sent again while its keys are split by a migration.
pub(crate) const SPLIT_BUDGET: Duration = Duration::from_secs(2);

/// Pauses between sends: 5 ms doubling up to 100 ms.
const PAUSE: Backoff = Backoff::clamped(Duration::from_millis(5), Duration::from_millis(100));

/// True for `TRYAGAIN` (a multi-key command that did not run because its slot is migrating and
/// its keys are not all on one side) and for a redirect (`ASK`, `MOVED`): the command did not run.
pub(crate) fn is_split(e: &redis_core::Error) -> bool {
    e.is_redirect()
        || e.redis_error().is_some_and(|e| {
            e.kind() == ErrorKind::Server(ServerErrorKind::TryAgain) || e.code() == Some("TRYAGAIN")
        })
}

/// Runs `call` until it answers other than `TRYAGAIN` or a redirect, or [`SPLIT_BUDGET`] has
/// passed.
pub(crate) async fn resend_while_split<T, F, Fut>(mut call: F) -> redis_core::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis_core::Result<T>>,
{
    let started = Instant::now();
    let mut sends = 0u32;
    loop {
        match call().await {
            Err(e) if is_split(&e) && started.elapsed() < SPLIT_BUDGET => {
                tracing::debug!(error = %e, "slot migrating, the script did not run; sending again");
                tokio::time::sleep(PAUSE.delay(sends)).await;
                sends = sends.saturating_add(1);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use redis_core::redis::RedisError;

    use super::*;

    fn tryagain() -> redis_core::Error {
        RedisError::from((
            ErrorKind::Server(ServerErrorKind::TryAgain),
            "Multiple keys request during rehashing of slot",
        ))
        .into()
    }

    #[tokio::test(start_paused = true)]
    async fn tryagain_is_sent_again_until_it_answers_or_the_budget_runs_out() {
        assert!(is_split(&tryagain()));
        let ask: redis_core::Error = RedisError::from((
            ErrorKind::Server(ServerErrorKind::Ask),
            "An error was signalled by the server",
            "11351 127.0.0.1:7001".to_owned(),
        ))
        .into();
        assert!(is_split(&ask), "{ask}");
        let sends = AtomicU32::new(0);
        let answered = resend_while_split(|| async {
            if sends.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(tryagain())
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(answered.unwrap(), 7);
        assert_eq!(sends.load(Ordering::SeqCst), 4);

        let started = Instant::now();
        let stuck: redis_core::Result<()> = resend_while_split(|| async { Err(tryagain()) }).await;
        assert!(is_split(&stuck.unwrap_err()));
        let took = started.elapsed();
        assert!(
            took >= SPLIT_BUDGET && took <= SPLIT_BUDGET + PAUSE.max(),
            "{took:?}"
        );

        // Anything else answers at once.
        let other: redis_core::Result<()> =
            resend_while_split(|| async { Err(redis_core::Error::Timeout(SPLIT_BUDGET)) }).await;
        assert!(other.unwrap_err().is_timeout());
    }
}
