//! Sending a script again when a slot migration bounced it back to the caller.
//!
//! A script over several keys of a slot in migration (a new session next to its user's index, a
//! rotation's new key) runs only where all of its keys are: the source answers `ASK` or
//! `TRYAGAIN`, the importing node `TRYAGAIN`, and a node asked without `ASKING` answers `MOVED`.
//! The connection layer waits out `ASK` and `TRYAGAIN` for up to
//! [`redis_core::MIGRATION_WAIT`], but follows a bounded number of `MOVED`.

use std::time::{Duration, Instant};

use redis_core::Backoff;

/// Pause between the sends of a script whose slot is being migrated.
const MIGRATION_PAUSE: Backoff =
    Backoff::clamped(Duration::from_millis(5), Duration::from_millis(100));

/// Runs `call`, and again when it fails with a redirect (`MOVED`, `ASK`) the connection layer
/// stopped following, until [`redis_core::MIGRATION_WAIT`] has passed since the first send.
/// Safe: a redirected script did not run. During a live migration a script over several keys
/// can be bounced between the two nodes more often than the connection layer follows `MOVED`.
pub(super) async fn through_migration<T, F, Fut>(mut call: F) -> redis_core::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis_core::Result<T>>,
{
    let deadline = Instant::now() + redis_core::MIGRATION_WAIT;
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if e.is_redirect() && Instant::now() < deadline => {
                tracing::debug!(error = %e, attempt, "redirected; sending the script again");
                tokio::time::sleep(MIGRATION_PAUSE.delay(attempt)).await;
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

    #[tokio::test]
    async fn a_redirected_call_is_sent_again_and_other_errors_return_at_once() {
        let calls = AtomicUsize::new(0);
        let result = through_migration(|| async {
            match calls.fetch_add(1, Ordering::Relaxed) {
                0 => Err(server("-MOVED 3999 127.0.0.1:6381\r\n")),
                1 => Err(server("-ASK 3999 127.0.0.1:6381\r\n")),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        // The connection layer has waited out TRYAGAIN already; other errors are not redirects.
        for error in [
            "-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
            "-CLUSTERDOWN The cluster is down\r\n",
        ] {
            calls.store(0, Ordering::Relaxed);
            let result: redis_core::Result<()> = through_migration(|| async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(server(error))
            })
            .await;
            assert!(result.is_err());
            assert_eq!(calls.load(Ordering::Relaxed), 1, "{error}");
        }
    }
}
