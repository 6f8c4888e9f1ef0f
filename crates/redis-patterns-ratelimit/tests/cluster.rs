//! Many identities on a 3-master cluster: no cross-slot errors, keys on every master.

use std::{collections::HashSet, time::Duration};

use redis_ratelimit::{ConcurrencyLimiter, Limit, RateLimiter, redis_core::KeySpace};
use redis_test_support::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_keys_on_a_cluster_with_no_cross_slot_error() {
    let cluster = TestCluster::spawn(3, 0);
    let redis = cluster.redis().await;
    let keys = KeySpace::new("rlcluster").unwrap();
    let minute = Duration::from_secs(60);
    for limit in [
        Limit::fixed_window(2, minute),
        Limit::sliding_log(2, minute),
        Limit::sliding_window(2, minute),
        Limit::token_bucket(2, 1, minute),
        Limit::gcra(1, minute, 2),
    ] {
        let limiter = RateLimiter::builder(redis.clone(), &keys, limit)
            .build()
            .unwrap();
        let mut masters = HashSet::new();
        for i in 0..60 {
            let identity = format!("user:{i}");
            masters.insert(limiter.key(&identity).unwrap().slot() / 5462);
            assert!(
                limiter.check_n(&identity, 2).await.unwrap().is_allowed(),
                "{limit:?}"
            );
            assert!(
                !limiter.check(&identity).await.unwrap().is_allowed(),
                "{limit:?}"
            );
        }
        assert_eq!(
            masters.len(),
            3,
            "identities should spread over every master"
        );
    }
    let concurrency = ConcurrencyLimiter::builder(redis.clone(), &keys, 1)
        .build()
        .unwrap();
    for i in 0..30 {
        let permit = concurrency
            .try_acquire(&format!("job:{i}"))
            .await
            .unwrap()
            .permit()
            .unwrap();
        // Counted on the node that holds the identity's key, by that node's clock.
        let job = format!("job:{i}");
        assert_eq!(concurrency.in_flight(&job).await.unwrap(), 1);
        assert!(permit.release().await.unwrap());
        assert_eq!(concurrency.in_flight(&job).await.unwrap(), 0);
    }
}
