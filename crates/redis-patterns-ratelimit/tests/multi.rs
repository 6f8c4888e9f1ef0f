//! Several limits per identity in one script: all or nothing, the binding limit, exactness under
//! 200 concurrent tasks in two processes (this test binary runs itself as the second), on one
//! server and on a 3-master cluster.

mod support;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use redis_ratelimit::{
    Limit, MultiLimiter, Outcome,
    redis_core::{Config, KeySpace, Redis, redis},
};
use redis_test_support::{TestCluster, TestContext, wait_until};
use support::{HOUR, MINUTE};

/// The limits of the exactness test: every algorithm, capacities small enough that 200 tasks
/// exhaust them and different enough that each one binds at some point.
fn mixed_limits() -> Vec<(&'static str, Limit)> {
    vec![
        ("fixed", Limit::fixed_window(97, HOUR)),
        ("gcra", Limit::gcra(1, HOUR, 83)),
        ("log", Limit::sliding_log(89, HOUR)),
        ("sliding", Limit::sliding_window(101, HOUR)),
        ("bucket", Limit::token_bucket(79, 1, HOUR)),
    ]
}

fn multi(redis: Redis, keys: &KeySpace, coalesce: bool) -> MultiLimiter {
    mixed_limits()
        .into_iter()
        .fold(MultiLimiter::builder(redis, keys), |b, (name, limit)| {
            b.limit(name, limit)
        })
        .coalesce(coalesce)
        .build()
        .unwrap()
}

/// Every key's value and remaining TTL: what a check may change.
async fn snapshot(redis: &Redis, limiter: &MultiLimiter, id: &str) -> Vec<(String, i64)> {
    let mut state = Vec::new();
    for key in limiter.keys(id).unwrap() {
        let kind: String = redis
            .query(redis::cmd("TYPE").arg(key.as_str()))
            .await
            .unwrap();
        let value = match kind.as_str() {
            "string" => {
                let v: Option<String> = redis
                    .query(redis::cmd("GET").arg(key.as_str()))
                    .await
                    .unwrap();
                v.unwrap_or_default()
            }
            "zset" => {
                let v: Vec<String> = redis
                    .query(
                        redis::cmd("ZRANGE")
                            .arg(key.as_str())
                            .arg(0)
                            .arg(-1)
                            .arg("WITHSCORES"),
                    )
                    .await
                    .unwrap();
                v.join(",")
            }
            other => other.to_owned(),
        };
        let ttl: i64 = redis
            .query(redis::cmd("PTTL").arg(key.as_str()))
            .await
            .unwrap();
        state.push((value, ttl));
    }
    state
}

#[tokio::test]
async fn a_denial_takes_nothing_from_the_other_limits() {
    let ctx = TestContext::new().await;
    let limiter = MultiLimiter::builder(ctx.redis().clone(), &ctx.keyspace())
        .limit("second", Limit::gcra(1, HOUR, 3))
        .limit("hour", Limit::fixed_window(10, HOUR))
        .limit("log", Limit::sliding_log(10, HOUR))
        .limit("bucket", Limit::token_bucket(10, 1, HOUR))
        .limit("sliding", Limit::sliding_window(10, HOUR))
        .build()
        .unwrap();
    let first = limiter.check_n("u", 2).await.unwrap();
    assert!(first.is_allowed());
    assert_eq!(first.binding_name(), "second", "the fewest units left bind");
    assert_eq!(first.decision().remaining(), 1);
    assert_eq!(first.headers()[1], ("RateLimit-Remaining", "1".to_owned()));
    assert!(first.limits().all(|(_, d)| d.is_allowed()));

    let before = snapshot(ctx.redis(), &limiter, "u").await;
    let denied = limiter.check_n("u", 2).await.unwrap();
    assert_eq!(denied.outcome(), Outcome::Denied);
    assert_eq!(denied.binding_name(), "second");
    let after = snapshot(ctx.redis(), &limiter, "u").await;
    for (i, ((v0, t0), (v1, t1))) in before.iter().zip(&after).enumerate() {
        assert_eq!(v0, v1, "limit #{i} changed on a denial");
        assert!(t1 <= t0, "limit #{i}'s TTL grew on a denial");
    }
    // The limits that would have passed report what they still hold.
    let hour = denied.limits().find(|(n, _)| *n == "hour").unwrap().1;
    assert!(hour.is_allowed());
    assert_eq!(hour.remaining(), 8);
    // The remaining unit of the burst still passes, and is taken from every limit.
    let last = limiter.check("u").await.unwrap();
    assert!(last.is_allowed());
    for (name, d) in last.limits() {
        let expected = if name == "second" { 0 } else { 7 };
        assert_eq!(d.remaining(), expected, "{name}");
    }
}

