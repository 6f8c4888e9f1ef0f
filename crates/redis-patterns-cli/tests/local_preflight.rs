//! Each pattern's `preflight` against a real server: refuse mode returns a typed error for locks
//! under `allkeys-lru` and passes for a cache.

use redis_core::{
    KeySpace, Redis,
    doctor::{PreflightError, PreflightMode, Severity},
};
use redis_test_support::TestServer;

#[tokio::test]
async fn refuse_mode_stops_locks_under_allkeys_lru_and_lets_a_cache_through() {
    let server = TestServer::builder()
        .args(["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"])
        .spawn();
    let redis = Redis::open(&server.url()).await.unwrap();
    let keys = KeySpace::new("app").unwrap();

    let err = redis_lock::preflight(&redis, &keys, PreflightMode::Refuse)
        .await
        .expect_err("allkeys-lru evicts locks");
    let PreflightError::Refused { pattern, findings } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*pattern, "lock");
    assert!(
        findings
            .iter()
            .any(|f| f.check == "eviction-policy" && f.severity == Severity::Error),
        "{findings:#?}"
    );
    for refused in [
        redis_session::preflight(&redis, &keys, PreflightMode::Refuse).await,
        redis_messaging::preflight(&redis, &keys, PreflightMode::Refuse).await,
    ] {
        assert!(
            matches!(refused, Err(PreflightError::Refused { .. })),
            "{refused:?}"
        );
    }

    let report = redis_cache::preflight(&redis, &keys, PreflightMode::Refuse)
        .await
        .unwrap();
    assert!(!report.has_errors(), "{report:#?}");
    // The rate limiter only warns: an evicted counter hands out a fresh quota.
    let report = redis_ratelimit::preflight(&redis, &keys, PreflightMode::Refuse)
        .await
        .unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.severity == Severity::Warning)
    );
    // Warn mode never fails, off mode asks nothing.
    redis_lock::preflight(&redis, &keys, PreflightMode::Warn)
        .await
        .unwrap();
    let off = redis_lock::preflight(&redis, &keys, PreflightMode::Off)
        .await
        .unwrap();
    assert!(off.nodes.is_empty());
}

#[tokio::test]
async fn the_patterns_commands_pass_acl_dryrun_for_a_full_user() {
    let server = TestServer::builder()
        .args(["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .spawn();
    let redis = Redis::open(&server.url()).await.unwrap();
    let keys = KeySpace::new("app").unwrap();
    for report in [
        redis_lock::preflight(&redis, &keys, PreflightMode::Refuse).await,
        redis_session::preflight(&redis, &keys, PreflightMode::Refuse).await,
        redis_messaging::preflight(&redis, &keys, PreflightMode::Refuse).await,
        redis_ratelimit::preflight(&redis, &keys, PreflightMode::Refuse).await,
    ] {
        let report = report.unwrap();
        let facts = &report.nodes[0];
        assert!(!facts.acl.is_empty());
        assert!(
            facts.acl.iter().all(|c| c.denied.is_none()),
            "every declared command exists and is allowed: {facts:#?}"
        );
    }
}

/// Log lines written by the subscriber of one test.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    /// Every log line of this thread from now until the guard goes.
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let lines = Self::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (lines, tracing::subscriber::set_default(subscriber))
    }

    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

/// Users who do nothing special get the warning: building a lock checks the server in the
/// background and warns once, however many locks are built.
#[tokio::test]
async fn building_a_lock_warns_once_about_an_evicting_server() {
    let (lines, _guard) = Lines::capture();

    let server = TestServer::builder()
        .args(["--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"])
        .spawn();
    let redis = Redis::open(&server.url()).await.unwrap();
    let keys = KeySpace::new("app").unwrap();
    let _lock = redis_lock::Lock::builder(redis.clone(), &keys)
        .build()
        .unwrap();
    redis_test_support::wait_until(
        "the build-time check warns",
        std::time::Duration::from_secs(10),
        || {
            let lines = lines.clone();
            async move { lines.count("eviction-policy") == 1 }
        },
    )
    .await;
    assert_eq!(
        lines.count("WARN"),
        lines.count("check="),
        "only the doctor's warnings"
    );
    // More locks, and an explicit check in warn mode: still one warning.
    for _ in 0..3 {
        let _ = redis_lock::Lock::builder(redis.clone(), &keys)
            .build()
            .unwrap();
    }
    redis_lock::preflight(&redis, &keys, PreflightMode::Warn)
        .await
        .unwrap();
    assert_eq!(lines.count("eviction-policy"), 1);
}

/// Redlock checks every instance: the one with an evicting policy is named.
#[tokio::test]
async fn building_a_redlock_checks_each_instance() {
    let (lines, _guard) = Lines::capture();

    let good = TestServer::builder()
        .args(["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"])
        .spawn();
    let bad = TestServer::builder()
        .args(["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"])
        .spawn();
    let instances = vec![
        Redis::open(&good.url()).await.unwrap(),
        Redis::open(&bad.url()).await.unwrap(),
    ];
    let keys = KeySpace::new("app").unwrap();
    let _redlock = redis_lock::Redlock::builder(instances, &keys)
        .build()
        .unwrap();
    let bad_node = format!("127.0.0.1:{}", bad.port());
    redis_test_support::wait_until(
        "the build-time check warns about the bad instance",
        std::time::Duration::from_secs(10),
        || {
            let lines = lines.clone();
            async move { lines.count("eviction-policy") == 1 }
        },
    )
    .await;
    let text = String::from_utf8_lossy(&lines.0.lock().unwrap()).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("eviction-policy"))
        .unwrap();
    assert!(line.contains(&bad_node), "{line}");
}
