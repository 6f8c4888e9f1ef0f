//! The doctor, the audit and purge on a 3-master cluster: every master is asked, a finding names
//! the one misconfigured node, and purge touches exactly the key space.

use redis_core::{
    KeySpace, Redis,
    audit::{self, AuditOptions, PurgeMode},
    doctor::{self, Requirements, Severity},
    redis,
};
use redis_test_support::TestCluster;

static LOCKS: Requirements = Requirements::new("lock")
    .no_eviction(
        Severity::Error,
        Some(Severity::Error),
        "an evicted lock key lets a second holder in",
    )
    .no_ttl_keys(&["{*}:fence"]);

#[tokio::test]
async fn the_finding_names_the_one_misconfigured_master() {
    let mut cluster = TestCluster::spawn(3, 0);
    for node in cluster.nodes().iter() {
        let _: () = node
            .cmd(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("64mb"))
            .unwrap();
    }
    let bad = &cluster.nodes()[1];
    let _: () = bad
        .cmd(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory-policy")
                .arg("allkeys-lru"),
        )
        .unwrap();
    let bad_node = format!("127.0.0.1:{}", bad.port());
    let redis = cluster.redis().await;
    let report = doctor::diagnose(&redis, &[&LOCKS]).await.unwrap();
    assert_eq!(report.nodes.len(), 3, "{report:#?}");
    assert!(
        report
            .nodes
            .iter()
            .all(|n| n.cluster && n.resp3 == Some(true))
    );
    let errors: Vec<_> = report.at_least(Severity::Error).collect();
    assert_eq!(errors.len(), 1, "{report:#?}");
    assert_eq!(errors[0].node, bad_node);
    assert_eq!(errors[0].check, "eviction-policy");
    assert_eq!(errors[0].pattern, "lock");
}

/// Writes `count` keys named `<space>:<pattern>:{<i>}` with a TTL.
async fn plant(redis: &Redis, space: &KeySpace, pattern: &str, count: usize) {
    let keys = space.pattern(pattern).unwrap();
    for i in 0..count {
        let key = keys.key(&i.to_string()).unwrap();
        let _: () = redis
            .query(
                redis::cmd("SET")
                    .arg(key.as_str())
                    .arg("v")
                    .arg("EX")
                    .arg(600),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn audit_and_purge_see_exactly_the_key_space_on_every_master() {
    let cluster = TestCluster::spawn(3, 0);
    let redis = cluster.redis().await;
    let space = KeySpace::new("audited").unwrap();
    let other = KeySpace::new("audited-not").unwrap();
    plant(&redis, &space, "cache", 40).await;
    plant(&redis, &space, "lock", 5).await;
    plant(&redis, &other, "cache", 30).await;
    // A fencing counter (documented without TTL), a planted key without TTL, a big key.
    let fence = space
        .pattern("lock")
        .unwrap()
        .key("r")
        .unwrap()
        .companion("fence");
    let _: () = redis
        .query(redis::cmd("SET").arg(fence.as_str()).arg(7))
        .await
        .unwrap();
    let forgotten = space.pattern("cache").unwrap().key("forgotten").unwrap();
    let _: () = redis
        .query(redis::cmd("SET").arg(forgotten.as_str()).arg("x"))
        .await
        .unwrap();
    let big = space.pattern("cache").unwrap().key("big").unwrap();
    let _: () = redis
        .query(
            redis::cmd("SET")
                .arg(big.as_str())
                .arg(vec![b'x'; 300 * 1024])
                .arg("EX")
                .arg(600),
        )
        .await
        .unwrap();
    // Outside the key space: a big key without TTL that must not show up.
    let outside = other.pattern("cache").unwrap().key("huge").unwrap();
    let _: () = redis
        .query(
            redis::cmd("SET")
                .arg(outside.as_str())
                .arg(vec![b'y'; 600 * 1024]),
        )
        .await
        .unwrap();

    let report = audit::audit(&redis, &space, &[&LOCKS], &AuditOptions::default())
        .await
        .unwrap();
    assert_eq!(report.nodes.len(), 3);
    assert_eq!(report.keys, 40 + 5 + 3, "{report:#?}");
    assert_eq!(report.per_pattern["cache"], 42);
    assert_eq!(report.per_pattern["lock"], 6);
    assert_eq!(report.without_ttl, vec![forgotten.as_str().to_owned()]);
    assert_eq!(report.without_ttl_count, 1);
    assert_eq!(report.documented_without_ttl, 1);
    assert_eq!(report.largest[0].key, big.as_str(), "{report:#?}");
    assert!(report.largest[0].bytes >= 300 * 1024);
    assert_eq!(report.big_keys, 1);
    assert!(report.largest.iter().all(|k| k.key.starts_with("audited:")));
    let none = report.ttl.iter().find(|b| b.label == "none").unwrap();
    assert_eq!(none.keys, 2);
    let within_10m = report.ttl.iter().find(|b| b.label == "< 10m").unwrap();
    assert_eq!(within_10m.keys, 46);

    let counted = audit::purge(&redis, &space, PurgeMode::DryRun)
        .await
        .unwrap();
    assert_eq!((counted.matched, counted.removed), (48, 0));
    let again = audit::audit(&redis, &space, &[], &AuditOptions::default())
        .await
        .unwrap();
    assert_eq!(again.keys, 48, "the dry run removed nothing");

    let purged = audit::purge(&redis, &space, PurgeMode::Remove)
        .await
        .unwrap();
    assert_eq!((purged.matched, purged.removed), (48, 48));
    let after = audit::audit(&redis, &space, &[], &AuditOptions::default())
        .await
        .unwrap();
    assert_eq!(after.keys, 0);
    let untouched = audit::audit(&redis, &other, &[], &AuditOptions::default())
        .await
        .unwrap();
    assert_eq!(untouched.keys, 31, "keys outside the prefix stay");
}
