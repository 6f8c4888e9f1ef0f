//! The doctor against real servers started with each bad setting: the expected findings with
//! their severity, and none of error severity on a well-configured server.

use redis_core::{
    KeySpace, Redis,
    doctor::{
        self, DoctorOptions, KEY, PreflightError, PreflightMode, Report, Requirements, SHA,
        Severity,
    },
    redis,
};
use redis_test_support::TestServer;

/// Locks: nothing may be evicted, a restart should keep the keys.
static LOCKS: Requirements = Requirements::new("lock")
    .no_eviction(
        Severity::Error,
        Some(Severity::Error),
        "an evicted lock key lets a second holder in",
    )
    .persistence(Severity::Warning, "a restart forgets every lock")
    .commands(&[&["EVALSHA", SHA, "1", KEY], &["GET", KEY]]);

/// Streams: `volatile-*` cannot reach them (no TTL), but persistence is a must.
static STREAMS: Requirements = Requirements::new("messaging")
    .no_eviction(
        Severity::Error,
        Some(Severity::Warning),
        "an evicted stream loses its entries",
    )
    .persistence(Severity::Error, "a restart loses every queued entry");

/// A cache: wants a memory limit and an evicting policy.
static CACHE: Requirements = Requirements::new("cache")
    .memory_limit(Severity::Warning, "the cache would grow without bound")
    .wants_eviction(Severity::Warning, "cache writes fail once memory is full")
    .resp3(Severity::Warning, "the near cache needs RESP3");

async fn diagnose(server: &TestServer, requirements: &[&Requirements]) -> Report {
    let redis = Redis::open(&server.url()).await.unwrap();
    doctor::diagnose(&redis, requirements).await.unwrap()
}

/// The one finding of `check` about `pattern`, with its severity.
fn severity_of(report: &Report, pattern: &str, check: &str) -> Option<Severity> {
    let found: Vec<_> = report
        .for_pattern(pattern)
        .filter(|f| f.check == check)
        .collect();
    assert!(found.len() <= 1, "{found:#?}");
    found.first().map(|f| f.severity)
}

fn limited(policy: &str) -> TestServer {
    TestServer::builder()
        .args(["--maxmemory", "64mb", "--maxmemory-policy", policy])
        .spawn()
}

#[tokio::test]
async fn allkeys_lru_is_an_error_for_locks_and_fine_for_a_cache() {
    let server = limited("allkeys-lru");
    let report = diagnose(&server, &[&LOCKS, &STREAMS, &CACHE]).await;
    assert_eq!(
        severity_of(&report, "lock", "eviction-policy"),
        Some(Severity::Error),
        "{report:#?}"
    );
    assert_eq!(
        severity_of(&report, "messaging", "eviction-policy"),
        Some(Severity::Error)
    );
    assert_eq!(severity_of(&report, "cache", "eviction-policy"), None);
    let finding = report.for_pattern("lock").next().unwrap();
    assert_eq!(finding.node, format!("127.0.0.1:{}", server.port()));
    assert!(finding.fix.contains("noeviction"), "{finding}");
    assert!(report.has_errors());
    let facts = &report.nodes[0];
    assert_eq!(facts.maxmemory_policy.as_deref(), Some("allkeys-lru"));
    assert_eq!(facts.maxmemory, Some(64 * 1024 * 1024));
    assert_eq!(facts.role.as_deref(), Some("master"));
    assert!(!facts.cluster);
    assert_eq!(facts.resp3, Some(true));
}

#[tokio::test]
async fn volatile_lru_reaches_lock_keys_but_not_streams() {
    let server = limited("volatile-lru");
    let report = diagnose(&server, &[&LOCKS, &STREAMS, &CACHE]).await;
    assert_eq!(
        severity_of(&report, "lock", "eviction-policy"),
        Some(Severity::Error),
        "{report:#?}"
    );
    assert_eq!(
        severity_of(&report, "messaging", "eviction-policy"),
        Some(Severity::Warning)
    );
    assert_eq!(severity_of(&report, "cache", "eviction-policy"), None);
}

