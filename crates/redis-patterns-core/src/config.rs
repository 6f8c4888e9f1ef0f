//! Connection configuration: where Redis is (one server, a cluster, a Sentinel group) and how
//! long to wait for it.
//!
//! ```
//! use std::time::Duration;
//! use redis_core::Config;
//!
//! // One server; URLs may carry an ACL user, a password and a db index.
//! let config = Config::builder()
//!     .url("redis://app:secret@127.0.0.1:6379/2")
//!     .response_timeout(Some(Duration::from_millis(500)))
//!     .pool_max_size(8)
//!     .build()?;
//!
//! // A cluster: any reachable nodes, the rest is discovered.
//! let cluster = Config::builder()
//!     .cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
//!     .build()?;
//!
//! // Sentinel: the sentinels' addresses and the monitored service's name.
//! let sentinel = Config::builder()
//!     .sentinel(["redis://127.0.0.1:26379"], "mymaster")
//!     .build()?;
//!
//! // Mistakes are typed errors, before any connection is made.
//! assert!(Config::builder().url("redis//nope").build().is_err());
//! assert!(Config::builder().url("redis://h").pool_max_size(0).build().is_err());
//! # Ok::<(), redis_core::Error>(())
//! ```

use std::{fmt, time::Duration};

use redis::{ConnectionInfo, IntoConnectionInfo};

use crate::error::{Error, Result};

/// Default time allowed to open a TCP connection (and authenticate).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time allowed for one reply on the shared connection.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the deployment is.
#[derive(Clone)]
#[non_exhaustive]
pub enum Topology {
    /// One server (possibly behind a proxy).
    Standalone(ConnectionInfo),
    /// Redis Cluster, reached through any of these seed nodes.
    Cluster(Vec<ConnectionInfo>),
    /// A master found through Sentinel.
    Sentinel {
        /// Addresses of the sentinels.
        sentinels: Vec<ConnectionInfo>,
        /// The monitored service (master) name.
        service: String,
        /// Credentials and db used on the master itself.
        master: redis::RedisConnectionInfo,
    },
}

impl Topology {
    /// A short name: `standalone`, `cluster` or `sentinel`.
    pub fn kind(&self) -> TopologyKind {
        match self {
            Self::Standalone(_) => TopologyKind::Standalone,
            Self::Cluster(_) => TopologyKind::Cluster,
            Self::Sentinel { .. } => TopologyKind::Sentinel,
        }
    }
}

impl fmt::Debug for Topology {
    // Addresses only: never print credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Standalone(info) => f.debug_tuple("Standalone").field(&info.addr()).finish(),
            Self::Cluster(nodes) => f
                .debug_tuple("Cluster")
                .field(&nodes.iter().map(ConnectionInfo::addr).collect::<Vec<_>>())
                .finish(),
            Self::Sentinel {
                sentinels, service, ..
            } => f
                .debug_struct("Sentinel")
                .field(
                    "sentinels",
                    &sentinels
                        .iter()
                        .map(ConnectionInfo::addr)
                        .collect::<Vec<_>>(),
                )
                .field("service", service)
                .finish_non_exhaustive(),
        }
    }
}

/// Which kind of deployment a [`crate::Redis`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TopologyKind {
    /// One server.
    Standalone,
    /// Redis Cluster.
    Cluster,
    /// A master found through Sentinel.
    Sentinel,
    /// A user-supplied backend.
    Custom,
}

/// Settings of the pool of dedicated connections (for blocking commands, WATCH/MULTI, long reads).
///
/// The shared multiplexed connection used by every pattern's hot path is not pooled: concurrent
/// commands are pipelined on it, which is much faster than a checkout per command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Most connections open at once. Defaults to 16.
    pub max_size: u32,
    /// Idle connections kept ready. Defaults to none.
    pub min_idle: Option<u32>,
    /// How long a checkout waits for a free connection before [`Error::PoolTimeout`]. Defaults to 5 s.
    pub connection_timeout: Duration,
    /// Idle connections are closed after this long. Defaults to 10 min.
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after this long. Defaults to 30 min.
    pub max_lifetime: Option<Duration>,
    /// Check a connection before handing it out (`UNWATCH` + `PING`, one round trip). Defaults to
    /// `true`: dedicated connections are held for long operations, where one round trip is cheap
    /// insurance against a dead socket, and it also clears keys a previous holder `WATCH`ed and
    /// replaces a connection left inside `MULTI`.
    pub test_on_check_out: bool,
    /// Reply time-out on dedicated connections. Defaults to none, since blocking reads
    /// (`XREADGROUP BLOCK`, `BLPOP`) wait on purpose; bound them with the command's own timeout.
    pub response_timeout: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_size: 16,
            min_idle: None,
            connection_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            test_on_check_out: true,
            response_timeout: None,
        }
    }
}

