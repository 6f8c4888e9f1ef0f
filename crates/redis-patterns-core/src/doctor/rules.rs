//! The checks: a node's facts against each pattern's [`Requirements`].

use super::{Finding, NodeFacts, Requirements, Severity};

/// A finding about `pattern` on `facts`' node.
fn finding(
    facts: &NodeFacts,
    pattern: &str,
    severity: Severity,
    check: &'static str,
    problem: String,
    fix: &str,
    why: &str,
) -> Finding {
    Finding {
        severity,
        pattern: pattern.to_owned(),
        node: facts.node.clone(),
        check,
        problem,
        fix: fix.to_owned(),
        why: why.to_owned(),
    }
}

/// What concerns every pattern: a replica where a master was expected, settings that could not
/// be read, no memory limit.
pub(crate) fn server(facts: &NodeFacts) -> Vec<Finding> {
    let mut found = Vec::new();
    if facts.role.as_deref() == Some("slave") {
        found.push(finding(
            facts,
            "server",
            Severity::Error,
            "role",
            "this node is a replica".into(),
            "connect to the master (or through Sentinel or the cluster)",
            "a replica refuses writes (READONLY), and every pattern writes",
        ));
    }
    if let Some(error) = &facts.config_error {
        found.push(finding(
            facts,
            "server",
            Severity::Info,
            "config",
            format!("CONFIG GET failed ({error}): eviction and persistence were not checked"),
            "run the doctor as a user allowed `CONFIG GET`, or check the settings by hand",
            "managed services and restricted users often hide the configuration",
        ));
    }
    if let Some(error) = &facts.acl_error {
        found.push(finding(
            facts,
            "server",
            Severity::Info,
            "acl",
            format!("ACL permissions not checked: {error}"),
            "run the doctor as a user allowed `ACL DRYRUN` and name the application's user",
            "a user without a command a pattern sends fails at run time, not at start-up",
        ));
    }
    if facts.maxmemory == Some(0) {
        found.push(finding(
            facts,
            "server",
            Severity::Warning,
            "maxmemory",
            "no maxmemory limit".into(),
            "set `maxmemory` below the memory the host can give (and a `maxmemory-policy`)",
            "without a limit the server grows until the host's OOM killer stops it, and every \
             key is lost at once",
        ));
    }
    found
}

/// The eviction family of a policy: `Some(true)` for `allkeys-*`, `Some(false)` for
/// `volatile-*`, `None` for `noeviction` (or anything unknown).
fn evicts_all(policy: &str) -> Option<bool> {
    if policy.starts_with("allkeys-") {
        Some(true)
    } else if policy.starts_with("volatile-") {
        Some(false)
    } else {
        None
    }
}

/// Every finding of `req` on `facts`' node.
pub(crate) fn pattern(facts: &NodeFacts, req: &Requirements) -> Vec<Finding> {
    let mut found = Vec::new();
    let p = req.pattern;
    if let (Some((needs, why)), Some(version)) = (req.min_version, facts.server_version())
        && version < needs
    {
        found.push(finding(
            facts,
            p,
            Severity::Error,
            "version",
            format!("server version {version}, the pattern needs {needs} or newer"),
            "upgrade the server",
            why,
        ));
    }
    let limited = facts.maxmemory.is_some_and(|m| m > 0);
    if let (Some(rule), Some(policy)) = (req.eviction, facts.maxmemory_policy.as_deref()) {
        let severity = match evicts_all(policy) {
            Some(true) => Some(rule.allkeys),
            Some(false) => rule.volatile,
            None => None,
        };
        if let Some(mut severity) = severity {
            let mut problem = format!("maxmemory-policy is {policy}");
            if !limited {
                // No limit yet: nothing is evicted until someone sets one.
                severity = severity.min(Severity::Warning);
                problem.push_str(" (not evicting yet: no maxmemory)");
            }
            found.push(finding(
                facts,
                p,
                severity,
                "eviction-policy",
                problem,
                "use `maxmemory-policy noeviction` (or keep this pattern on a server of its own)",
                rule.why,
            ));
        }
    }
    if let (Some(rule), Some(policy)) = (req.wants_eviction, facts.maxmemory_policy.as_deref())
        && limited
        && evicts_all(policy).is_none()
    {
        found.push(finding(
            facts,
            p,
            rule.severity,
            "eviction-policy",
            format!("maxmemory-policy is {policy}"),
            "use `allkeys-lru` or `allkeys-lfu` on a cache server (`volatile-*` when it also \
             holds keys without TTL)",
            rule.why,
        ));
    }
    if let Some(rule) = req.memory_limit
        && facts.maxmemory == Some(0)
    {
        found.push(finding(
            facts,
            p,
            rule.severity,
            "maxmemory",
            "no maxmemory limit".into(),
            "set `maxmemory` and an evicting `maxmemory-policy`",
            rule.why,
        ));
    }
    if let (Some(rule), Some(aof)) = (req.persistence, facts.appendonly) {
        let rdb = facts.rdb().unwrap_or(false);
        if !aof {
            let (severity, problem) = if rdb {
                (
                    rule.severity.min(Severity::Warning),
                    "appendonly is no (RDB snapshots only: the writes since the last one are \
                     lost on a restart)",
                )
            } else {
                (
                    rule.severity,
                    "appendonly is no and RDB snapshots are off: a restart loses everything",
                )
            };
            found.push(finding(
                facts,
                p,
                severity,
                "persistence",
                problem.into(),
                "set `appendonly yes`",
                rule.why,
            ));
        }
    }
    if let Some(rule) = req.fsync_always
        && let (Some(true), Some(fsync)) = (facts.appendonly, facts.appendfsync.as_deref())
        && fsync != "always"
    {
        found.push(finding(
            facts,
            p,
            rule.severity,
            "appendfsync",
            format!("appendfsync is {fsync}"),
            "set `appendfsync always`, or delay restarts by the longest lease",
            rule.why,
        ));
    }
    if let Some(rule) = req.resp3
        && facts.resp3 == Some(false)
    {
        found.push(finding(
            facts,
            p,
            rule.severity,
            "resp3",
            format!(
                "RESP3 refused: {}",
                facts.resp3_error.as_deref().unwrap_or("HELLO 3 failed")
            ),
            "use Redis 6 or newer and allow `HELLO` (a proxy in between must pass RESP3)",
            rule.why,
        ));
    }
    for check in facts.acl.iter().filter(|c| c.pattern == p) {
        let Some(reason) = &check.denied else {
            continue;
        };
        let about_a_name = reason.contains("access the '");
        let severity = if check.guessed_key && about_a_name {
            Severity::Warning
        } else {
            Severity::Error
        };
        found.push(finding(
            facts,
            p,
            severity,
            "acl",
            format!(
                "user {} may not run `{}`: {reason}",
                facts.user.as_deref().unwrap_or("?"),
                check.command
            ),
            "grant the command (and the key space) to this user: `ACL SETUSER <user> +<command> \
             ~<prefix>:*`",
            "the pattern sends this command (directly or from its scripts): it would fail at \
             run time",
        ));
    }
    found
}
