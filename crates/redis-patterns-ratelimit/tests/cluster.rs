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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_checks_spanning_slots_raise_no_cross_slot_error() {
    let cluster = TestCluster::spawn(3, 0);
    let redis = cluster.redis().await;
    let keys = KeySpace::new("rlcoalesce").unwrap();
    let minute = Duration::from_secs(60);
    for limit in [
        Limit::fixed_window(3, minute),
        Limit::sliding_log(3, minute),
        Limit::sliding_window(3, minute),
        Limit::token_bucket(3, 1, minute),
        Limit::gcra(1, minute, 3),
    ] {
        let limiter = RateLimiter::builder(redis.clone(), &keys, limit)
            .coalesce(true)
            .build()
            .unwrap();
        // 5 checks for each of 40 identities (on all three masters), all at once: batches hold
        // checks of many slots and are split by slot before sending.
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let limiter = limiter.clone();
                tokio::spawn(
                    async move { (i % 40, limiter.check(&format!("id:{}", i % 40)).await) },
                )
            })
            .collect();
        let mut admitted = [0; 40];
        for task in tasks {
            let (id, decision) = task.await.unwrap();
            if decision
                .unwrap_or_else(|e| panic!("{limit:?}: {e}"))
                .is_allowed()
            {
                admitted[id] += 1;
            }
        }
        assert_eq!(admitted, [3; 40], "{limit:?}");
    }
    let multi = redis_ratelimit::MultiLimiter::builder(redis.clone(), &keys)
        .limit("a", Limit::gcra(1, minute, 2))
        .limit("b", Limit::sliding_log(5, minute))
        .coalesce(true)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..120)
        .map(|i| {
            let multi = multi.clone();
            tokio::spawn(async move { multi.check(&format!("m:{}", i % 30)).await.unwrap() })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += usize::from(task.await.unwrap().is_allowed());
    }
    assert_eq!(allowed, 60, "two per identity");
}
