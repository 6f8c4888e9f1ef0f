//! ACL permissions: `ACL DRYRUN <user> <command> <args>` for each command a pattern sends.

use redis::{Value, aio::ConnectionLike};
use serde::Serialize;

/// The answer of `ACL DRYRUN` for one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AclCheck {
    /// The pattern that sends it.
    pub pattern: String,
    /// The command and its example arguments, as sent to `ACL DRYRUN`.
    pub command: String,
    /// `None` when allowed; the server's reason when not.
    pub denied: Option<String>,
    /// True when the key or channel in the command was a guess (no key space given), so a
    /// denial about it may only mean the guess is outside the user's key patterns.
    pub guessed_key: bool,
}

/// Why permissions could not be checked (`ACL DRYRUN` missing before Redis 7, or refused).
pub(crate) type Unchecked = String;

/// The user the connection is logged in as.
pub(crate) async fn whoami<C: ConnectionLike + Send>(conn: &mut C) -> Result<String, String> {
    redis::cmd("ACL")
        .arg("WHOAMI")
        .query_async(conn)
        .await
        .map_err(|e| e.to_string())
}

/// `ACL DRYRUN` of each command (already with concrete arguments) for `user`.
pub(crate) async fn dry_run<C: ConnectionLike + Send>(
    conn: &mut C,
    user: &str,
    pattern: &str,
    commands: &[Vec<String>],
    guessed_key: bool,
) -> Result<Vec<AclCheck>, Unchecked> {
    if commands.is_empty() {
        return Ok(Vec::new());
    }
    // One pipeline: one round trip per pattern, however many commands it sends.
    let mut pipe = redis::pipe();
    for command in commands {
        pipe.cmd("ACL").arg("DRYRUN").arg(user).arg(command);
    }
    let replies = conn
        .req_packed_commands(&pipe, 0, commands.len())
        .await
        .map_err(|e| e.to_string())?;
    let mut checks = Vec::with_capacity(commands.len());
    for (command, reply) in commands.iter().zip(replies) {
        let denied = match reply.extract_error() {
            Ok(Value::Okay) => None,
            Ok(Value::SimpleString(s)) if s == "OK" => None,
            Ok(Value::BulkString(bytes)) if bytes == b"OK" => None,
            Ok(Value::BulkString(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Ok(Value::SimpleString(s)) | Ok(Value::VerbatimString { text: s, .. }) => Some(s),
            Ok(other) => Some(format!("{other:?}")),
            // DRYRUN itself refused or unknown: nothing can be said about the rest.
            Err(e) if is_dryrun_refused(&e) => return Err(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        checks.push(AclCheck {
            pattern: pattern.to_owned(),
            command: command.join(" "),
            denied,
            guessed_key,
        });
    }
    Ok(checks)
}

/// True when the error means `ACL DRYRUN` itself is unavailable to this connection.
fn is_dryrun_refused(e: &redis::RedisError) -> bool {
    let detail = e.detail().unwrap_or("").to_ascii_lowercase();
    matches!(e.code(), Some("NOPERM"))
        || detail.contains("dryrun")
        || detail.contains("unknown command 'acl'")
        || (detail.contains("user") && detail.contains("not found"))
}
