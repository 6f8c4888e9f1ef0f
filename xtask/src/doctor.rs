//! `cargo xtask doctor`: the `redis-patterns doctor` command against the xtask's Redis (the same
//! server `test` picks: REDIS_URL, else Docker, else a local `redis-server`).
//!
//! Arguments after `--` go to the command (`-- --patterns lock --json`). A throw-away server
//! (Docker or local) has no persistence, so findings of error severity are expected there: they
//! are printed and the task succeeds, unless `--strict` is given. The task fails when the
//! command cannot run (exit code 2: no connection, bad arguments). Point REDIS_URL at a real
//! server, with `--strict`, to gate on it.

use std::time::Instant;

use crate::redis::Server;

/// Runs the doctor.
pub(crate) fn run(strict: bool, extra: &[String]) -> Result<(), String> {
    let server = Server::pick()?;
    println!("Redis: {}", server.describe());
    let mut cmd = crate::cargo();
    cmd.args([
        "run",
        "--quiet",
        "--locked",
        "-p",
        "redis-patterns-cli",
        "--bin",
        "redis-patterns",
        "--",
        "doctor",
        server.url(),
    ])
    .args(extra);
    let started = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run redis-patterns doctor: {e}"))?;
    println!("(redis-patterns doctor: {:.0?})", started.elapsed());
    match status.code() {
        Some(0) => Ok(()),
        Some(1) if !strict => {
            println!("findings of error severity above (expected on a throw-away server)");
            Ok(())
        }
        Some(1) => Err("redis-patterns doctor found errors (exit code 1)".to_owned()),
        _ => Err(format!("redis-patterns doctor could not run ({status})")),
    }
}
