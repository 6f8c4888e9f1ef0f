//! The doctor: can this server keep each pattern's promises?
//!
//! The patterns' guarantees rest on server settings: a lock or session key under an `allkeys-*`
//! or `volatile-*` eviction policy can vanish (two lock holders, a user logged out), streams
//! need `noeviction` and persistence, Redlock's safety after a crash wants `appendfsync always`,
//! the near cache needs RESP3, and an ACL user may lack a command a pattern (or its scripts)
//! sends. Each pattern crate declares what it needs as [`Requirements`]
//! (`redis_lock::REQUIREMENTS`, ...); [`diagnose`] reads the facts of every master (each master
//! of a cluster, the current master behind Sentinel) and returns typed [`Finding`]s: severity,
//! pattern, node, what to change and why.
//!
//! ```no_run
//! use redis_core::doctor::{self, Requirements, Severity};
//!
//! static SESSIONS: Requirements = Requirements::new("session")
//!     .no_eviction(Severity::Error, Some(Severity::Error), "an evicted session logs its user out");
//!
//! # async fn demo(redis: redis_core::Redis) -> redis_core::Result<()> {
//! let report = doctor::diagnose(&redis, &[&SESSIONS]).await?;
//! for finding in &report.findings {
//!     println!("{finding}");
//! }
//! assert!(!report.has_errors());
//! # Ok(()) }
//! ```
//!
//! [`preflight`] runs the same checks for one pattern at start-up: off, warn once through
//! `tracing` (the default, also run in the background when a pattern is built), or refuse with
//! [`PreflightError::Refused`].

mod acl;
mod facts;
mod finding;
mod preflight;
mod requirements;
mod rules;

use std::time::Duration;

use redis::aio::MultiplexedConnection;

pub use acl::AclCheck;
pub use facts::NodeFacts;
pub use finding::{Finding, Report, Severity};
pub use preflight::{
    PreflightError, PreflightMode, preflight, preflight_on_build, set_build_preflight,
};
pub use requirements::{CHANNEL, KEY, Requirements, SHA};

use crate::{Error, KeySpace, Redis, Result};

/// Settings of a [`diagnose_with`] run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DoctorOptions {
    /// The ACL user whose permissions are checked. Defaults to the user the connection is
    /// logged in as (`ACL WHOAMI`); name the application's user when the doctor runs as an admin.
    pub acl_user: Option<String>,
    /// The application's key space, so `ACL DRYRUN` checks the user's key patterns against real
    /// keys (`<prefix>:<pattern>:{doctor}`). Without one, a guess under `doctor:` is used and a
    /// key denial is only a warning.
    pub key_space: Option<KeySpace>,
    /// Bounds connecting to each node and each reply. Defaults to 5 s.
    pub timeout: Duration,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        Self {
            acl_user: None,
            key_space: None,
            timeout: Duration::from_secs(5),
        }
    }
}

impl DoctorOptions {
    /// Checks the permissions of `user` instead of the connection's own.
    #[must_use]
    pub fn acl_user(mut self, user: impl Into<String>) -> Self {
        self.acl_user = Some(user.into());
        self
    }

    /// The application's key space.
    #[must_use]
    pub fn key_space(mut self, keys: KeySpace) -> Self {
        self.key_space = Some(keys);
        self
    }

