//! The doctor behind Sentinel: it asks the current master, not the sentinels or the replica.

use redis_core::{
    doctor::{self, Requirements, Severity},
    redis,
};
use redis_test_support::TestSentinel;

static SESSIONS: Requirements = Requirements::new("session").no_eviction(
    Severity::Error,
    Some(Severity::Error),
    "an evicted session logs its user out",
);

#[tokio::test]
async fn the_doctor_checks_the_master_behind_sentinel() {
    let mut group = TestSentinel::spawn();
    let master = group.master();
    let master_node = format!("127.0.0.1:{}", master.port());
    for (name, value) in [("maxmemory", "64mb"), ("maxmemory-policy", "allkeys-lfu")] {
        let _: () = master
            .cmd(redis::cmd("CONFIG").arg("SET").arg(name).arg(value))
            .unwrap();
    }
    let redis = group.redis().await;
    let report = doctor::diagnose(&redis, &[&SESSIONS]).await.unwrap();
    assert_eq!(report.nodes.len(), 1, "{report:#?}");
    assert_eq!(report.nodes[0].node, master_node);
    assert_eq!(report.nodes[0].role.as_deref(), Some("master"));
    let errors: Vec<_> = report.at_least(Severity::Error).collect();
    assert_eq!(errors.len(), 1, "{report:#?}");
    assert_eq!(errors[0].node, master_node);
    assert_eq!(errors[0].check, "eviction-policy");
}
