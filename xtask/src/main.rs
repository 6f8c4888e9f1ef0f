//! Project automation: `cargo xtask <command>`.
//!
//! - `test`  — picks a Redis (REDIS_URL, else Docker, else a local `redis-server`), runs every
//!   test (unit, integration with cluster/sentinel/fault tests, doc tests), every example and the
//!   demo, then stops what it started. The Prometheus example is started, scraped and checked
//!   against the metric names of docs/observability.md (`scrape.rs`). `--shared-only` keeps to
//!   the tests that need nothing but that one server (the grouping rule is in `groups.rs`).
//! - `bench` — the criterion benches against the same kind of server; extra args go to criterion;
//!   `--smoke` runs each bench once, unmeasured, as a test.
//! - `package` — packages every publishable crate and checks each builds from its tarball.
//! - `demo`  — a guided tour of every pattern crate against a Redis it starts for you.
//! - `doctor` — `redis-patterns doctor` against that same kind of server (`doctor.rs`).
//! - `lint`  — `fmt --check`, `clippy -D warnings` (all features, then the published crates'
//!   defaults), docs with `-D warnings`.
//! - `tidy`  — the layout rules of docs/architecture.md (also run by `lint` and as a test).
//! - `ci`    — `lint` then `test`: if it passes locally, CI passes.
//!
//! Only `std`: the xtask must build fast on a fresh machine.

mod doctor;
mod groups;
mod json;
mod package;
mod redis;
mod scrape;
mod tidy;
mod workspace;

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

const USAGE: &str = "\
usage: cargo xtask <command> [flags] [-- args]