#[tokio::test]
async fn no_maxmemory_is_a_warning_and_an_evicting_policy_is_not_yet_an_error() {
    // The test server's defaults: no maxmemory, no AOF, no RDB.
    let server = TestServer::builder()
        .args(["--maxmemory-policy", "allkeys-lru"])
        .spawn();
    let report = diagnose(&server, &[&LOCKS, &CACHE]).await;
    assert_eq!(
        severity_of(&report, "server", "maxmemory"),
        Some(Severity::Warning),
        "{report:#?}"
    );
    assert_eq!(
        severity_of(&report, "cache", "maxmemory"),
        Some(Severity::Warning)
    );
    // allkeys-lru without a limit evicts nothing yet: a warning, not an error.
    assert_eq!(
        severity_of(&report, "lock", "eviction-policy"),
        Some(Severity::Warning)
    );
}

#[tokio::test]
async fn appendonly_no_is_an_error_for_streams_and_a_warning_with_snapshots() {
    let server = limited("noeviction");
    let report = diagnose(&server, &[&LOCKS, &STREAMS]).await;
    assert_eq!(
        severity_of(&report, "messaging", "persistence"),
        Some(Severity::Error),
        "{report:#?}"
    );
    assert_eq!(
        severity_of(&report, "lock", "persistence"),
        Some(Severity::Warning)
    );
    assert_eq!(report.nodes[0].appendonly, Some(false));

    let snapshots = TestServer::builder()
        .args(["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"])
        .args(["--save", "3600 1"])
        .spawn();
    let report = diagnose(&snapshots, &[&STREAMS]).await;
    assert_eq!(
        severity_of(&report, "messaging", "persistence"),
        Some(Severity::Warning),
        "{report:#?}"
    );
}

#[tokio::test]
async fn an_acl_user_without_evalsha_is_an_error_naming_the_command() {
    let server = limited("noeviction");
    let _: () = server
        .cmd(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("app")
                .arg("on")
                .arg(">secret")
                .arg("~*")
                .arg("&*")
                .arg("+@all")
                .arg("-evalsha"),
        )
        .unwrap();
    let url = format!("redis://app:secret@127.0.0.1:{}", server.port());
    let redis = Redis::open(&url).await.unwrap();
    let report = doctor::diagnose(&redis, &[&LOCKS]).await.unwrap();
    let acl: Vec<_> = report
        .for_pattern("lock")
        .filter(|f| f.check == "acl")
        .collect();
    assert_eq!(acl.len(), 1, "{report:#?}");
    assert_eq!(acl[0].severity, Severity::Error);
    assert!(acl[0].problem.contains("EVALSHA"), "{}", acl[0]);
    assert!(acl[0].problem.contains("app"), "{}", acl[0]);
    assert_eq!(report.nodes[0].user.as_deref(), Some("app"));

    // An admin checking the application's user by name finds the same.
    let admin = Redis::open(&server.url()).await.unwrap();
    let options = DoctorOptions::default()
        .acl_user("app")
        .key_space(KeySpace::new("shop").unwrap());
    let report = doctor::diagnose_with(&admin, &[&LOCKS], &options)
        .await
        .unwrap();
    let acl: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.check == "acl")
        .collect();
    assert_eq!(acl.len(), 1, "{report:#?}");
    assert!(
        report.nodes[0]
            .acl
            .iter()
            .any(|c| c.command.starts_with("GET shop:lock:{doctor}") && c.denied.is_none()),
        "{report:#?}"
    );
}

#[tokio::test]
async fn a_key_pattern_outside_the_key_space_is_an_error() {
    let server = limited("noeviction");
    let _: () = server
        .cmd(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("narrow")
                .arg("on")
                .arg(">secret")
                .arg("~other:*")
                .arg("+@all"),
        )
        .unwrap();
    let admin = Redis::open(&server.url()).await.unwrap();
    let options = DoctorOptions::default()
        .acl_user("narrow")
        .key_space(KeySpace::new("shop").unwrap());
    let report = doctor::diagnose_with(&admin, &[&LOCKS], &options)
        .await
        .unwrap();
    let acl: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.check == "acl")
        .collect();
    assert_eq!(acl.len(), 2, "{report:#?}");
    assert!(acl.iter().all(|f| f.severity == Severity::Error));
}

