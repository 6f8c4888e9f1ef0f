//! Redlock over independent real masters: quorum, failures, fencing.

mod support;

use std::{sync::Arc, time::Duration};

use redis_core::{KeySpace, Redis, redis};
use redis_lock::{AcquireOptions, Error, Redlock};
use redis_test_support::{FaultProxy, TestMasters, TestServer, wait_for, wait_until};
use support::{assert_refused_as_lost, backoff, ms, race_counter, take_and_release};

async fn connect(masters: &TestMasters) -> Vec<Redis> {
    let mut out = Vec::new();
    for url in masters.urls() {
        out.push(Redis::open(&url).await.unwrap());
    }
    out
}

fn keys() -> KeySpace {
    KeySpace::new(&format!("rl{}", std::process::id())).unwrap()
}

/// A warmed-up Redlock (scripts loaded, connections up) reaching every master through a proxy
/// that then delays each direction by `latency`. Keep the proxies alive for the test.
async fn slow_redlock(
    masters: &mut TestMasters,
    ttl: Duration,
    instance_timeout: Duration,
    latency: Duration,
) -> (Vec<FaultProxy>, Redlock) {
    let mut proxies = Vec::new();
    let mut slow = Vec::new();
    for server in masters.servers().iter() {
        let proxy = FaultProxy::start(server.port()).await;
        slow.push(Redis::open(&proxy.url()).await.unwrap());
        proxies.push(proxy);
    }
    let redlock = Redlock::builder(slow, &keys())
        .ttl(ttl)
        .instance_timeout(instance_timeout)
        .build()
        .unwrap();
    // The next attempt is then one EVALSHA per master.
    take_and_release(redlock.try_acquire("warm")).await;
    for proxy in &proxies {
        proxy.set_latency(latency);
    }
    (proxies, redlock)
}

