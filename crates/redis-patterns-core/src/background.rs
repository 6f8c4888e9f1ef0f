//! Clean-up that a `Drop` impl cannot await.

use std::{fmt::Display, future::Future};

/// Runs `release` (giving back a lease, a permit, a lock) on the current Tokio runtime without
/// waiting for it: for guards dropped without an explicit release, or requests cancelled in
/// flight. Outside a runtime, or once it shuts down, nothing runs, so `release` must only hasten
/// what a TTL on the server does anyway. Failures are logged at debug level, naming `what`.
pub fn release_in_background<T, E, F>(what: &str, release: F)
where
    E: Display,
    F: Future<Output = Result<T, E>> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let what = what.to_owned();
            runtime.spawn(async move {
                if let Err(e) = release.await {
                    tracing::debug!(%what, error = %e, "background release failed; the lease will expire");
                }
            });
        }
        Err(_) => {
            tracing::debug!(%what, "released outside a Tokio runtime; the lease will expire");
        }
    }
}
