//! What the doctor reports: findings with a severity, and the report that holds them.

use std::fmt;

use serde::Serialize;

use super::facts::NodeFacts;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Severity {
    /// Worth knowing; no promise is at risk.
    Info,
    /// A promise holds only under conditions (no restart, no memory pressure): fix it before
    /// relying on it in production.
    Warning,
    /// A promise of the pattern does not hold on this server (two lock holders, lost sessions,
    /// commands refused).
    Error,
}

impl Severity {
    /// `info`, `warning` or `error`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing the doctor found on one node, for one pattern (or `"server"` for what concerns
/// every pattern).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// The pattern concerned (`lock`, `session`, ...), or `server`.
    pub pattern: String,
    /// The node, `host:port`.
    pub node: String,
    /// A stable name of the check (`eviction-policy`, `persistence`, `acl`, ...).
    pub check: &'static str,
    /// What was found.
    pub problem: String,
    /// What to change.
    pub fix: String,
    /// Why it matters for this pattern.
    pub why: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] {} on {}: {}; fix: {} ({})",
            self.severity, self.pattern, self.check, self.node, self.problem, self.fix, self.why
        )
    }
}

/// What [`diagnose`](super::diagnose) found: the facts of every node it asked and the findings,
/// worst first.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// The facts read from each node (every master of a cluster, the master behind Sentinel).
    pub nodes: Vec<NodeFacts>,
    /// The findings, errors first.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst severity found, `None` when nothing was found.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// True when a finding of [`Severity::Error`] exists.
    pub fn has_errors(&self) -> bool {
        self.worst() == Some(Severity::Error)
    }

    /// The findings of at least `severity`.
    pub fn at_least(&self, severity: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.severity >= severity)
    }

    /// The findings about `pattern`.
    pub fn for_pattern<'a>(&'a self, pattern: &'a str) -> impl Iterator<Item = &'a Finding> {
        self.findings.iter().filter(move |f| f.pattern == pattern)
    }

    /// Sorts worst first, then by pattern, node and check.
    pub(crate) fn sort(&mut self) {
        self.findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.pattern.cmp(&b.pattern))
                .then_with(|| a.node.cmp(&b.node))
                .then_with(|| a.check.cmp(b.check))
        });
    }
}
