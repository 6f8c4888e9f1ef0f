//! The lock and the semaphore on a 3-master Redis Cluster: every resource's keys stay on one slot.

use std::{collections::HashSet, time::Duration};

use redis_core::KeySpace;
use redis_lock::{Lock, Semaphore};
use redis_test_support::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_semaphore_work_on_a_cluster() {
    let cluster = TestCluster::spawn(3, 0);
    let redis = cluster.redis().await;
    let keys = KeySpace::new("clu").unwrap();
    let lock = Lock::builder(redis.clone(), &keys)
        .ttl(Duration::from_secs(10))
        .build()
        .unwrap();
    let sem = Semaphore::builder(redis.clone(), &keys, 2)
        .ttl(Duration::from_secs(10))
        .build()
        .unwrap();

    // Enough resources to land on every master (3 slot ranges).
    let names: Vec<String> = (0..24).map(|i| format!("res-{i}")).collect();
    let ranges: HashSet<u16> = names
        .iter()
        .map(|n| lock.key(n).unwrap().slot() / (16_384 / 3 + 1))
        .collect();
    assert_eq!(ranges.len(), 3, "resources span all masters");

    for name in &names {
        let guard = lock.try_acquire(name).await.unwrap().expect("free");
        assert!(lock.try_acquire(name).await.unwrap().is_none());
        guard.extend(Duration::from_secs(10)).await.unwrap();
        let fence = guard.fence();
        guard.release().await.unwrap();
        let again = lock.acquire(name).await.unwrap();
        assert!(again.fence() > fence);
        again.release().await.unwrap();

        let a = sem.try_acquire(name).await.unwrap().unwrap();
        let b = sem.try_acquire(name).await.unwrap().unwrap();
        assert!(sem.try_acquire(name).await.unwrap().is_none());
        assert_eq!(sem.holders(name).await.unwrap(), 2);
        a.release().await.unwrap();
        b.release().await.unwrap();
    }
}