    /// Bounds each connection and reply. Defaults to 5 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Checks every master behind `redis` against `requirements` with default options.
///
/// # Errors
/// When a node cannot be reached or answers `INFO` with an error (a wrong password is
/// [`Error::Authentication`]).
pub async fn diagnose(redis: &Redis, requirements: &[&Requirements]) -> Result<Report> {
    diagnose_with(redis, requirements, &DoctorOptions::default()).await
}

/// Checks every master behind `redis` against `requirements`.
///
/// # Errors
/// As [`diagnose`].
pub async fn diagnose_with(
    redis: &Redis,
    requirements: &[&Requirements],
    options: &DoctorOptions,
) -> Result<Report> {
    let mut report = Report::default();
    for target in nodes(redis, options.timeout).await? {
        let facts = match &target {
            Target::Node(name, info) => {
                let mut conn = connect(info, options.timeout).await?;
                let mut facts = node_facts(&mut conn, name, requirements, options).await?;
                // RESP3 is a fact of every node, whether or not a pattern here needs it.
                let (pushes, _) = tokio::sync::mpsc::unbounded_channel();
                match crate::connect_with_pushes(info, pushes, options.timeout).await {
                    Ok(_) => facts.resp3 = Some(true),
                    Err(e) => {
                        facts.resp3 = Some(false);
                        facts.resp3_error = Some(e.to_string());
                    }
                }
                facts
            }
            Target::Backend => {
                let (host, port) = redis.server_address();
                let name = format!("{host}:{port}");
                node_facts(&mut redis.clone(), &name, requirements, options).await?
            }
        };
        report.findings.extend(rules::server(&facts));
        for req in requirements {
            report.findings.extend(rules::pattern(&facts, req));
        }
        report.nodes.push(facts);
    }
    report.sort();
    Ok(report)
}

/// A node to ask: a master with its connection settings, or (for a custom backend without an
/// endpoint) the backend itself.
pub(crate) enum Target {
    Node(String, Box<redis::ConnectionInfo>),
    Backend,
}

/// Every master behind `redis`.
pub(crate) async fn nodes(redis: &Redis, timeout: Duration) -> Result<Vec<Target>> {
    match redis.endpoint().await {
        Ok(endpoint) => Ok(endpoint
            .masters(timeout)
            .await?
            .into_iter()
            .map(|(addr, info)| Target::Node(addr.to_string(), Box::new(info)))
            .collect()),
        Err(Error::Unsupported(_)) => Ok(vec![Target::Backend]),
        Err(e) => Err(e),
    }
}

/// A connection of one's own to one node.
pub(crate) async fn connect(
    info: &redis::ConnectionInfo,
    timeout: Duration,
) -> Result<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    Ok(redis::Client::open(info.clone())?
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// Reads the facts of one node and dry-runs each pattern's commands.
async fn node_facts<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    name: &str,
    requirements: &[&Requirements],
    options: &DoctorOptions,
) -> Result<NodeFacts> {
    let mut facts = NodeFacts {
        node: name.to_owned(),
        ..NodeFacts::default()
    };
    facts::read(conn, &mut facts).await?;
    if requirements.iter().all(|r| r.commands.is_empty()) {
        return Ok(facts);
    }
    let user = match &options.acl_user {
        Some(user) => Ok(user.clone()),
        None => acl::whoami(conn).await,
    };
    let user = match user {
        Ok(user) => user,
        Err(e) => {
            facts.acl_error = Some(e);
            return Ok(facts);
        }
    };
    facts.user = Some(user.clone());
    for req in requirements {
        let commands = concrete_commands(req, options.key_space.as_ref());
        let guessed = options.key_space.is_none();
        match acl::dry_run(conn, &user, req.pattern, &commands, guessed).await {
            Ok(checks) => facts.acl.extend(checks),
            Err(e) => {
                facts.acl_error = Some(e);
                break;
            }
        }
    }
    Ok(facts)
}

/// `req`'s commands with their placeholders filled in.
fn concrete_commands(req: &Requirements, keys: Option<&KeySpace>) -> Vec<Vec<String>> {
    let prefix = keys.map_or("doctor", KeySpace::prefix);
    let key = format!("{prefix}:{}:{{doctor}}", req.pattern);
    let sha = req
        .scripts
        .first()
        .map_or_else(|| "0".repeat(40), |s| s.sha1().to_owned());
    req.commands
        .iter()
        .map(|command| {
            command
                .iter()
                .map(|arg| match *arg {
                    KEY | CHANNEL => key.clone(),
                    SHA => sha.clone(),
                    other => other.to_owned(),
                })
                .collect()
        })
        .collect()
}
