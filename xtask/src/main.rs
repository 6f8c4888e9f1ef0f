//! Project automation: `cargo xtask <command>`.
//!
//! - `test`  — picks a Redis (REDIS_URL, else Docker, else a local `redis-server`), runs every
//!   test (unit, integration with cluster/sentinel/fault tests, doc tests), every example and the
//!   demo, then stops what it started.
//! - `bench` — the criterion benches against the same kind of server; extra args go to criterion.
//! - `demo`  — a guided tour of every pattern crate against a Redis it starts for you.
//! - `lint`  — `fmt --check`, `clippy -D warnings`, docs with `-D warnings`.
//! - `tidy`  — the layout rules of docs/architecture.md (also run by `lint` and as a test).
//! - `ci`    — `lint` then `test`: if it passes locally, CI passes.
//!
//! Only `std`: the xtask must build fast on a fresh machine.

mod redis;
mod tidy;

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

const USAGE: &str = "\
usage: cargo xtask <command> [-- args]

commands:
  test    run all tests, doc tests, examples and the demo against a real Redis
  bench   run the criterion benches (args after -- go to criterion, e.g. `-- core`)
  demo    a guided tour of every pattern crate
  lint    tidy, fmt --check, clippy -D warnings, rustdoc -D warnings
  tidy    the layout rules of docs/architecture.md (scripts, error/config files, test
          helpers, file length, dependencies)
  ci      lint + test

Redis: REDIS_URL when set; else Docker (image redis:7) when an engine answers; else a local
`redis-server` (REDIS_SERVER_BIN overrides the path). Cluster, sentinel and fault-injection tests
always start their own local redis-server processes.";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let passthrough: Vec<String> = rest
        .iter()
        .skip_while(|a| *a != "--")
        .skip(1)
        .cloned()
        .collect();
    let result = match command {
        "test" => test(&passthrough),
        "bench" => bench(&passthrough),
        "demo" => demo(),
        "lint" => lint(),
        "tidy" => tidy::run(&root()),
        "ci" => lint().and_then(|()| test(&passthrough)),
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

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

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

fn test(extra: &[String]) -> Result<(), String> {
    let server = redis::Server::pick()?;
    let url = server.url().to_owned();
    let started = Instant::now();

    if has_nextest() {
        let mut cmd = cargo();
        cmd.args([
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--locked",
        ]);
        cmd.args(["--profile", "ci"])
            .args(extra)
            .env("REDIS_URL", &url);
        run(cmd)?;
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
        cmd.args(extra).env("REDIS_URL", &url);
        run(cmd)?;
    }

    let mut doc = cargo();
    doc.args(["test", "--workspace", "--all-features", "--locked", "--doc"])
        .env("REDIS_URL", &url);
    run(doc)?;

    for (package, example) in examples()? {
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

    let mut demo = cargo();
    demo.args(["run", "--quiet", "--locked", "-p", "redis-patterns-demo"])
        .env("REDIS_URL", &url);
    run(demo)?;

    println!(
        "\nall tests, doc tests, examples and the demo passed in {:.0?} (Redis: {})",
        started.elapsed(),
        server.describe()
    );
    Ok(())
}

/// `(package, example)` for every `crates/<package>/examples/<example>.rs`.
fn examples() -> Result<Vec<(String, String)>, String> {
    let crates = root().join("crates");
    let mut found = Vec::new();
    let entries = std::fs::read_dir(&crates).map_err(|e| format!("{}: {e}", crates.display()))?;
    for entry in entries.flatten() {
        let dir = entry.path().join("examples");
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        let package = entry.file_name().to_string_lossy().into_owned();
        for file in files.flatten() {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "rs")
                && let Some(stem) = path.file_stem()
            {
                found.push((package.clone(), stem.to_string_lossy().into_owned()));
            }
        }
    }
    found.sort();
    Ok(found)
}

fn bench(extra: &[String]) -> Result<(), String> {
    let server = redis::Server::pick()?;
    let mut cmd = cargo();
    cmd.args(["bench", "--locked", "-p", "redis-patterns-benches"]);
    if !extra.is_empty() {
        cmd.arg("--").args(extra);
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