#[tokio::test]
async fn retry_after_is_when_every_limit_would_pass() {
    let ctx = TestContext::new().await;
    let limiter = MultiLimiter::builder(ctx.redis().clone(), &ctx.keyspace())
        .limit("minute", Limit::fixed_window(2, MINUTE))
        .limit("hour", Limit::fixed_window(2, HOUR))
        .limit("wide", Limit::fixed_window(100, HOUR))
        .build()
        .unwrap();
    assert!(limiter.check_n("u", 2).await.unwrap().is_allowed());
    let denied = limiter.check("u").await.unwrap();
    assert_eq!(denied.binding_name(), "hour");
    assert_eq!(denied.binding(), 1);
    let retry = denied.retry_after().unwrap();
    assert!(
        retry > HOUR - Duration::from_secs(60) && retry <= HOUR,
        "{retry:?}"
    );
    let minute = denied.limits().next().unwrap().1;
    assert!(minute.retry_after().unwrap() <= MINUTE);
    assert_eq!(denied.decision().limit(), 2);
    let retry_header = denied
        .headers()
        .into_iter()
        .find(|(n, _)| *n == "Retry-After");
    assert_eq!(
        retry_header.unwrap().1,
        denied.decision().retry_after_secs().unwrap().to_string()
    );

    // A cost above one capacity can never pass: that limit binds, nothing is sent.
    let never = limiter.check_n("u", 3).await.unwrap();
    assert!(never.can_never_pass());
    assert_eq!(never.binding_name(), "minute");
}

#[tokio::test]
async fn bad_configurations_are_typed_errors() {
    let ctx = TestContext::new().await;
    let b = || MultiLimiter::builder(ctx.redis().clone(), &ctx.keyspace());
    let s = Duration::from_secs(1);
    for builder in [
        b(),
        b().limit("a", Limit::gcra(1, s, 1))
            .limit("a", Limit::gcra(2, s, 2)),
        b().limit("a:b", Limit::gcra(1, s, 1)),
        b().limit("a", Limit::gcra(1, s, 0)),
        b().limit("a", Limit::gcra(1, s, 1))
            .on_redis_error(redis_ratelimit::FailurePolicy::Local(Limit::gcra(1, s, 1))),
    ] {
        assert!(matches!(
            builder.build(),
            Err(redis_ratelimit::Error::InvalidConfig(_))
        ));
    }
    let limiter = b().limit("a", Limit::gcra(1, s, 1)).build().unwrap();
    assert!(matches!(
        limiter.check_n("u", 0).await,
        Err(redis_ratelimit::Error::InvalidArgument(_))
    ));
}

/// Environment of the second process: where to connect, the key prefix, and whether to coalesce.
const CHILD_URLS: &str = "RATELIMIT_MULTI_CHILD_URLS";
const CHILD_PREFIX: &str = "RATELIMIT_MULTI_CHILD_PREFIX";
const CHILD_CLUSTER: &str = "RATELIMIT_MULTI_CHILD_CLUSTER";
const IDENTITY: &str = "shared";
const TASKS_PER_PROCESS: usize = 100;

/// Sets a start-line flag (on the flag's own slot; it lives a minute).
async fn flag(redis: &Redis, keys: &KeySpace, name: &str) {
    let key = keys.key(name).unwrap();
    let _: () = redis
        .query(
            redis::cmd("SET")
                .arg(key.as_str())
                .arg(1)
                .arg("PX")
                .arg(60_000),
        )
        .await
        .unwrap();
}

async fn is_set(redis: &Redis, keys: &KeySpace, name: &str) -> bool {
    let key = keys.key(name).unwrap();
    let n: i64 = redis
        .query(redis::cmd("EXISTS").arg(key.as_str()))
        .await
        .unwrap();
    n == 1
}

