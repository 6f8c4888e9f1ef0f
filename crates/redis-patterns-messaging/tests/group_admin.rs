//! Consumer-group administration against a real server.

mod support;

use std::time::Duration;

use redis_core::redis;
use redis_messaging::{remove_idle_consumers, stream_key};
use redis_test_support::TestContext;
use support::{pending, pending_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_with_pending_entries_are_never_removed() {
    let ctx = TestContext::new().await;
    let keys = ctx.keyspace();
    let stream = stream_key(&keys, "jobs").unwrap();
    let redis = ctx.redis();
    // "busy" reads the entry and never acknowledges it; "idle" reads nothing.
    pending_with(redis, &stream, "busy", ["1".to_owned()]).await;
    let _: i64 = redis
        .query(
            redis::cmd("XGROUP")
                .arg("CREATECONSUMER")
                .arg(&stream)
                .arg("g")
                .arg("idle"),
        )
        .await
        .unwrap();
    let removed = remove_idle_consumers(redis, &keys, "jobs", "g", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(removed, ["idle"]);
    // Not idle long enough: kept.
    let removed = remove_idle_consumers(redis, &keys, "jobs", "g", Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(removed.is_empty());
    assert_eq!(pending(redis, &stream, "g").await, 1);
}
