//! Preflight: one pattern's checks at start-up, in one of three modes.

use std::{
    collections::HashSet,
    sync::{
        Mutex,
        atomic::{AtomicU8, Ordering},
    },
};

use super::{DoctorOptions, Finding, Report, Requirements, Severity, diagnose_with};
use crate::{KeySpace, Redis};

/// What a preflight does with what it finds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PreflightMode {
    /// No check.
    Off,
    /// Check, and log each warning or error finding once per process through `tracing`
    /// (`WARN`, target `redis_patterns::doctor`). A check that fails (the server unreachable) is
    /// logged too, never returned. The default.
    #[default]
    Warn,
    /// Check, and return [`PreflightError::Refused`] when a finding of error severity exists.
    Refuse,
}

/// Why [`preflight`] refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreflightError {
    /// The server cannot keep the pattern's promises: the error findings, worst first.
    #[error("the server cannot keep the {pattern} pattern's promises: {}", summary(.findings))]
    Refused {
        /// The pattern checked.
        pattern: &'static str,
        /// The findings of error severity.
        findings: Vec<Finding>,
    },
    /// The checks could not run (in [`PreflightMode::Refuse`] only).
    #[error("the preflight check failed: {0}")]
    Check(#[from] crate::Error),
}

fn summary(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("{} on {}: {}", f.check, f.node, f.problem))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A finding's identity: pattern, node, check.
type FindingId = (String, String, &'static str);

/// Findings already logged by this process.
static LOGGED: Mutex<Option<HashSet<FindingId>>> = Mutex::new(None);
/// (pattern, server) pairs whose build-time check already started.
static STARTED: Mutex<Option<HashSet<(&'static str, String)>>> = Mutex::new(None);
/// The mode of build-time checks: 0 off, 1 warn.
static BUILD_MODE: AtomicU8 = AtomicU8::new(1);

/// Checks `requirements` on every master behind `redis` (the pattern's keys under `keys`).
///
/// [`PreflightMode::Off`] returns an empty report without a round trip; `Warn` logs each new
/// warning or error finding once per process and returns the report (empty when the check
/// itself failed, which it logs); `Refuse` returns [`PreflightError::Refused`] on any finding
/// of error severity. Pattern crates wrap this as `preflight(&redis, &keys, mode)`.
///
/// # Errors
/// In `Refuse` mode only: [`PreflightError::Refused`], or [`PreflightError::Check`] when the
/// checks cannot run.
///
/// ```no_run
/// use redis_core::doctor::{PreflightMode, Requirements, Severity, preflight};
///
/// static LOCKS: Requirements = Requirements::new("lock")
///     .no_eviction(Severity::Error, Some(Severity::Error), "an evicted lock lets a second holder in");
///
/// # async fn demo(redis: redis_core::Redis, keys: redis_core::KeySpace) {
/// match preflight(&redis, &keys, &LOCKS, PreflightMode::Refuse).await {
///     Ok(report) => assert!(!report.has_errors()),
///     Err(e) => panic!("{e}"),
/// }
/// # }
/// ```
pub async fn preflight(
    redis: &Redis,
    keys: &KeySpace,
    requirements: &Requirements,
    mode: PreflightMode,
) -> Result<Report, PreflightError> {
    if mode == PreflightMode::Off {
        return Ok(Report::default());
    }
    let options = DoctorOptions::default().key_space(keys.clone());
    let report = match diagnose_with(redis, &[requirements], &options).await {
        Ok(report) => report,
        Err(e) if mode == PreflightMode::Warn => {
            tracing::warn!(
                target: "redis_patterns::doctor",
                pattern = requirements.pattern,
                error = %e,
                "preflight check could not run"
            );
            return Ok(Report::default());
        }
        Err(e) => return Err(e.into()),
    };
    match mode {
        PreflightMode::Refuse if report.has_errors() => Err(PreflightError::Refused {
            pattern: requirements.pattern,
            findings: report.at_least(Severity::Error).cloned().collect(),
        }),
        PreflightMode::Refuse => Ok(report),
        _ => {
            log_once(&report);
            Ok(report)
        }
    }
}

/// Logs each warning or error finding not logged before.
fn log_once(report: &Report) {
    let mut logged = LOGGED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let logged = logged.get_or_insert_with(HashSet::new);
    for f in report.at_least(Severity::Warning) {
        if logged.insert((f.pattern.clone(), f.node.clone(), f.check)) {
            tracing::warn!(
                target: "redis_patterns::doctor",
                severity = f.severity.as_str(),
                pattern = %f.pattern,
                node = %f.node,
                check = f.check,
                fix = %f.fix,
                why = %f.why,
                "{}",
                f.problem
            );
        }
    }
}

/// What a pattern's builder calls: unless build-time checks are off
/// ([`set_build_preflight`]), spawns one [`PreflightMode::Warn`] check of `requirements` on the
/// current Tokio runtime, once per process for each pattern and server. Without a runtime it
/// does nothing. It never delays the build or any command.
pub fn preflight_on_build(redis: &Redis, keys: &KeySpace, requirements: &'static Requirements) {
    if BUILD_MODE.load(Ordering::Relaxed) == 0 {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (host, port) = redis.server_address();
    let server = format!("{host}:{port}");
    {
        let mut started = STARTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !started
            .get_or_insert_with(HashSet::new)
            .insert((requirements.pattern, server))
        {
            return;
        }
    }
    let (redis, keys) = (redis.clone(), keys.clone());
    runtime.spawn(async move {
        let _ = preflight(&redis, &keys, requirements, PreflightMode::Warn).await;
    });
}

/// Sets what patterns check when they are built, for the whole process:
/// [`PreflightMode::Warn`] (the default) or [`PreflightMode::Off`]. A build cannot wait for the
/// server, so `Refuse` counts as `Warn` here: call the pattern's `preflight` at start-up to
/// refuse.
pub fn set_build_preflight(mode: PreflightMode) {
    let value = u8::from(mode != PreflightMode::Off);
    BUILD_MODE.store(value, Ordering::Relaxed);
}
