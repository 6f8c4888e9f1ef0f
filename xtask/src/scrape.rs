//! The Prometheus example, checked end to end: `cargo xtask test` starts it, asks it to run every
//! pattern once (`GET /work`), scrapes `GET /metrics`, and checks that every metric named in
//! `docs/observability.md` is exported.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// Examples that serve until scraped: run by [`check`], not by the plain examples loop.
pub(crate) const SERVED_EXAMPLES: &[(&str, &str)] = &[("redis-patterns-demo", "prometheus")];

/// Counters that `GET /work` must have moved: proof the example recorded, not only registered.
const EXERCISED: &[&str] = &[
    "redis_patterns_core_scripts_total",
    "redis_patterns_ratelimit_decisions_total",
    "redis_patterns_cache_loads_total",
    "redis_patterns_lock_acquisitions_total",
    "redis_patterns_session_events_total",
    "redis_patterns_messaging_published_total",
];

/// How long the example may take to print its address, and to exit after its scrape.
const STARTUP: Duration = Duration::from_secs(120);
const SHUTDOWN: Duration = Duration::from_secs(30);

/// The metric names documented in `docs/observability.md` (first column of its tables).
pub(crate) fn documented_names(doc: &str) -> Vec<String> {
    let mut names: Vec<String> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("| `redis_patterns_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("redis_patterns_{name}"))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The metric families in a Prometheus text exposition (histogram series folded into their name).
pub(crate) fn exported_names(exposition: &str) -> Vec<String> {
    let mut names: Vec<String> = exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name)
                .to_owned()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The exercised counters of [`EXERCISED`] that have no series above zero in `exposition`.
pub(crate) fn unmoved(exposition: &str) -> Vec<&'static str> {
    EXERCISED
        .iter()
        .copied()
        .filter(|name| {
            !exposition.lines().any(|line| {
                let series = line.split(['{', ' ']).next().unwrap_or("");
                series == *name
                    && line
                        .rsplit(' ')
                        .next()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(|v| v > 0.0)
            })
        })
        .collect()
}

/// Runs the example against `url` and checks its scrape against `docs/observability.md`.
pub(crate) fn check(root: &Path, cargo: Command, url: &str) -> Result<(), String> {
    let doc_path = root.join("docs").join("observability.md");
    let doc =
        std::fs::read_to_string(&doc_path).map_err(|e| format!("{}: {e}", doc_path.display()))?;
    let documented = documented_names(&doc);
    if documented.is_empty() {
        return Err(format!("{}: no metric names found", doc_path.display()));
    }
    for (package, example) in SERVED_EXAMPLES {
        println!("\n$ cargo run -p {package} --example {example} -- --check (scraped)");
        let mut child = spawn(cargo_run(&cargo, package, example), url)?;
        let result = scrape(&mut child).and_then(|exposition| {
            let exported = exported_names(&exposition);
            let missing: Vec<&String> = documented
                .iter()
                .filter(|name| !exported.contains(name))
                .collect();
            let unmoved = unmoved(&exposition);
            if !unmoved.is_empty() {
                return Err(format!(
                    "{example}: GET /work recorded nothing in {unmoved:?}"
                ));
            }
            if missing.is_empty() {
                println!(
                    "({example}: all {} documented metrics exported)",
                    documented.len()
                );
                Ok(())
            } else {
                Err(format!(
                    "{example}: documented in docs/observability.md but not exported: {missing:?}"
                ))
            }
        });
        match result {
            Ok(()) => wait_exit(&mut child)?,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        }
    }
    Ok(())
}

fn cargo_run(cargo: &Command, package: &str, example: &str) -> Command {
    let mut cmd = Command::new(cargo.get_program());
    if let Some(dir) = cargo.get_current_dir() {
        cmd.current_dir(dir);
    }
    cmd.args([
        "run",
        "--quiet",
        "--locked",
        "--all-features",
        "-p",
        package,
        "--example",
        example,
        "--",
        "--check",
    ]);
    cmd
}

fn spawn(mut cmd: Command, url: &str) -> Result<Child, String> {
    cmd.env("REDIS_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd.spawn()
        .map_err(|e| format!("cannot start the example: {e}"))
}

/// Waits for `listening on http://ADDR`, then `GET /work` and `GET /metrics`.
fn scrape(child: &mut Child) -> Result<String, String> {
    let stdout = child.stdout.take().ok_or("the example has no stdout")?;
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("  {line}");
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + STARTUP;
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .map_err(|_| format!("the example did not print its address within {STARTUP:?}"))?;
        if let Some(addr) = line.strip_prefix("listening on http://") {
            break addr.trim().to_owned();
        }
    };
    let work = get(&addr, "/work")?;
    if !work.ends_with("ok\n") {
        return Err(format!("GET /work answered {work:?}"));
    }
    get(&addr, "/metrics")
}

/// A minimal HTTP/1.1 GET; returns the body of a 200 response.
fn get(addr: &str, path: &str) -> Result<String, String> {
    let mut stream =
        TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("GET {path}: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: malformed response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_owned())
}

fn wait_exit(child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + SHUTDOWN;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("the example exited with {status}")),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the example did not stop within {SHUTDOWN:?}"));
            }
            Err(e) => return Err(format!("waiting for the example: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_names_come_from_the_tables() {
        let doc = "text `redis_patterns_not_a_row`\n\
                   | `redis_patterns_cache_requests_total` | counter | ... |\n\
                   | `redis_patterns_lock_wait_seconds` | histogram | ... |\n\
                   | `redis_patterns_cache_requests_total` | counter | again |";
        assert_eq!(
            documented_names(doc),
            [
                "redis_patterns_cache_requests_total",
                "redis_patterns_lock_wait_seconds"
            ]
        );
    }

    #[test]
    fn histogram_series_fold_into_their_family() {
        let exposition = "# HELP redis_patterns_lock_wait_seconds x\n\
                          # TYPE redis_patterns_lock_wait_seconds histogram\n\
                          redis_patterns_lock_wait_seconds_bucket{name=\"a\",le=\"0.1\"} 1\n\
                          redis_patterns_lock_wait_seconds_sum{name=\"a\"} 0.01\n\
                          redis_patterns_lock_wait_seconds_count{name=\"a\"} 1\n\
                          redis_patterns_core_pool_timeouts_total 0\n";
        assert_eq!(
            exported_names(exposition),
            [
                "redis_patterns_core_pool_timeouts_total",
                "redis_patterns_lock_wait_seconds"
            ]
        );
    }

    #[test]
    fn counters_must_have_moved() {
        let exposition = "redis_patterns_core_scripts_total{script=\"x\",result=\"ok\"} 3\n\
                          redis_patterns_ratelimit_decisions_total{name=\"a\"} 0\n";
        let unmoved = unmoved(exposition);
        assert!(!unmoved.contains(&"redis_patterns_core_scripts_total"));
        assert!(unmoved.contains(&"redis_patterns_ratelimit_decisions_total"));
        assert!(unmoved.contains(&"redis_patterns_cache_loads_total"));
    }

    #[test]
    fn the_observability_doc_names_metrics() {
        let doc = std::fs::read_to_string(crate::root().join("docs/observability.md")).unwrap();
        assert!(documented_names(&doc).len() >= 40);
    }
}
