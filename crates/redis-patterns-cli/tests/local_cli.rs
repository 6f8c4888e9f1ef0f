//! The `redis-patterns` binary as a process, against real servers it starts: exit codes, the
//! one-line errors, and the `--json` documents.

use std::process::{Command, Output};

use redis_core::redis;
use redis_test_support::{TestCluster, TestServer, free_port};
use serde_json::Value;

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redis-patterns"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            stderr(output)
        )
    })
}

/// One line on stderr, no panic, no backtrace, exit code 2.
fn assert_fails_cleanly(output: &Output, mentions: &str) {
    let err = stderr(output);
    assert_eq!(code(output), 2, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("redis-patterns: "), "{err}");
    assert!(err.contains(mentions), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(output.stdout.is_empty());
}

fn healthy_server() -> TestServer {
    TestServer::builder()
        .args(["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .spawn()
}

#[test]
fn a_healthy_server_exits_0_and_an_error_finding_exits_1() {
    let good = healthy_server();
    let url = good.url();
    let output = cli(&["doctor", &url, "--patterns", "lock,session,messaging"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("no findings"), "{text}");

    let bad = TestServer::builder()
        .args(["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"])
        .spawn();
    let url = bad.url();
    let output = cli(&["doctor", &url, "--patterns", "lock", "--json"]);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let doc = json(&output);
    assert_eq!(doc["healthy"], false);
    assert_eq!(doc["patterns"], serde_json::json!(["lock"]));
    let first = &doc["findings"][0];
    assert_eq!(first["severity"], "error");
    assert_eq!(first["pattern"], "lock");
    assert_eq!(first["check"], "eviction-policy");
    assert_eq!(first["node"], format!("127.0.0.1:{}", bad.port()));
    assert_eq!(doc["nodes"][0]["maxmemory_policy"], "allkeys-lru");

    // The same server is fine for a cache: warnings at most, exit 0.
    let output = cli(&["doctor", &url, "--patterns", "cache", "--json"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(json(&output)["healthy"], true);
}

#[test]
fn warnings_alone_exit_0() {
    // No maxmemory: warnings for every pattern, no error for locks.
    let server = TestServer::builder()
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .spawn();
    let url = server.url();
    let output = cli(&["doctor", &url, "--patterns", "lock,cache", "--json"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let doc = json(&output);
    let findings = doc["findings"].as_array().unwrap();
    assert!(!findings.is_empty());
    assert!(findings.iter().all(|f| f["severity"] != "error"), "{doc}");
}

#[test]
fn an_unreachable_server_exits_2_with_one_line() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    assert_fails_cleanly(&cli(&["doctor", &url]), "cannot connect");
    assert_fails_cleanly(&cli(&["audit", &url, "--prefix", "app"]), "cannot connect");
}

#[test]
fn a_malformed_url_and_bad_arguments_exit_2() {
    assert_fails_cleanly(&cli(&["doctor", "nope://127.0.0.1"]), "bad URL");
    assert_fails_cleanly(&cli(&["doctor"]), "missing the server URL");
    assert_fails_cleanly(&cli(&["cure", "redis://127.0.0.1:1"]), "unknown command");
    assert_fails_cleanly(&cli(&["audit", "redis://127.0.0.1:1"]), "--prefix");
    assert_fails_cleanly(
        &cli(&["doctor", "redis://127.0.0.1:1", "--patterns", "locks"]),
        "unknown pattern `locks`",
    );
    assert_fails_cleanly(
        &cli(&["purge", "redis://127.0.0.1:1", "--prefix", "a b"]),
        "bad --prefix",
    );
    assert_fails_cleanly(&cli(&[]), "missing command");
    let help = cli(&["--help"]);
    assert_eq!(code(&help), 0);
    assert!(String::from_utf8_lossy(&help.stdout).contains("exit codes"));
}

#[test]
fn a_wrong_password_exits_2_without_showing_it() {
    let server = TestServer::builder().password("right-one").spawn();
    let url = format!("redis://:wrong-one@127.0.0.1:{}", server.port());
    let output = cli(&["doctor", &url]);
    assert_fails_cleanly(&output, "authentication failed");
    assert!(
        !stderr(&output).contains("wrong-one"),
        "{}",
        stderr(&output)
    );
    let good = cli(&["doctor", &server.url(), "--patterns", "cache"]);
    assert_eq!(code(&good), 0, "{}", stderr(&good));
}

#[test]
fn audit_and_purge_as_json() {
    let server = healthy_server();
    let url = server.url();
    let _: () = server
        .cmd(
            redis::cmd("SET")
                .arg("shop:cache:{a}")
                .arg(1)
                .arg("EX")
                .arg(60),
        )
        .unwrap();
    let _: () = server
        .cmd(redis::cmd("SET").arg("shop:cache:{b}").arg(1))
        .unwrap();
    let _: () = server
        .cmd(redis::cmd("SET").arg("shop:lock:{r}:fence").arg(3))
        .unwrap();
    let _: () = server
        .cmd(redis::cmd("SET").arg("other:cache:{a}").arg(1))
        .unwrap();

    let output = cli(&["audit", &url, "--prefix", "shop", "--json"]);
    assert_eq!(code(&output), 1, "a key without TTL: {}", stderr(&output));
    let doc = json(&output);
    assert_eq!(doc["healthy"], false);
    let audit = &doc["audit"];
    assert_eq!(audit["keys"], 3);
    assert_eq!(audit["per_pattern"]["cache"], 2);
    assert_eq!(audit["without_ttl"], serde_json::json!(["shop:cache:{b}"]));
    assert_eq!(audit["documented_without_ttl"], 1);

    let dry = cli(&["purge", &url, "--prefix", "shop", "--json"]);
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    let doc = json(&dry);
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["purge"]["matched"], 3);
    assert_eq!(doc["purge"]["removed"], 0);
    let size: i64 = server.cmd(&redis::cmd("DBSIZE")).unwrap();
    assert_eq!(size, 4);

    let done = cli(&["purge", &url, "--prefix", "shop", "--yes"]);
    assert_eq!(code(&done), 0, "{}", stderr(&done));
    assert!(String::from_utf8_lossy(&done.stdout).contains("removed 3 of 3"));
    let left: Vec<String> = server.cmd(redis::cmd("KEYS").arg("*")).unwrap();
    assert_eq!(left, ["other:cache:{a}"]);
    let clean = cli(&["audit", &url, "--prefix", "shop"]);
    assert_eq!(code(&clean), 0, "{}", stderr(&clean));
}

#[test]
fn the_doctor_reads_every_master_of_a_cluster() {
    let mut cluster = TestCluster::spawn(3, 0);
    for node in cluster.nodes().iter() {
        let _: () = node
            .cmd(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("64mb"))
            .unwrap();
    }
    let bad = &cluster.nodes()[2];
    let _: () = bad
        .cmd(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory-policy")
                .arg("volatile-lru"),
        )
        .unwrap();
    let bad_node = format!("127.0.0.1:{}", bad.port());
    let seeds = cluster.urls().join(",");
    let output = cli(&[
        "doctor",
        &seeds,
        "--cluster",
        "--patterns",
        "session",
        "--json",
    ]);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let doc = json(&output);
    assert_eq!(doc["nodes"].as_array().unwrap().len(), 3);
    let errors: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{doc}");
    assert_eq!(errors[0]["node"], bad_node.as_str());
}
