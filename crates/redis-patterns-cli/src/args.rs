//! The command line, parsed by hand: three commands, a few flags.

use std::fmt;

/// The usage text.
pub(crate) const USAGE: &str = "\
usage: redis-patterns <command> <url>[,<url>...] [flags]

commands:
  doctor <url> [--patterns lock,session,...] [--prefix <p>] [--acl-user <user>]
          check that the server can keep each pattern's promises: eviction policy, memory limit,
          persistence, fsync, ACL permissions (ACL DRYRUN) and RESP3, on every master
  audit <url> --prefix <p>
          SCAN the keys under a key space on every master: counts per pattern, keys without
          TTL, the largest keys, the TTL distribution, our scripts in SLOWLOG
  purge <url> --prefix <p> [--yes]
          UNLINK every key under the key space on every master; without --yes only counts them

connection flags:
  --cluster            the URLs are seed nodes of a cluster
  --sentinel <name>    the URLs are sentinels monitoring the master <name>
output flags:
  --json               one JSON document on stdout instead of a table

patterns: cache, near-cache, lock, ratelimit, session, messaging (default: all but near-cache)

exit codes: 0 healthy; 1 a finding of error severity (doctor), keys without TTL (audit);
            2 bad arguments, or the server cannot be reached or refuses the credentials";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Doctor,
    Audit,
    Purge,
}

/// How to reach the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Deployment {
    Standalone,
    Cluster,
    Sentinel(String),
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Args {
    pub(crate) command: Command,
    pub(crate) urls: Vec<String>,
    pub(crate) deployment: Deployment,
    pub(crate) patterns: Option<Vec<String>>,
    pub(crate) prefix: Option<String>,
    pub(crate) acl_user: Option<String>,
    pub(crate) yes: bool,
    pub(crate) json: bool,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    Run(Box<Args>),
    Help,
    Version,
}

/// A command line that cannot run, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Parses the arguments after the program name.
pub(crate) fn parse(args: &[String]) -> Result<Parsed, UsageError> {
    let mut rest = args.iter();
    let command = match rest.next().map(String::as_str) {
        None => return Err(usage("missing command (doctor, audit or purge)")),
        Some("-h" | "--help" | "help") => return Ok(Parsed::Help),
        Some("-V" | "--version") => return Ok(Parsed::Version),
        Some("doctor") => Command::Doctor,
        Some("audit") => Command::Audit,
        Some("purge") => Command::Purge,
        Some(other) => return Err(usage(format!("unknown command `{other}`"))),
    };
    let mut parsed = Args {
        command,
        urls: Vec::new(),
        deployment: Deployment::Standalone,
        patterns: None,
        prefix: None,
        acl_user: None,
        yes: false,
        json: false,
    };
    while let Some(arg) = rest.next() {
        let mut value = |flag: &str| {
            rest.next()
                .filter(|v| !v.starts_with("--"))
                .cloned()
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--json" => parsed.json = true,
            "--yes" => parsed.yes = true,
            "--cluster" => parsed.deployment = Deployment::Cluster,
            "--sentinel" => parsed.deployment = Deployment::Sentinel(value("--sentinel")?),
            "--patterns" => {
                parsed.patterns = Some(
                    value("--patterns")?
                        .split(',')
                        .map(|p| p.trim().to_owned())
                        .filter(|p| !p.is_empty())
                        .collect(),
                );
            }
            "--prefix" => parsed.prefix = Some(value("--prefix")?),
            "--acl-user" => parsed.acl_user = Some(value("--acl-user")?),
            flag if flag.starts_with('-') => {
                return Err(usage(format!("unknown flag `{flag}`")));
            }
            url if parsed.urls.is_empty() => {
                parsed.urls = url.split(',').map(str::to_owned).collect();
            }
            extra => return Err(usage(format!("unexpected argument `{extra}`"))),
        }
    }
    if parsed.urls.is_empty() {
        return Err(usage("missing the server URL"));
    }
    if parsed.command != Command::Doctor {
        if parsed.prefix.is_none() {
            return Err(usage("--prefix is required: the key space to work on"));
        }
        if parsed.patterns.is_some() || parsed.acl_user.is_some() {
            return Err(usage("--patterns and --acl-user go with doctor"));
        }
    }
    if parsed.yes && parsed.command != Command::Purge {
        return Err(usage("--yes goes with purge"));
    }
    Ok(Parsed::Run(Box::new(parsed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn run(line: &str) -> Args {
        match parse(&args(line)) {
            Ok(Parsed::Run(args)) => *args,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn commands_parse_with_their_flags() {
        let doctor = run("doctor redis://h:1 --patterns lock,session --json");
        assert_eq!(doctor.command, Command::Doctor);
        assert_eq!(doctor.urls, ["redis://h:1"]);
        assert_eq!(
            doctor.patterns,
            Some(vec!["lock".to_owned(), "session".to_owned()])
        );
        assert!(doctor.json);
        let purge = run("purge redis://a:1,redis://b:2 --cluster --prefix app --yes");
        assert_eq!(purge.urls.len(), 2);
        assert_eq!(purge.deployment, Deployment::Cluster);
        assert!(purge.yes);
        let audit = run("audit --sentinel mymaster redis://s:26379 --prefix app");
        assert_eq!(audit.deployment, Deployment::Sentinel("mymaster".into()));
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for line in [
            "",
            "heal redis://h",
            "doctor",
            "audit redis://h",
            "purge redis://h --prefix",
            "doctor redis://h --frobnicate",
            "doctor redis://h extra",
            "doctor redis://h --yes",
            "audit redis://h --prefix a --patterns lock",
        ] {
            assert!(parse(&args(line)).is_err(), "{line}");
        }
        assert_eq!(parse(&args("--help")), Ok(Parsed::Help));
        assert_eq!(parse(&args("doctor -h")), Ok(Parsed::Help));
    }
}