/// 100 tasks, each checking the shared identity a few times at costs 1 to 3; the admitted cost.
async fn hammer(limiter: MultiLimiter, seed: u64) -> u64 {
    let tasks: Vec<_> = (0..TASKS_PER_PROCESS as u64)
        .map(|t| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let mut admitted = 0;
                for round in 0..4u64 {
                    let cost = 1 + (seed * 31 + t * 7 + round * 3) % 3;
                    if limiter.check_n(IDENTITY, cost).await.unwrap().is_allowed() {
                        admitted += cost;
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    admitted
}

/// The second process: started by `exactness_across_two_processes`, prints what it admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the second process of the two-process tests, started by them"]
async fn child_process() {
    let urls = std::env::var(CHILD_URLS).expect("started by a two-process test");
    let prefix = std::env::var(CHILD_PREFIX).unwrap();
    let config = if std::env::var(CHILD_CLUSTER).is_ok() {
        Config::builder().cluster(urls.split(',')).build().unwrap()
    } else {
        Config::from_url(&urls).unwrap()
    };
    let redis = Redis::connect(&config).await.unwrap();
    let keys = KeySpace::new(&prefix).unwrap();
    flag(&redis, &keys, "ready").await;
    wait_until("the first process's go", Duration::from_secs(20), || {
        is_set(&redis, &keys, "go")
    })
    .await;
    // The second process coalesces its checks: both paths share the keys and the exactness.
    let admitted = hammer(multi(redis, &keys, true), 2).await;
    println!("ADMITTED={admitted}");
}

async fn exactness_across_two_processes(redis: Redis, urls: Vec<String>, cluster: bool) {
    let prefix = format!("rlmulti{}x{}", std::process::id(), u8::from(cluster));
    let keys = KeySpace::new(&prefix).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URLS, urls.join(","))
        .env(CHILD_PREFIX, &prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if cluster {
        child.env(CHILD_CLUSTER, "1");
    }
    let child = child.spawn().unwrap();
    let limiter = multi(redis.clone(), &keys, false);
    // Both processes start checking together.
    wait_until("the second process", Duration::from_secs(30), || {
        is_set(&redis, &keys, "ready")
    })
    .await;
    flag(&redis, &keys, "go").await;
    let mine = hammer(limiter.clone(), 1).await;
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}");
    let theirs: u64 = stdout
        .lines()
        .find_map(|l| l.split("ADMITTED=").nth(1))
        .unwrap_or_else(|| panic!("no count from the child: {stdout}"))
        .parse()
        .unwrap();
    eprintln!("admitted: {mine} by this process, {theirs} by the other");
    let admitted = mine + theirs;
    let smallest = mixed_limits()
        .iter()
        .map(|(_, l)| l.capacity())
        .min()
        .unwrap();
    // 200 tasks asked for far more than any capacity: the smallest one was (nearly) exhausted,
    // and none over-admitted.
    assert!(
        admitted <= smallest,
        "{admitted} admitted, capacity {smallest}"
    );
    assert!(
        admitted + 3 > smallest,
        "only {admitted} of {smallest} admitted"
    );
    // Every limit holds exactly the admitted units: denials took nothing from any limit. (A
    // check of the smallest capacity is denied by every limit and reports what each holds.)
    let usage = limiter.check_n(IDENTITY, smallest).await.unwrap();
    assert!(usage.limits().all(|(_, d)| !d.is_allowed()));
    for ((name, limit), (_, d)) in mixed_limits().iter().zip(usage.limits()) {
        assert_eq!(
            d.remaining(),
            limit.capacity() - admitted,
            "{name}: the stored usage differs from the admitted total"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_limit_over_admits_across_two_processes_on_one_server() {
    let ctx = TestContext::new().await;
    exactness_across_two_processes(ctx.redis().clone(), vec![ctx.url().to_owned()], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_limit_over_admits_across_two_processes_on_a_cluster() {
    let cluster = TestCluster::spawn(3, 0);
    exactness_across_two_processes(cluster.redis().await, cluster.urls(), true).await;
}

#[tokio::test]
async fn the_draft_fields_list_every_policy_and_describe_the_binding_one() {
    let ctx = TestContext::new().await;
    let limiter = MultiLimiter::builder(ctx.redis().clone(), &ctx.keyspace())
        .limit("burst", Limit::gcra(10, MINUTE, 5))
        .limit(
            "daily",
            Limit::fixed_window(1000, Duration::from_secs(86_400)),
        )
        .build()
        .unwrap();
    let d = limiter.check("u").await.unwrap();
    let headers = d.draft_headers();
    assert_eq!(
        headers[0],
        (
            "RateLimit-Policy",
            r#""burst";q=5;w=30, "daily";q=1000;w=86400"#.to_owned()
        )
    );
    assert_eq!(headers[1], ("RateLimit", r#""burst";r=4;t=6"#.to_owned()));
    assert_eq!(headers.len(), 2);
}