commands:
  test [--shared-only]
          run all tests, doc tests, examples and the demo against a real Redis;
          --shared-only: only the tests that need nothing but the server at REDIS_URL
          (see \"test groups\" below), plus doc tests, examples and the demo
  bench [--smoke]
          run the criterion benches (args after -- go to criterion, e.g. `-- core`);
          --smoke: run each bench once in criterion's test mode (`-- --test`), built
          with the dev profile; checks the benches build and run, measures nothing
  package package every publishable crate (publish != false) in dependency order and check
          that each builds from its own tarball; prints the manifest `exclude` entries a crate
          needs when it ships files that cannot build there (args after -- go to
          `cargo package`, e.g. `-- --allow-dirty`)
  demo    a guided tour of every pattern crate
  doctor [--strict]
          `redis-patterns doctor` against the same Redis as `test` (args after -- go to it,
          e.g. `-- --patterns lock,session --json`); fails when it cannot run, and with
          --strict also on a finding of error severity
  lint    tidy, fmt --check, clippy -D warnings (all features, then the published crates'
          defaults), rustdoc -D warnings
  tidy    the layout rules of docs/architecture.md (scripts, error/config files, test
          helpers, file length, dependencies)
  ci      lint + test

Redis: REDIS_URL when set; else Docker when an engine answers, with the image REDIS_IMAGE
(default redis:7; e.g. redis:7.2, valkey/valkey:8); else a local `redis-server`
(REDIS_SERVER_BIN overrides the path). Cluster, sentinel and fault-injection tests always
start their own local redis-server processes.

test groups: a test is a local-binaries test (it starts its own redis-server processes:
cluster, Sentinel, fault proxy, a server it kills or restarts) when its test binary, the file
name under tests/, is or starts with `<word>_` for a word in
  cluster sentinel failover failure failures fault faults soak redlock tls local
or when it sits in a `mod local { .. }` of any other test file. Every other test must need
only REDIS_URL (TestContext::new()). `test --shared-only` prints both groups, and also leaves
out (with a warning naming them) tests whose source spawns servers but breaks the rule.";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let flags: Vec<&str> = rest
        .iter()
        .map(String::as_str)
        .take_while(|a| *a != "--")
        .collect();
    let passthrough: Vec<String> = rest
        .iter()
        .skip_while(|a| *a != "--")
        .skip(1)
        .cloned()
        .collect();
    let result = match command {
        "test" => known_flags(&flags, &["--shared-only"])
            .and_then(|()| test(flags.contains(&"--shared-only"), &passthrough)),
        "bench" => known_flags(&flags, &["--smoke"])
            .and_then(|()| bench(flags.contains(&"--smoke"), &passthrough)),
        "package" => known_flags(&flags, &[]).and_then(|()| package::run(&passthrough)),
        "demo" => demo(),
        "doctor" => known_flags(&flags, &["--strict"])
            .and_then(|()| doctor::run(flags.contains(&"--strict"), &passthrough)),
        "lint" => lint(),
        "tidy" => tidy::run(&root()),
        "ci" => lint().and_then(|()| test(false, &passthrough)),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An error naming the first of `given` that is not in `known`.
fn known_flags(given: &[&str], known: &[&str]) -> Result<(), String> {
    match given.iter().find(|f| !known.contains(f)) {
        Some(flag) => Err(format!("unknown flag `{flag}`\n\n{USAGE}")),
        None => Ok(()),
    }
}

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `cargo` (the one running the xtask, via `CARGO`), in the workspace root.
fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.current_dir(root());
    cmd
}

/// Runs a command, echoing it first; an unsuccessful exit is an error.
fn run(mut cmd: Command) -> Result<(), String> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("\n$ {shown}");
    let started = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if status.success() {
        println!("({shown}: {:.0?})", started.elapsed());
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `cargo xtask test`: the suite (or the shared group), doc tests, examples and the demo.
fn test(shared_only: bool, extra: &[String]) -> Result<(), String> {
    let server = redis::Server::pick()?;
    let url = server.url().to_owned();
    let started = Instant::now();

    if shared_only {
        shared_tests(&url, extra)?;
    } else {
        all_tests(&url, extra)?;
    }

    let mut doc = cargo();
    doc.args(["test", "--workspace", "--all-features", "--locked", "--doc"])
        .env("REDIS_URL", &url);
    run(doc)?;

    for (package, example) in examples()? {
        if scrape::SERVED_EXAMPLES.contains(&(package.as_str(), example.as_str())) {
            continue;
        }
        let mut cmd = cargo();
        cmd.args([
            "run",
            "--quiet",
            "--locked",
            "--all-features",
            "-p",
            &package,
            "--example",
            &example,
        ])
        .env("REDIS_URL", &url);
        run(cmd)?;
    }

    scrape::check(&root(), cargo(), &url)?;

    let mut demo = cargo();
    demo.args(["run", "--quiet", "--locked", "-p", "redis-patterns-demo"])
        .env("REDIS_URL", &url);
    run(demo)?;

    let which = if shared_only { "shared-server" } else { "all" };
    println!(
        "\n{which} tests, doc tests, examples and the demo passed in {:.0?} (Redis: {})",
        started.elapsed(),
        server.describe()
    );
    Ok(())
}

/// Unit and integration tests of the whole workspace: nextest when installed, else `cargo test`.
fn all_tests(url: &str, extra: &[String]) -> Result<(), String> {
    if has_nextest() {
        let mut cmd = nextest("run");
        cmd.args(["--profile", "ci"])
            .args(extra)
            .env("REDIS_URL", url);
        run(cmd)
    } else {
        println!("(cargo-nextest not found: using cargo test)");
        let mut cmd = cargo();
        cmd.args([
            "test",
            "--workspace",
            "--all-features",
            "--locked",
            "--lib",
            "--bins",
            "--tests",
        ]);
        cmd.args(extra).env("REDIS_URL", url);
        run(cmd)
    }
}

/// `cargo nextest <subcommand>` over the whole workspace with all features, `--locked`.
fn nextest(subcommand: &str) -> Command {
    let mut cmd = cargo();
    cmd.args([
        "nextest",
        subcommand,
        "--workspace",
        "--all-features",
        "--locked",
    ]);
    cmd
}

/// The shared group of unit and integration tests (see `groups.rs`): lists the tests it leaves
/// out, then runs the others against `url`.
fn shared_tests(url: &str, extra: &[String]) -> Result<(), String> {
    if !has_nextest() {
        return Err(
            "`test --shared-only` needs cargo-nextest (the groups are nextest filter \
                    expressions): cargo install cargo-nextest --locked"
                .to_owned(),
        );
    }
    let packages = workspace::packages()?;
    let mut left_out = groups::local_by_rule();
    let local_binaries: Vec<String> = packages
        .iter()
        .flat_map(|p| {
            p.targets
                .iter()
                .filter(|t| t.kind == "test" && groups::is_local_binary(&t.name))
                .map(move |t| format!("{}::{}", p.name, t.name))
        })
        .collect();
    println!("shared-server group: every test except the local-binaries group, against {url}");
    println!(
        "left out, local-binaries test binaries: {}",
        local_binaries.join(" ")
    );
    println!(
        "left out, tests in `mod {}` of other binaries (listed below)",
        groups::LOCAL_MODULE
    );
    let breakers = groups::rule_breakers(&packages);
    if !breakers.is_empty() {
        println!(
            "warning: {} test(s) start their own servers but are not named by the rule; left out \
             until moved into `mod {}` or a local-binaries file:",
            breakers.len(),
            groups::LOCAL_MODULE
        );
    }
    for breaker in &breakers {
        println!("  {} {}", breaker.binary_id, breaker.test);
        left_out.push_str(&format!(
            " | (binary_id({}) & test(={}))",
            breaker.binary_id, breaker.test
        ));
    }
    println!("\nthe tests left out (this also builds what the run needs):");
    let mut list = nextest("list");
    list.args(["--message-format", "oneline", "-E", &left_out]);
    run(list)?;
    let mut cmd = nextest("run");
    cmd.args(["--profile", "ci", "-E", &format!("not ({left_out})")])
        .args(extra)
        .env("REDIS_URL", url);
    run(cmd)
}

/// `(package, example)` for every example target of a workspace member, from `cargo metadata`
/// (so package names need not match directory names).
fn examples() -> Result<Vec<(String, String)>, String> {
    let mut found: Vec<(String, String)> = workspace::packages()?
        .into_iter()
        .flat_map(|p| {
            p.targets
                .into_iter()
                .filter(|t| t.kind == "example")
                .map(move |t| (p.name.clone(), t.name))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// `cargo xtask bench`: the criterion benches of every package that has any; with `smoke`, each
/// bench runs once in criterion's test mode (`-- --test`) instead of being measured, built with
/// the dev profile (about a minute on two cores after `test`, against four for `bench`'s optimized
/// build from scratch), since nothing is timed.
fn bench(smoke: bool, extra: &[String]) -> Result<(), String> {
    let server = redis::Server::pick()?;
    let mut cmd = cargo();
    cmd.args(["bench", "--locked"]);
    if smoke {
        cmd.args(["--profile", "dev"]);
    }
    let packages = workspace::packages()?;
    for package in packages
        .iter()
        .filter(|p| p.targets.iter().any(|t| t.kind == "bench"))
    {
        cmd.args(["-p", &package.name]);
    }
    let mut criterion = extra.to_vec();
    if smoke {
        criterion.push("--test".to_owned());
    }
    if !criterion.is_empty() {
        cmd.arg("--").args(criterion);
    }
    cmd.env("REDIS_URL", server.url());
    run(cmd)
}

fn demo() -> Result<(), String> {
    let server = redis::Server::pick()?;
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--locked", "-p", "redis-patterns-demo"])
        .env("REDIS_URL", server.url());
    run(cmd)
}

fn lint() -> Result<(), String> {
    tidy::run(&root())?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    // The published crates with their default features, as a dependent gets them: code that
    // only a feature uses must not warn without it (the run above turns every feature on).
    let mut defaults = cargo();
    defaults.args(["clippy", "--lib", "--bins", "--locked"]);
    for package in workspace::packages()?.iter().filter(|p| p.publishable) {
        defaults.args(["-p", &package.name]);
    }
    defaults.args(["--", "-D", "warnings"]);
    run(defaults)?;
    let mut doc = cargo();
    doc.args([
        "doc",
        "--workspace",
        "--all-features",
        "--no-deps",
        "--locked",
    ])
    .env("RUSTDOCFLAGS", "-D warnings");
    run(doc)
}
