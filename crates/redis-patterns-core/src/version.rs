//! What the server can do: its version, read once per handle, and the commands and protocol
//! features that need a newer one. A pattern asks [`crate::Redis::require`] before it relies on
//! one, so a server too old fails with one clear error naming the feature and the version it
//! needs, not with a Lua or syntax error from deep inside a call.

use std::{fmt, time::Duration};

use crate::{Endpoint, Error, Redis, Result};

/// A server version as `INFO server` reports it (`redis_version`; Valkey reports the Redis
/// version it is compatible with there too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// Patch level.
    pub patch: u16,
}

impl ServerVersion {
    /// `major.minor.patch`.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses `7.0.15` (missing parts count as 0; anything after a `-` is ignored).
    ///
    /// ```
    /// use redis_core::ServerVersion;
    /// assert_eq!(ServerVersion::parse("7.2.4"), Some(ServerVersion::new(7, 2, 4)));
    /// assert_eq!(ServerVersion::parse("8.0"), Some(ServerVersion::new(8, 0, 0)));
    /// assert_eq!(ServerVersion::parse("unstable"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.split_once('-').map_or(text, |(v, _)| v);
        let mut parts = text.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        Some(Self::new(major, minor, patch))
    }

    /// The `redis_version` of an `INFO server` reply.
    pub(crate) fn from_info(info: &str) -> Option<Self> {
        info.lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .and_then(Self::parse)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Commands and protocol features that not every server has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Feature {
    /// The RESP3 protocol (`HELLO 3`): server pushes for pub/sub and client tracking.
    Resp3,
    /// Server-assisted client tracking (`CLIENT TRACKING ... BCAST`), for the near cache.
    ClientTracking,
    /// `SET key value NX GET` in one command.
    SetNxGet,
    /// `EXPIRE`/`PEXPIRE` with `NX`, `XX`, `GT` or `LT`.
    ExpireConditions,
    /// `ACL DRYRUN`, to ask whether a user may run a command.
    AclDryRun,
    /// Sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE`).
    ShardedPubSub,
}

impl Feature {
    /// What the feature is, as errors name it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Resp3 => "RESP3 (HELLO 3)",
            Self::ClientTracking => "CLIENT TRACKING",
            Self::SetNxGet => "SET ... NX GET",
            Self::ExpireConditions => "PEXPIRE ... NX|XX|GT|LT",
            Self::AclDryRun => "ACL DRYRUN",
            Self::ShardedPubSub => "sharded pub/sub (SPUBLISH, SSUBSCRIBE)",
        }
    }

    /// The first Redis version that has it.
    pub const fn since(self) -> ServerVersion {
        match self {
            Self::Resp3 | Self::ClientTracking => ServerVersion::new(6, 0, 0),
            Self::SetNxGet | Self::ExpireConditions | Self::AclDryRun | Self::ShardedPubSub => {
                ServerVersion::new(7, 0, 0)
            }
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Redis {
    /// Checks that this client can use `feature` now: the server's version (as
    /// [`Redis::require`]), and for the features that ACL rules or proxies can take away, a
    /// live try on a short-lived connection of its own: RESP3 (`HELLO 3`), and `CLIENT TRACKING`
    /// (switched on for a prefix nobody uses, then off). On a cluster, the first master is tried.
    ///
    /// # Errors
    /// [`Error::ServerTooOld`]; [`Error::FeatureRefused`] when the server or a proxy refuses it;
    /// connection errors.
    ///
    /// ```no_run
    /// # async fn demo(redis: redis_core::Redis) -> redis_core::Result<()> {
    /// // At start-up, before relying on the near cache:
    /// redis.probe(redis_core::Feature::ClientTracking).await?;
    /// # Ok(()) }
    /// ```
    pub async fn probe(&self, feature: Feature) -> Result<()> {
        self.require(feature).await?;
        if !matches!(feature, Feature::Resp3 | Feature::ClientTracking) {
            return Ok(());
        }
        const TIMEOUT: Duration = Duration::from_secs(5);
        let info = match self.endpoint().await? {
            Endpoint::Single(client) => client.get_connection_info().clone(),
            endpoint @ Endpoint::Cluster { .. } => endpoint
                .masters(TIMEOUT)
                .await?
                .into_iter()
                .next()
                .map(|(_, info)| info)
                .ok_or(Error::Unsupported("a cluster without masters"))?,
        };
        let (pushes, _) = tokio::sync::mpsc::unbounded_channel();
        let mut conn = crate::connect_with_pushes(&info, pushes, TIMEOUT).await?;
        if feature == Feature::ClientTracking {
            let prefix = format!("redis-patterns-probe:{}", crate::random_token());
            for switch in ["ON", "OFF"] {
                let mut cmd = redis::cmd("CLIENT");
                cmd.arg("TRACKING").arg(switch);
                if switch == "ON" {
                    cmd.arg("BCAST").arg("PREFIX").arg(&prefix);
                }
                redis::aio::ConnectionLike::req_packed_command(&mut conn, &cmd)
                    .await
                    .and_then(redis::Value::extract_error)
                    .map_err(|e| Error::refusing(feature, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_and_parse() {
        assert!(ServerVersion::new(6, 2, 14) < Feature::SetNxGet.since());
        assert!(ServerVersion::new(7, 0, 0) >= Feature::ShardedPubSub.since());
        assert_eq!(
            ServerVersion::from_info(
                "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n"
            ),
            Some(ServerVersion::new(7, 0, 15))
        );
        assert_eq!(
            ServerVersion::parse("7.9.240-rc1"),
            Some(ServerVersion::new(7, 9, 240))
        );
        assert_eq!(ServerVersion::parse(""), None);
        assert_eq!(ServerVersion::from_info("no version here"), None);
    }

    #[test]
    fn a_server_too_old_is_named_with_the_version_it_needs() {
        let err = crate::Error::ServerTooOld {
            feature: Feature::ShardedPubSub,
            needs: Feature::ShardedPubSub.since(),
            found: ServerVersion::new(6, 2, 14),
        };
        assert_eq!(
            err.to_string(),
            "the server (version 6.2.14) lacks sharded pub/sub (SPUBLISH, SSUBSCRIBE): it needs \
             Redis 7.0.0 or newer"
        );
    }
}