/// A validated configuration. Build one with [`Config::builder`] or [`Config::from_url`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) topology: Topology,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) pool: PoolConfig,
    pub(crate) tls: Option<TlsFiles>,
}

/// PEM material for `rediss://` connections (feature `tls`).
#[derive(Clone, Default)]
pub(crate) struct TlsFiles {
    pub(crate) root_cert: Option<Vec<u8>>,
    pub(crate) client_cert_and_key: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("root_cert", &self.root_cert.is_some())
            .field("client_cert", &self.client_cert_and_key.is_some())
            .finish()
    }
}

#[cfg(feature = "tls")]
impl TlsFiles {
    pub(crate) fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self.client_cert_and_key.as_ref().map(|(cert, key)| {
                redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }
            }),
            root_cert: self.root_cert.clone(),
        }
    }
}

impl Config {
    /// Starts a configuration.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// A standalone configuration from a `redis://`, `rediss://` (feature `tls`) or `unix://` URL,
    /// with default time-outs and pool.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the URL does not parse.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::builder().url(url).build()
    }

    /// Where the deployment is.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Time allowed to open a connection.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Time allowed for one reply on the shared connection (`None`: wait forever).
    pub fn response_timeout(&self) -> Option<Duration> {
        self.response_timeout
    }

    /// The dedicated-connection pool settings.
    pub fn pool(&self) -> &PoolConfig {
        &self.pool
    }
}

#[derive(Debug, Clone, Default)]
enum Target {
    #[default]
    Unset,
    Standalone(String),
    Cluster(Vec<String>),
    Sentinel {
        sentinels: Vec<String>,
        service: String,
    },
}

/// Builds a [`Config`]; every setter documents its default, [`build`](Self::build) validates.
#[derive(Clone, Default)]
#[must_use]
pub struct ConfigBuilder {
    target: Target,
    connect_timeout: Option<Duration>,
    response_timeout: Option<Option<Duration>>,
    pool: PoolConfig,
    tls: Option<TlsFiles>,
    master_username: Option<String>,
    master_password: Option<String>,
    master_db: i64,
}

