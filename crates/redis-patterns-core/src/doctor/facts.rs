//! The facts the doctor reads from one node: `INFO`, `CONFIG GET`, `ACL WHOAMI`, and whether
//! RESP3 works.

use std::collections::HashMap;

use redis::{Value, aio::ConnectionLike};
use serde::Serialize;

use super::acl::AclCheck;
use crate::ServerVersion;

/// What one node told the doctor. `None` means it could not be read (see
/// [`config_error`](Self::config_error)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NodeFacts {
    /// `host:port`.
    pub node: String,
    /// `redis_version` of `INFO server`.
    pub version: Option<String>,
    /// `master` or `slave` (`INFO replication`).
    pub role: Option<String>,
    /// True when the node runs in cluster mode.
    pub cluster: bool,
    /// `maxmemory` in bytes; 0 is no limit.
    pub maxmemory: Option<u64>,
    /// `maxmemory-policy`.
    pub maxmemory_policy: Option<String>,
    /// `appendonly`.
    pub appendonly: Option<bool>,
    /// `appendfsync`: `always`, `everysec` or `no`.
    pub appendfsync: Option<String>,
    /// `save` (RDB snapshot points; empty when snapshots are off).
    pub save: Option<String>,
    /// `busy-reply-threshold` (or `lua-time-limit` before 7.0), in milliseconds.
    pub busy_reply_threshold_ms: Option<i64>,
    /// Why `CONFIG GET` failed (an ACL rule, a renamed command on a managed service).
    pub config_error: Option<String>,
    /// The ACL user checked (`ACL WHOAMI` unless one was named).
    pub user: Option<String>,
    /// `ACL DRYRUN` of every command the checked patterns send.
    pub acl: Vec<AclCheck>,
    /// Why permissions could not be checked (`ACL DRYRUN` refused or missing).
    pub acl_error: Option<String>,
    /// Whether `HELLO 3` succeeded on a connection of the doctor's own; `None` for a custom
    /// backend, which has no address to try.
    pub resp3: Option<bool>,
    /// Why RESP3 failed.
    pub resp3_error: Option<String>,
}

impl NodeFacts {
    /// The parsed version.
    pub fn server_version(&self) -> Option<ServerVersion> {
        self.version.as_deref().and_then(ServerVersion::parse)
    }

    /// Any persistence: AOF on, or RDB snapshot points set.
    pub(crate) fn rdb(&self) -> Option<bool> {
        self.save.as_ref().map(|s| !s.trim().is_empty())
    }
}

/// The value of `field` in an `INFO` text.
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Reads `INFO` and `CONFIG GET` over `conn` into `facts`.
pub(crate) async fn read<C: ConnectionLike + Send>(
    conn: &mut C,
    facts: &mut NodeFacts,
) -> crate::Result<()> {
    let server: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    facts.version = info_field(&server, "redis_version").map(str::to_owned);
    facts.cluster = info_field(&server, "redis_mode") == Some("cluster");
    let replication: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await?;
    facts.role = info_field(&replication, "role").map(str::to_owned);

    match config(conn, "maxmemory").await {
        Ok(value) => {
            facts.maxmemory = value.and_then(|v| v.parse().ok());
            facts.maxmemory_policy = config(conn, "maxmemory-policy").await?;
            facts.appendonly = config(conn, "appendonly")
                .await?
                .map(|v| v.eq_ignore_ascii_case("yes"));
            facts.appendfsync = config(conn, "appendfsync").await?;
            facts.save = config(conn, "save").await?;
            let busy = match config(conn, "busy-reply-threshold").await? {
                Some(v) => Some(v),
                None => config(conn, "lua-time-limit").await?,
            };
            facts.busy_reply_threshold_ms = busy.and_then(|v| v.parse().ok());
        }
        Err(e) => facts.config_error = Some(e.to_string()),
    }
    Ok(())
}

/// One setting through `CONFIG GET` (`None` when the server does not know it).
async fn config<C: ConnectionLike + Send>(
    conn: &mut C,
    name: &str,
) -> redis::RedisResult<Option<String>> {
    let reply: Value = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await?;
    let pairs: HashMap<String, String> = match reply {
        Value::Map(_) | Value::Array(_) => redis::from_redis_value(reply)?,
        _ => HashMap::new(),
    };
    Ok(pairs.get(name).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read_by_exact_name() {
        let info =
            "# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\nredis_version_x:1\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "redis_mode"), Some("cluster"));
        assert_eq!(info_field(info, "role"), None);
    }
}
