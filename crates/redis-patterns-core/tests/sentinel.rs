//! The Sentinel backend follows a failover.

use std::time::Duration;

use redis_core::TopologyKind;
use redis_test_support::{TestSentinel, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_followed_within_seconds() {
    let mut group = TestSentinel::spawn();
    let redis = group.redis().await;
    assert_eq!(redis.topology(), TopologyKind::Sentinel);
    let _: () = redis
        .query(redis::cmd("SET").arg("before").arg(1))
        .await
        .unwrap();
    let old_master_port = group.master().port();
    let replica_port = group.replica().port();

    group.master().kill();

    // Writes fail while the sentinels notice and promote, then succeed on the new master.
    let started = std::time::Instant::now();
    let attempts = wait_for(
        "a write to succeed after failover",
        Duration::from_secs(30),
        || {
            let redis = redis.clone();
            async move {
                redis
                    .query::<()>(redis::cmd("SET").arg("after").arg(2))
                    .await
                    .ok()
            }
        },
    )
    .await;
    let () = attempts;
    eprintln!("failover followed after {:?}", started.elapsed());

    // The write landed on the former replica, now master.
    let role: Vec<redis::Value> = group.replica().cmd(&redis::cmd("ROLE")).unwrap();
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec()))
    );
    let after: i64 = group.replica().cmd(redis::cmd("GET").arg("after")).unwrap();
    assert_eq!(after, 2);
    assert_ne!(old_master_port, replica_port);
    let mut endpoint_port = None;
    if let redis_core::Endpoint::Single(client) = redis.endpoint().await.unwrap()
        && let redis::ConnectionAddr::Tcp(_, port) = client.get_connection_info().addr()
    {
        endpoint_port = Some(*port);
    }
    assert_eq!(endpoint_port, Some(replica_port));
}