impl fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl ConfigBuilder {
    /// One server at `url` (`redis://[user:password@]host[:port][/db]`, `rediss://` with the `tls`
    /// feature, or `unix://path`).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.target = Target::Standalone(url.into());
        self
    }

    /// A Redis Cluster reached through these seed nodes (URLs as for [`url`](Self::url)).
    pub fn cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.target = Target::Cluster(nodes.into_iter().map(Into::into).collect());
        self
    }

    /// The master of `service`, found through these sentinels (URLs of the sentinels themselves).
    /// After a failover the next command goes to the new master.
    pub fn sentinel<I, S>(mut self, sentinels: I, service: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.target = Target::Sentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            service: service.into(),
        };
        self
    }

    /// ACL user and password for the master behind Sentinel. Defaults to none.
    pub fn sentinel_master_auth(mut self, username: Option<&str>, password: &str) -> Self {
        self.master_username = username.map(str::to_owned);
        self.master_password = Some(password.to_owned());
        self
    }

    /// Database index on the master behind Sentinel. Defaults to 0.
    pub fn sentinel_master_db(mut self, db: i64) -> Self {
        self.master_db = db;
        self
    }

    /// Time allowed to open a connection. Defaults to [`DEFAULT_CONNECT_TIMEOUT`] (2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Time allowed for one reply on the shared connection; `None` waits forever.
    /// Defaults to [`DEFAULT_RESPONSE_TIMEOUT`] (2 s).
    pub fn response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = Some(timeout);
        self
    }

    /// Replaces all pool settings. Defaults to [`PoolConfig::default`].
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// Most dedicated connections open at once. Defaults to 16.
    pub fn pool_max_size(mut self, max: u32) -> Self {
        self.pool.max_size = max;
        self
    }

    /// How long a dedicated-connection checkout may wait. Defaults to 5 s.
    pub fn pool_connection_timeout(mut self, timeout: Duration) -> Self {
        self.pool.connection_timeout = timeout;
        self
    }

    /// Trusts this CA (PEM) for `rediss://` servers instead of the system's roots: the usual set-up
    /// for a private CA. Standalone and cluster. Defaults to the system's roots.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_root_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.get_or_insert_with(TlsFiles::default).root_cert = Some(pem.into());
        self
    }

    /// Presents this client certificate and key (PEM) for mutual TLS. Standalone and cluster.
    /// Defaults to none.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_client_cert_pem(
        mut self,
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls
            .get_or_insert_with(TlsFiles::default)
            .client_cert_and_key = Some((cert.into(), key.into()));
        self
    }

    /// Validates and finishes the configuration. Nothing connects yet.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a missing or malformed address, an empty node list, an empty
    /// service name, a zero time-out or a zero pool size.
    pub fn build(self) -> Result<Config> {
        let topology = match self.target {
            Target::Unset => {
                return Err(Error::invalid_config(
                    "no address: call url(), cluster() or sentinel()",
                ));
            }
            Target::Standalone(url) => Topology::Standalone(parse_url(&url)?),
            Target::Cluster(nodes) => {
                if nodes.is_empty() {
                    return Err(Error::invalid_config("cluster needs at least one node"));
                }
                Topology::Cluster(nodes.iter().map(|n| parse_url(n)).collect::<Result<_>>()?)
            }
            Target::Sentinel { sentinels, service } => {
                if sentinels.is_empty() {
                    return Err(Error::invalid_config(
                        "sentinel needs at least one sentinel",
                    ));
                }
                if service.trim().is_empty() {
                    return Err(Error::invalid_config("sentinel service name is empty"));
                }
                let mut master = redis::RedisConnectionInfo::default().set_db(self.master_db);
                if let Some(user) = &self.master_username {
                    master = master.set_username(user);
                }
                if let Some(password) = &self.master_password {
                    master = master.set_password(password);
                }
                Topology::Sentinel {
                    sentinels: sentinels
                        .iter()
                        .map(|n| parse_url(n))
                        .collect::<Result<_>>()?,
                    service,
                    master,
                }
            }
        };
        let connect_timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let response_timeout = self
            .response_timeout
            .unwrap_or(Some(DEFAULT_RESPONSE_TIMEOUT));
        if connect_timeout.is_zero() {
            return Err(Error::invalid_config("connect timeout is zero"));
        }
        if response_timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid_config(
                "response timeout is zero (use None to wait forever)",
            ));
        }
        if self.pool.max_size == 0 {
            return Err(Error::invalid_config("pool max size is zero"));
        }
        if self.pool.min_idle.is_some_and(|m| m > self.pool.max_size) {
            return Err(Error::invalid_config("pool min idle exceeds max size"));
        }
        if self.pool.connection_timeout.is_zero() {
            return Err(Error::invalid_config("pool connection timeout is zero"));
        }
        if self.tls.is_some() && matches!(topology, Topology::Sentinel { .. }) {
            return Err(Error::invalid_config(
                "custom TLS certificates are supported for standalone and cluster, not sentinel",
            ));
        }
        Ok(Config {
            topology,
            connect_timeout,
            response_timeout,
            pool: self.pool,
            tls: self.tls,
        })
    }
}

fn parse_url(url: &str) -> Result<ConnectionInfo> {
    let scheme_ok = ["redis://", "rediss://", "unix://", "redis+unix://"]
        .iter()
        .any(|s| url.starts_with(s));
    if !scheme_ok {
        return Err(Error::invalid_config(format!(
            "malformed URL {:?}: expected redis://, rediss:// or unix://",
            redact(url)
        )));
    }
    url.into_connection_info().map_err(|e| {
        Error::invalid_config(format!("malformed URL {:?}: {}", redact(url), e.category()))
    })
}

/// The URL with any password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_urls_without_leaking_passwords() {
        let err = Config::from_url("http://u:hunter2@h").unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::InvalidConfig(_)));
        assert!(!message.contains("hunter2"), "{message}");
        assert!(Config::from_url("redis://").is_err());
        assert!(Config::from_url("redis://h:notaport").is_err());
    }

    #[test]
    fn accepts_acl_users_and_db() {
        let config = Config::from_url("redis://app:pw@127.0.0.1:7/3").unwrap();
        let Topology::Standalone(info) = config.topology() else {
            panic!("expected standalone")
        };
        assert_eq!(info.redis_settings().db(), 3);
        assert_eq!(info.redis_settings().username(), Some("app"));
        assert!(!format!("{config:?}").contains("pw"));
    }

    #[test]
    fn validates_everything_else() {
        assert!(Config::builder().build().is_err());
        assert!(
            Config::builder()
                .cluster(Vec::<String>::new())
                .build()
                .is_err()
        );
        assert!(
            Config::builder()
                .sentinel(["redis://h:1"], " ")
                .build()
                .is_err()
        );
        assert!(
            Config::builder()
                .url("redis://h")
                .connect_timeout(Duration::ZERO)
                .build()
                .is_err()
        );
        assert!(
            Config::builder()
                .url("redis://h")
                .response_timeout(Some(Duration::ZERO))
                .build()
                .is_err()
        );
        let config = Config::builder()
            .url("redis://h")
            .response_timeout(None)
            .build()
            .unwrap();
        assert_eq!(config.response_timeout(), None);
    }
}