async fn wait_until_released(server: &TestServer, key: &str) {
    wait_until(
        "the release on every master",
        Duration::from_secs(10),
        || async {
            let exists: i64 = server.cmd(redis::cmd("EXISTS").arg(key)).unwrap();
            exists == 0
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redlock_keeps_granting_with_two_of_five_masters_killed_and_refuses_with_three() {
    let mut masters = TestMasters::spawn(5);
    let redlock = Redlock::builder(connect(&masters).await, &keys())
        .ttl(Duration::from_secs(10))
        .instance_timeout(ms(500))
        .retry_delay(backoff(ms(5), ms(50)))
        .wait(Duration::from_secs(20))
        .build()
        .unwrap();
    assert_eq!(redlock.quorum(), 3);

    let all = redlock.try_acquire("ledger").await.unwrap().expect("free");
    assert!(redlock.try_acquire("ledger").await.unwrap().is_none());
    let mut last = all.fence();
    all.release().await.unwrap();

    masters.servers()[0].kill();
    masters.servers()[3].kill();
    for _ in 0..5 {
        let guard = redlock.acquire("ledger").await.unwrap();
        assert!(guard.fence() > last, "{} > {last}", guard.fence());
        last = guard.fence();
        assert!(redlock.try_acquire("ledger").await.unwrap().is_none());
        guard.extend(Duration::from_secs(10)).await.unwrap();
        guard.release().await.unwrap();
    }

    masters.servers()[1].kill();
    let err = redlock.try_acquire("ledger").await.unwrap_err();
    assert!(
        matches!(err, Error::NoQuorum { granted, needed: 3, failed } if granted <= 2 && failed >= 3),
        "{err}"
    );
    let err = redlock
        .acquire_with_options("ledger", &AcquireOptions::new().wait(ms(1000)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoQuorum { .. }), "{err}");
    // The two survivors were cleaned up after the refused attempts.
    for i in [2, 4] {
        let key = format!("{}:lock:{{ledger}}", keys().prefix());
        let exists: i64 = masters.servers()[i]
            .cmd(redis::cmd("EXISTS").arg(&key))
            .unwrap();
        assert_eq!(exists, 0, "instance {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redlock_excludes_concurrent_holders_and_fences_increase_across_majorities() {
    let masters = TestMasters::spawn(3);
    let redis = connect(&masters).await;
    let redlock = Arc::new(
        Redlock::builder(redis.clone(), &keys())
            .ttl(Duration::from_secs(10))
            .instance_timeout(ms(2000))
            .retry_delay(backoff(ms(1), ms(10)))
            .wait(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let counter = keys().key("rl-counter").unwrap();
    let race = race_counter(8, 40, &redis[0], &counter, move || {
        let redlock = redlock.clone();
        async move { redlock.acquire("shared").await }
    })
    .await;
    assert_eq!(race.sections(), 320);
    race.assert_exclusive_in_fence_order();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_fences_keep_increasing_when_the_majority_changes() {
    let mut masters = TestMasters::spawn(3);
    let redlock = Redlock::builder(connect(&masters).await, &keys())
        .ttl(Duration::from_secs(10))
        .instance_timeout(ms(1000))
        .build()
        .unwrap();
    // Inflate one instance's counter, as if it had served many more acquisitions.
    let fence_key = format!("{}:lock:{{audit}}:fence", keys().prefix());
    let _: () = masters.servers()[0]
        .cmd(redis::cmd("SET").arg(&fence_key).arg(1000))
        .unwrap();
    let first = redlock.try_acquire("audit").await.unwrap().unwrap();
    assert!(
        first.fence() > 1000,
        "takes the largest counter: {}",
        first.fence()
    );
    first.release().await.unwrap();
    // Without the inflated instance, the other two must still hand out a larger token.
    masters.servers()[0].kill();
    let second = redlock.try_acquire("audit").await.unwrap().unwrap();
    assert!(second.fence() > 1000, "{}", second.fence());
    second.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_redlock_lease_is_lost_and_taken_over() {
    let masters = TestMasters::spawn(3);
    let redlock = Redlock::builder(connect(&masters).await, &keys())
        .ttl(ms(1000))
        .instance_timeout(ms(500))
        .build()
        .unwrap();
    let first = redlock.try_acquire("batch").await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(10), first.lost())
        .await
        .unwrap();
    let second = wait_for(
        "the redlock lease to expire",
        Duration::from_secs(20),
        || async {
            redlock
                .try_acquire_with_options(
                    "batch",
                    &AcquireOptions::new().ttl(Duration::from_secs(10)),
                )
                .await
                .ok()
                .flatten()
        },
    )
    .await;
    assert_refused_as_lost(first).await;
    second.release().await.unwrap();
}

#[tokio::test]
async fn redlock_rejects_bad_settings() {
    assert!(matches!(
        Redlock::builder(Vec::new(), &keys()).build(),
        Err(Error::InvalidConfig(_))
    ));
}

/// An attempt dropped while its requests are on the wire may still take the lock on the
/// masters; the token is then released on every one of them in the background, instead of
/// blocking the resource for the whole lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_redlock_attempt_is_released_on_every_master() {
    let mut masters = TestMasters::spawn(3);
    let (_proxies, redlock) = slow_redlock(
        &mut masters,
        Duration::from_secs(30),
        Duration::from_secs(5),
        ms(500),
    )
    .await;
    let cancelled = tokio::time::timeout(ms(50), redlock.acquire("orphan")).await;
    assert!(cancelled.is_err(), "dropped before the replies");

    let key = format!("{}:lock:{{orphan}}", keys().prefix());
    for server in masters.servers().iter() {
        // The request reached this master and took the lock ...
        wait_until("the late grant", Duration::from_secs(10), || async {
            let fence: Option<u64> = server
                .cmd(redis::cmd("GET").arg(format!("{key}:fence")))
                .unwrap();
            fence == Some(1)
        })
        .await;
        // ... and the background release frees it long before its 30 s lease ends.
        wait_until_released(server, &key).await;
    }
}

/// A majority that grants too slowly is no lock: with 250 ms each way to every master, the two
/// rounds take about 1 s, more than `ttl - drift` (988 ms) of a 1 s lease. The attempt is refused
/// and released on every master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_granted_too_slowly_is_refused_and_released() {
    let mut masters = TestMasters::spawn(3);
    let (_proxies, redlock) =
        slow_redlock(&mut masters, Duration::from_secs(1), ms(900), ms(250)).await;
    assert!(
        redlock.try_acquire("late").await.unwrap().is_none(),
        "a lease with no validity left is not handed out"
    );
    let key = format!("{}:lock:{{late}}", keys().prefix());
    for server in masters.servers().iter() {
        let fence: Option<u64> = server
            .cmd(redis::cmd("GET").arg(format!("{key}:fence")))
            .unwrap();
        assert_eq!(fence, Some(1), "every master granted");
        wait_until_released(server, &key).await;
    }
}
