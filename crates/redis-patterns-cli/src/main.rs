//! `redis-patterns`: the doctor, the key-space audit and purge of redis-patterns on the command
//! line. See `redis-patterns --help` and the crate's README.

mod args;
mod output;

use std::{process::ExitCode, time::Duration};

use redis_core::{
    Config, KeySpace, Redis,
    audit::{self, AuditOptions, PurgeMode},
    doctor::{self, DoctorOptions, Requirements},
};

use args::{Args, Command, Deployment, Parsed, USAGE};

/// Exit code: healthy.
const HEALTHY: u8 = 0;
/// Exit code: a finding of error severity (doctor), keys without TTL (audit).
const FOUND: u8 = 1;
/// Exit code: bad arguments, or no connection.
const FAILED: u8 = 2;

/// The patterns the doctor knows, by name.
const PATTERNS: &[(&str, &Requirements)] = &[
    ("cache", &redis_cache::REQUIREMENTS),
    ("near-cache", &redis_cache::NEAR_CACHE_REQUIREMENTS),
    ("lock", &redis_lock::REQUIREMENTS),
    ("ratelimit", &redis_ratelimit::REQUIREMENTS),
    ("session", &redis_session::REQUIREMENTS),
    ("messaging", &redis_messaging::REQUIREMENTS),
];

fn main() -> ExitCode {
    // Whatever happens, one line and exit code 2: never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unexpected failure".to_owned());
        eprintln!("redis-patterns: internal error: {message}");
        std::process::exit(i32::from(FAILED));
    }));
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(&argv) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::from(HEALTHY);
        }
        Ok(Parsed::Version) => {
            println!("redis-patterns {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::from(HEALTHY);
        }
        Err(e) => {
            eprintln!("redis-patterns: {e} (see redis-patterns --help)");
            return ExitCode::from(FAILED);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("redis-patterns: cannot start the async runtime: {e}");
            return ExitCode::from(FAILED);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("redis-patterns: {message}");
            ExitCode::from(FAILED)
        }
    }
}

/// Runs one command; `Err` is the one line to print before exiting with 2.
async fn run(args: &Args) -> Result<u8, String> {
    let requirements = requirements(args)?;
    let keys = args.prefix.as_deref().map(key_space).transpose()?;
    let redis = connect(args).await?;
    let shown = shown_urls(&args.urls);
    let failed = |e: redis_core::Error| format!("{shown}: {e}{}", detail(&e));
    match args.command {
        Command::Doctor => {
            let mut options = DoctorOptions::default();
            if let Some(user) = &args.acl_user {
                options = options.acl_user(user.clone());
            }
            if let Some(keys) = keys {
                options = options.key_space(keys);
            }
            let report = doctor::diagnose_with(&redis, &requirements, &options)
                .await
                .map_err(failed)?;
            let names: Vec<&str> = requirements.iter().map(|r| r.pattern()).collect();
            output::doctor(&report, &names, args.json);
            Ok(if report.has_errors() { FOUND } else { HEALTHY })
        }
        Command::Audit => {
            let keys = keys.ok_or("--prefix is required")?;
            let report = audit::audit(&redis, &keys, &requirements, &AuditOptions::default())
                .await
                .map_err(failed)?;
            output::audit(&report, args.json);
            Ok(if report.without_ttl_count > 0 {
                FOUND
            } else {
                HEALTHY
            })
        }
        Command::Purge => {
            let keys = keys.ok_or("--prefix is required")?;
            let mode = if args.yes {
                PurgeMode::Remove
            } else {
                PurgeMode::DryRun
            };
            let report = audit::purge(&redis, &keys, mode).await.map_err(failed)?;
            output::purge(&report, args.yes, args.json);
            Ok(HEALTHY)
        }
    }
}

/// The requirements of the patterns named (all but `near-cache` by default).
fn requirements(args: &Args) -> Result<Vec<&'static Requirements>, String> {
    let Some(names) = &args.patterns else {
        return Ok(PATTERNS
            .iter()
            .filter(|(name, _)| *name != "near-cache")
            .map(|(_, r)| *r)
            .collect());
    };
    if names.is_empty() {
        return Err("--patterns names no pattern".to_owned());
    }
    names
        .iter()
        .map(|name| {
            PATTERNS
                .iter()
                .find(|(known, _)| known == name)
                .map(|(_, r)| *r)
                .ok_or_else(|| {
                    let known: Vec<&str> = PATTERNS.iter().map(|(n, _)| *n).collect();
                    format!("unknown pattern `{name}` (known: {})", known.join(", "))
                })
        })
        .collect()
}

/// `app` or `app:lock` as a key space.
fn key_space(prefix: &str) -> Result<KeySpace, String> {
    let mut segments = prefix.split(':');
    let first = segments.next().unwrap_or_default();
    let mut keys = KeySpace::new(first).map_err(|e| format!("bad --prefix `{prefix}`: {e}"))?;
    for segment in segments {
        keys = keys
            .pattern(segment)
            .map_err(|e| format!("bad --prefix `{prefix}`: {e}"))?;
    }
    Ok(keys)
}

/// Connects as the flags say, with short time-outs.
async fn connect(args: &Args) -> Result<Redis, String> {
    let shown = shown_urls(&args.urls);
    let builder = Config::builder()
        .connect_timeout(Duration::from_secs(3))
        .response_timeout(Some(Duration::from_secs(10)));
    let builder = match &args.deployment {
        Deployment::Standalone if args.urls.len() == 1 => builder.url(args.urls[0].clone()),
        Deployment::Standalone => {
            return Err("several URLs need --cluster or --sentinel <name>".to_owned());
        }
        Deployment::Cluster => builder.cluster(args.urls.clone()),
        Deployment::Sentinel(service) => builder.sentinel(args.urls.clone(), service.clone()),
    };
    let config = builder
        .build()
        .map_err(|e| format!("bad URL {shown}: {e}"))?;
    Redis::connect(&config)
        .await
        .map_err(|e| format!("cannot connect to {shown}: {e}{}", detail(&e)))
}

/// The server's words, when an error carries them (`WRONGPASS ...`, `Connection refused`).
fn detail(e: &redis_core::Error) -> String {
    match e.redis_error() {
        Some(inner) if !e.to_string().contains(&inner.to_string()) => format!(" ({inner})"),
        _ => String::new(),
    }
}

/// The URLs with any password replaced by `***`, for messages.
fn shown_urls(urls: &[String]) -> String {
    urls.iter()
        .map(|url| redact(url))
        .collect::<Vec<_>>()
        .join(",")
}

/// `redis://user:secret@host` → `redis://user:***@host`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(redact("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert_eq!(redact("nonsense"), "nonsense");
    }

    #[test]
    fn prefixes_become_key_spaces() {
        assert_eq!(key_space("app:lock").unwrap().prefix(), "app:lock");
        assert!(key_space("").is_err());
        assert!(key_space("a b").is_err());
        assert!(key_space("app:").is_err());
    }
}
