//! The cluster backend against a real 3-master cluster.

use redis::AsyncCommands;
use redis_core::{Error, KeySpace, Script, TopologyKind};
use redis_test_support::TestCluster;

static MOVE_AND_COUNT: Script = Script::new(
    "move_and_count",
    "redis.call('SET', KEYS[2], redis.call('GET', KEYS[1]))
     return redis.call('INCR', KEYS[3])",
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_routes_commands_and_keyspace_scripts_stay_on_one_slot() {
    let cluster = TestCluster::spawn(3, 0);
    let redis = cluster.redis().await;
    assert_eq!(redis.topology(), TopologyKind::Cluster);
    let ks = KeySpace::new("core-cluster").unwrap().pattern("t").unwrap();

    // Keys spread over all masters; each name's companions stay with it.
    let mut slots = std::collections::HashSet::new();
    for i in 0..60 {
        let key = ks.key(&format!("name-{i}")).unwrap();
        slots.insert(key.slot() / (16384 / 3 + 1));
        let mut conn = redis.clone();
        let _: () = conn.set(&key, i).await.unwrap();
        let counted: i64 = MOVE_AND_COUNT
            .call()
            .key(&key)
            .key(key.companion("copy"))
            .key(key.companion("count"))
            .invoke(&redis)
            .await
            .unwrap();
        assert_eq!(counted, 1);
        let copy: i64 = conn.get(key.companion("copy")).await.unwrap();
        assert_eq!(copy, i);
    }
    assert_eq!(slots.len(), 3, "keys should land on every master");

    // Unrelated keys: refused with a clear cross-slot error.
    let err = MOVE_AND_COUNT
        .call()
        .key("alpha")
        .key("beta")
        .key("gamma")
        .invoke::<i64>(&redis)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CrossSlot(_)), "{err:?}");
    assert!(err.to_string().contains("different cluster slots"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_server_side_cross_slot_refusal_is_typed() {
    let cluster = TestCluster::spawn(3, 0);
    let redis = cluster.redis().await;
    // A raw EVAL bypasses the script check; the server refuses it.
    let err = redis
        .query::<()>(
            redis::cmd("EVAL")
                .arg("return 1")
                .arg(2)
                .arg("alpha")
                .arg("beta"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CrossSlot(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_dedicated_connections_and_script_reload_work() {
    let cluster = TestCluster::spawn(3, 0);
    let redis = cluster.redis().await;
    let key = KeySpace::new("core-cluster")
        .unwrap()
        .key("blocking")
        .unwrap();
    let mut dedicated = redis.dedicated().await.unwrap();
    let _: () = dedicated.rpush(&key, "job").await.unwrap();
    let popped: Option<(String, String)> = dedicated.blpop(&key, 1.0).await.unwrap();
    assert_eq!(popped.map(|(_, v)| v).as_deref(), Some("job"));

    static ONE: Script = Script::new("one", "return redis.call('INCR', KEYS[1])");
    let _: i64 = ONE.call().key(&key).invoke(&redis).await.unwrap();
    for url in cluster.urls() {
        let client = redis::Client::open(url).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let n: i64 = ONE.call().key(&key).invoke(&redis).await.unwrap();
    assert_eq!(n, 2);
}