#[tokio::test]
async fn a_well_configured_server_has_no_error() {
    let server = TestServer::builder()
        .args(["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .spawn();
    let report = diagnose(&server, &[&LOCKS, &STREAMS, &CACHE]).await;
    assert!(!report.has_errors(), "{report:#?}");
    // The cache would rather evict: one warning, nothing else.
    let warnings: Vec<_> = report.at_least(Severity::Warning).collect();
    assert_eq!(warnings.len(), 1, "{report:#?}");
    assert_eq!(warnings[0].pattern, "cache");
    let facts = &report.nodes[0];
    assert_eq!(facts.appendonly, Some(true));
    assert_eq!(facts.appendfsync.as_deref(), Some("always"));
    assert_eq!(facts.busy_reply_threshold_ms, Some(5000));
}

#[tokio::test]
async fn preflight_refuses_with_a_typed_error_and_warn_mode_does_not() {
    let server = limited("allkeys-lru");
    let redis = Redis::open(&server.url()).await.unwrap();
    let keys = KeySpace::new("app").unwrap();
    let err = doctor::preflight(&redis, &keys, &LOCKS, PreflightMode::Refuse)
        .await
        .expect_err("allkeys-lru breaks locks");
    match &err {
        PreflightError::Refused { pattern, findings } => {
            assert_eq!(*pattern, "lock");
            assert!(findings.iter().all(|f| f.severity == Severity::Error));
            assert!(findings.iter().any(|f| f.check == "eviction-policy"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("eviction-policy"), "{err}");

    let report = doctor::preflight(&redis, &keys, &LOCKS, PreflightMode::Warn)
        .await
        .unwrap();
    assert!(report.has_errors());
    let off = doctor::preflight(&redis, &keys, &LOCKS, PreflightMode::Off)
        .await
        .unwrap();
    assert!(off.findings.is_empty() && off.nodes.is_empty());
    doctor::preflight(&redis, &keys, &CACHE, PreflightMode::Refuse)
        .await
        .unwrap();
}

static COUNTER: redis_core::Script =
    redis_core::Script::new("test_counter", "return redis.call('INCR', KEYS[1])");
static COUNTERS: Requirements = Requirements::new("counter").scripts(&[&COUNTER]);

#[tokio::test]
async fn the_audit_names_our_scripts_in_the_slowlog() {
    // Every command is "slow": the script's call lands in SLOWLOG.
    let server = TestServer::builder()
        .args(["--slowlog-log-slower-than", "0"])
        .spawn();
    let redis = Redis::open(&server.url()).await.unwrap();
    let keys = KeySpace::new("slow").unwrap().pattern("counter").unwrap();
    let key = keys.key("a").unwrap();
    let n: i64 = COUNTER
        .call()
        .key(key.as_str())
        .invoke(&redis)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let report = redis_core::audit::audit(
        &redis,
        &KeySpace::new("slow").unwrap(),
        &[&COUNTERS],
        &redis_core::audit::AuditOptions::default(),
    )
    .await
    .unwrap();
    assert!(
        report
            .slow_scripts
            .iter()
            .any(|s| s.script == "test_counter"),
        "{report:#?}"
    );
    assert_eq!(report.per_pattern["counter"], 1);
    assert_eq!(report.without_ttl, vec![key.as_str().to_owned()]);
}

#[tokio::test]
async fn a_replica_is_an_error_for_every_pattern() {
    let master = limited("noeviction");
    let port = master.port().to_string();
    let replica = TestServer::builder()
        .args(["--replicaof", "127.0.0.1", port.as_str()])
        .args(["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"])
        .spawn();
    let report = diagnose(&replica, &[&CACHE]).await;
    assert_eq!(report.nodes[0].role.as_deref(), Some("slave"));
    assert_eq!(
        severity_of(&report, "server", "role"),
        Some(Severity::Error),
        "{report:#?}"
    );
}

#[tokio::test]
async fn a_user_who_may_not_ask_acl_dryrun_gets_an_info_not_an_error() {
    let server = limited("noeviction");
    let _: () = server
        .cmd(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("plain")
                .arg("on")
                .arg(">secret")
                .arg("~*")
                .arg("&*")
                .arg("+@all")
                .arg("-acl|dryrun"),
        )
        .unwrap();
    let url = format!("redis://plain:secret@127.0.0.1:{}", server.port());
    let redis = Redis::open(&url).await.unwrap();
    let report = doctor::diagnose(&redis, &[&LOCKS]).await.unwrap();
    assert_eq!(
        severity_of(&report, "server", "acl"),
        Some(Severity::Info),
        "{report:#?}"
    );
    assert!(report.for_pattern("lock").all(|f| f.check != "acl"));
    assert!(report.nodes[0].acl_error.is_some());
}
