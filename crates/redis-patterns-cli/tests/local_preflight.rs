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
