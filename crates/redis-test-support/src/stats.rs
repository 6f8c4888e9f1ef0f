//! What a server has run, from `INFO commandstats`: for tests and benches that count the
//! commands an operation sends.

use std::collections::HashMap;

use redis_core::{Redis, redis};

/// `INFO commandstats` as command name (lowercase, e.g. `evalsha`, `get`) -> calls.
///
/// # Panics
/// When the server does not answer `INFO`.
pub async fn command_calls(redis: &Redis) -> HashMap<String, u64> {
    let info: String = redis
        .query(redis::cmd("INFO").arg("commandstats"))
        .await
        .expect("INFO commandstats");
    parse_command_calls(&info)
}

/// `INFO commandstats` as in [`command_calls`], and the server's CPU seconds so far (`INFO cpu`:
/// `used_cpu_user` + `used_cpu_sys`), from one `INFO` call (which counts itself once).
///
/// # Panics
/// When the server does not answer `INFO`.
pub async fn command_calls_and_cpu(redis: &Redis) -> (HashMap<String, u64>, f64) {
    let info: String = redis
        .query(redis::cmd("INFO").arg("commandstats").arg("cpu"))
        .await
        .expect("INFO commandstats cpu");
    (parse_command_calls(&info), parse_server_cpu(&info))
}

/// The server's CPU seconds (user + system) of an `INFO cpu` reply.
pub fn parse_server_cpu(info: &str) -> f64 {
    info.lines()
        .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// The `cmdstat_<name>:calls=<n>,...` lines of an `INFO` reply as name -> calls.
pub fn parse_command_calls(info: &str) -> HashMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_calls_per_command() {
        let info = "# Commandstats\r\ncmdstat_get:calls=12,usec=30,usec_per_call=2.5\r\n\
                    cmdstat_evalsha:calls=3,usec=9\r\nused_memory:1\r\n";
        let calls = super::parse_command_calls(info);
        assert_eq!(calls.get("get"), Some(&12));
        assert_eq!(calls.get("evalsha"), Some(&3));
        assert_eq!(calls.len(), 2);
    }

    #[test]
    fn reads_cpu_as_user_plus_system() {
        let info = "# CPU\r\nused_cpu_sys:1.5\r\nused_cpu_user:2.25\r\nused_cpu_sys_children:9\r\n";
        assert!((super::parse_server_cpu(info) - 3.75).abs() < 1e-9);
    }
}
