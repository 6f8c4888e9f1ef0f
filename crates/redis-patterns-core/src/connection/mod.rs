//! Connections: the [`Backend`] trait and the [`Redis`] handle every pattern crate takes.
//!
//! # Design
//!
//! Pattern crates hold a [`Redis`]: a cheap-to-clone handle around an `Arc<dyn Backend>`. The trait
//! is **dyn-compatible** (object safe: yes) so that `RateLimiter`, `Cache`, `Lock`... carry no
//! connection type parameter and a deployment can be chosen at run time from configuration. The
//! price is one virtual call and one boxed future per command, which redis-rs pays anyway (its
//! `ConnectionLike` returns boxed futures) and which is lost in the noise of a network round trip;
//! `benches/benches/core.rs` measures it against a raw redis-rs connection.
//!
//! Every command of the hot path goes over one **shared multiplexed connection** per backend:
//! concurrent callers are pipelined on the socket. Work that must own a connection (blocking reads,
//! `WATCH`/`MULTI`, `CLIENT` state) takes a [`DedicatedConnection`] from a bounded bb8 pool.
//!
//! [`Redis`] implements [`redis::aio::ConnectionLike`], so every redis-rs command, pipeline and
//! script works on it directly:
//!
//! ```no_run
//! use redis::AsyncCommands;
//! use redis_core::Redis;
//!
//! # async fn demo() -> redis_core::Result<()> {
//! let redis = Redis::open("redis://127.0.0.1:6379").await?;
//! let mut conn = redis.clone(); // an Arc clone; shares the multiplexed connection
//! let _: () = conn.set_ex("greeting", "hello", 60).await?;
//! let value: Option<String> = conn.get("greeting").await?;
//! # Ok(()) }
//! ```

mod cluster;
mod events;
mod pool;
mod reconnect;
mod redirect;
mod sentinel;
mod standalone;
mod topology;

use std::{fmt, sync::Arc};

use futures_util::future::BoxFuture;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, Value, aio::ConnectionLike};

use crate::{
    config::{Config, Topology, TopologyKind},
    error::Result,
};

use events::TopologySignal;
pub use events::{CLUSTER_POLL, TopologyBackoff, TopologyWatch};

/// How long a call on a cluster keeps following the `ASK` and `TRYAGAIN` of a slot migration
/// (a multi-key script whose keys the migration has split, sent again every 5–100 ms) before
/// the error reaches the caller, retryable. The call did not run in the meantime.
pub const MIGRATION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
pub use pool::DedicatedConnection;
pub use topology::{NodeAddr, cluster_masters, parse_cluster_masters};

/// A command named `name` with room for `args` arguments (the name included) holding `bytes`
/// bytes besides the name, so adding them does not grow its buffers one argument at a time as
/// [`redis::cmd`]'s do: for plain commands on hot paths, whose arguments are known ahead.
///
/// ```
/// let key = "app:{user:1}:profile";
/// let mut get = redis_core::command("GET", 2, key.len());
/// get.arg(key);
/// assert_eq!(get.args_iter().count(), 2);
/// assert_eq!(get.get_packed_command(), redis_core::redis::cmd("GET").arg(key).get_packed_command());
/// ```
pub fn command(name: &str, args: usize, bytes: usize) -> Cmd {
    let mut cmd = Cmd::with_capacity(args, name.len().saturating_add(bytes));
    cmd.arg(name);
    cmd
}

/// A deployment that can run commands: one server, a cluster, a Sentinel-managed master, or
/// anything a user plugs in (a proxy, a test double of their own).
///
/// Object safe: yes; held as `Arc<dyn Backend>` by [`Redis`]. Three required methods; the rest have defaults.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Sends one packed command over the shared connection and returns its reply.
    fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value>;

    /// Sends `count` replies' worth of a pipeline over the shared connection, skipping `offset`
    /// replies (the contract of [`ConnectionLike::req_packed_commands`]).
    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>>;

    /// A connection owned by the caller until dropped.
    fn dedicated(&self) -> BoxFuture<'_, Result<DedicatedConnection>>;

    /// What kind of deployment this is. Defaults to [`TopologyKind::Custom`].
    fn topology(&self) -> TopologyKind {
        TopologyKind::Custom
    }

    /// The database index the shared connection uses. Defaults to 0.
    fn db(&self) -> i64 {
        0
    }

    /// Clients for work that needs its own kind of connection (pub/sub, RESP3 push streams).
    /// Behind Sentinel this resolves the current master. Defaults to [`crate::Error::Unsupported`].
    fn endpoint(&self) -> BoxFuture<'_, Result<Endpoint>> {
        Box::pin(async { Err(crate::Error::Unsupported("endpoint")) })
    }
}

/// How to open connections of one's own to a deployment (see [`Backend::endpoint`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // built once per subscriber connection, never on a hot path
pub enum Endpoint {
    /// One server (standalone, or the current master behind Sentinel).
    Single(redis::Client),
    /// A cluster: the client core uses (RESP2) and the seed nodes, to build a client of one's
    /// own (RESP3 push connections for sharded pub/sub).
    Cluster {
        /// The cluster client of this backend.
        client: Box<redis::cluster::ClusterClient>,
        /// The seed nodes it was built from (with credentials).
        nodes: Vec<redis::ConnectionInfo>,
    },
}

/// Opens a RESP3 connection of one's own to the server `info` names (credentials, db and TLS
/// included), whose server pushes (pub/sub messages, client-tracking invalidations) go to
/// `pushes`. `timeout` bounds connecting and each reply. For one node of a cluster, pass that
/// node's [`redis::ConnectionInfo`]; for the current master, the one of [`Endpoint::Single`]'s
/// client.
///
/// # Errors
/// Connection and authentication failures, converted into [`crate::Error`];
/// [`crate::Error::FeatureRefused`] for [`crate::Feature::Resp3`] when the server (or a proxy in
/// front of it) refuses to switch to RESP3.
pub async fn connect_with_pushes(
    info: &redis::ConnectionInfo,
    pushes: impl redis::aio::AsyncPushSender,
    timeout: std::time::Duration,
) -> Result<redis::aio::MultiplexedConnection> {
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let client = redis::Client::open(info.clone().set_redis_settings(settings))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_push_sender(pushes)
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| crate::Error::refusing(crate::Feature::Resp3, e))
}

/// The handle every pattern takes: a shared multiplexed connection plus a pool of dedicated ones.
///
/// Clone it freely; clones share everything. It implements [`ConnectionLike`], so redis-rs
/// commands run on it directly (`cmd.query_async(&mut redis.clone())`).
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    /// The shared connection of one server or Sentinel, sent to without a boxed future.
    shared: Option<Arc<reconnect::Reconnecting>>,
    /// The topology epoch: moved by the backend (built-in ones) or by
    /// [`Redis::notify_topology_change`].
    signal: Arc<TopologySignal>,
    /// Host and port for spans (`server.address`, `server.port`): the server, the first cluster
    /// seed node, or the first sentinel.
    server: Option<(String, u16)>,
    #[cfg(feature = "metrics")]
    commands: crate::metrics::CommandMetrics,
    /// The server's version, read once.
    version: tokio::sync::OnceCell<crate::ServerVersion>,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Redis").field(&self.inner.backend).finish()
    }
}

/// The oldest `redis_version` in an `INFO server` reply: one text, or (on a cluster) a map or
/// list of one text per node.
fn oldest_version(reply: &Value) -> Option<crate::ServerVersion> {
    match reply {
        Value::BulkString(bytes) => {
            crate::ServerVersion::from_info(&String::from_utf8_lossy(bytes))
        }
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => {
            crate::ServerVersion::from_info(text)
        }
        Value::Map(pairs) => pairs.iter().filter_map(|(_, v)| oldest_version(v)).min(),
        Value::Array(items) => items.iter().filter_map(oldest_version).min(),
        _ => None,
    }
}

/// Host and port of a TCP address.
fn host_port(info: &redis::ConnectionInfo) -> Option<(String, u16)> {
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port)
        | redis::ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
        _ => None,
    }
}

impl Redis {
    /// Connects as `config` says and checks the server answers (credentials included).
    ///
    /// # Errors
    /// [`crate::Error::Authentication`] for rejected credentials, [`crate::Error::Redis`] when the
    /// server cannot be reached within the connect time-out, [`crate::Error::InvalidConfig`] when
    /// redis-rs rejects a setting.
    #[tracing::instrument(level = "debug", skip_all, fields(topology = ?config.topology().kind()))]
    pub async fn connect(config: &Config) -> Result<Self> {
        let server = match &config.topology {
            Topology::Standalone(info) => host_port(info),
            Topology::Cluster(nodes) => nodes.first().and_then(host_port),
            Topology::Sentinel { sentinels, .. } => sentinels.first().and_then(host_port),
        };
        let signal = TopologySignal::new();
        let (backend, shared): (Arc<dyn Backend>, _) = match &config.topology {
            Topology::Standalone(info) => {
                let one = standalone::Standalone::connect(config, info, signal.clone()).await?;
                let shared = one.shared();
                (Arc::new(one), Some(shared))
            }
            Topology::Cluster(nodes) => (
                Arc::new(cluster::Cluster::connect(config, nodes, signal.clone()).await?),
                None,
            ),
            Topology::Sentinel {
                sentinels,
                service,
                master,
            } => {
                let sentinel =
                    sentinel::Sentinel::connect(config, sentinels, service, master, signal.clone())
                        .await?;
                let shared = sentinel.shared();
                (Arc::new(sentinel), Some(shared))
            }
        };
        // Connecting does not authenticate when no password is configured, and a server that
        // requires one only says so on the first command: ask now so `connect` reports it.
        backend.send(&redis::cmd("PING")).await?.extract_error()?;
        Ok(Self::with_parts(backend, shared, server, signal))
    }

    fn with_parts(
        backend: Arc<dyn Backend>,
        shared: Option<Arc<reconnect::Reconnecting>>,
        server: Option<(String, u16)>,
        signal: Arc<TopologySignal>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                shared,
                signal,
                server,
                #[cfg(feature = "metrics")]
                commands: crate::metrics::CommandMetrics::default(),
                version: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// Connects to one server at `url` with default settings.
    ///
    /// # Errors
    /// As [`Config::from_url`] and [`Redis::connect`].
    pub async fn open(url: &str) -> Result<Self> {
        Self::connect(&Config::from_url(url)?).await
    }

    /// Connects to the server at the `REDIS_URL` environment variable, or to
    /// `redis://127.0.0.1:6379` when it is unset: what examples, tools and tests that talk to
    /// "the configured Redis" want.
    ///
    /// # Errors
    /// As [`Redis::open`].
    pub async fn from_env() -> Result<Self> {
        let url = std::env::var("REDIS_URL")
            .ok()
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
        Self::open(&url).await
    }

    /// Wraps a backend of one's own. Its topology epoch moves only through
    /// [`notify_topology_change`](Self::notify_topology_change).
    pub fn from_backend(backend: impl Backend) -> Self {
        Self::with_parts(Arc::new(backend), None, None, TopologySignal::new())
    }

    /// Watches topology changes (a new master, moved slots, a connection re-established after
    /// a loss): what long-lived workers use to resume at once instead of at the end of a
    /// backoff. See [`TopologyBackoff`] for a reconnect loop built on it.
    pub fn topology_watch(&self) -> TopologyWatch {
        self.inner.signal.watch()
    }

    /// How many topology changes this handle has seen (0 at first): cheap, one atomic read.
    pub fn topology_epoch(&self) -> u64 {
        self.inner.signal.epoch()
    }

    /// A watch that has seen [`topology_epoch`](Self::topology_epoch) `epoch` and nothing after:
    /// when the topology changed since, its first [`TopologyWatch::changed`] returns at once.
    /// For a value that notes the epoch on a hot path (one atomic read) and needs a watch only
    /// later, if ever.
    ///
    /// ```no_run
    /// # async fn demo(redis: redis_core::Redis) {
    /// let epoch = redis.topology_epoch();
    /// // ... a request that must be redone if the deployment changed under it ...
    /// let mut watch = redis.topology_watch_since(epoch);
    /// if watch.has_changed() {
    ///     // the deployment changed while the request was in flight
    /// }
    /// # }
    /// ```
    pub fn topology_watch_since(&self, epoch: u64) -> TopologyWatch {
        self.inner.signal.watch_since(epoch)
    }

    /// Announces a topology change to every watcher, for custom backends and for callers that
    /// learn of one first (an operator hook).
    pub fn notify_topology_change(&self) {
        self.inner.signal.bump("announced by the application");
    }

    /// Host and port for spans (OpenTelemetry's `server.address` and `server.port`): the server,
    /// the first cluster seed node, or the first sentinel; `("", 0)` for a custom backend.
    pub fn server_address(&self) -> (&str, u16) {
        self.inner
            .server
            .as_ref()
            .map_or(("", 0), |(host, port)| (host.as_str(), *port))
    }

    /// What kind of deployment this is.
    pub fn topology(&self) -> TopologyKind {
        self.inner.backend.topology()
    }

    /// The backend behind this handle.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// Sends one command over the backend, counted by name and result with the `metrics` feature.
    fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        #[cfg(feature = "metrics")]
        {
            Box::pin(async move {
                let reply = self.send_uncounted(cmd).await;
                self.record_command(cmd, &reply);
                reply
            })
        }
        #[cfg(not(feature = "metrics"))]
        {
            Box::pin(self.send_uncounted(cmd))
        }
    }

    /// Sends a pipeline over the backend, each command counted with the `metrics` feature.
    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        #[cfg(feature = "metrics")]
        {
            Box::pin(async move {
                let replies = self
                    .inner
                    .backend
                    .send_pipeline(pipeline, offset, count)
                    .await;
                match &replies {
                    // One reply per command (past `offset`): an error reply counts as an error.
                    Ok(values) if values.len() == count => {
                        for (cmd, value) in pipeline.cmd_iter().skip(offset).zip(values) {
                            let ok = !matches!(value, Value::ServerError(_));
                            self.inner.commands.record(cmd, ok);
                        }
                    }
                    _ => {
                        let ok = replies.is_ok();
                        for cmd in pipeline.cmd_iter() {
                            self.inner.commands.record(cmd, ok);
                        }
                    }
                }
                replies
            })
        }
        #[cfg(not(feature = "metrics"))]
        {
            self.inner.backend.send_pipeline(pipeline, offset, count)
        }
    }

    /// Runs one command on the shared connection.
    ///
    /// # Errors
    /// The command's failure, converted into [`crate::Error`].
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        // Awaited here, so counting needs no second boxed future (the hot path of most patterns).
        let reply = self.send_uncounted(cmd).await;
        #[cfg(feature = "metrics")]
        self.record_command(cmd, &reply);
        let value = reply?.extract_error()?;
        Ok(T::from_redis_value(value).map_err(redis::RedisError::from)?)
    }

    /// Sends one command, uncounted: in place on a shared connection, else by the backend.
    pub(crate) async fn send_uncounted(&self, cmd: &Cmd) -> redis::RedisResult<Value> {
        match &self.inner.shared {
            Some(shared) => shared.send_unboxed(cmd).await,
            None => self.inner.backend.send(cmd).await,
        }
    }

    /// Counts one command by name and result (`metrics` feature).
    #[cfg(feature = "metrics")]
    #[inline]
    pub(crate) fn record_command(&self, cmd: &Cmd, reply: &redis::RedisResult<Value>) {
        let ok = matches!(reply, Ok(value) if !matches!(value, Value::ServerError(_)));
        self.inner.commands.record(cmd, ok);
    }

    /// Runs a pipeline (or a `MULTI`/`EXEC` transaction built with [`redis::pipe`]`().atomic()`) on
    /// the shared connection.
    ///
    /// # Errors
    /// The pipeline's failure, converted into [`crate::Error`].
    pub async fn query_pipeline<T: FromRedisValue>(&self, pipeline: &Pipeline) -> Result<T> {
        let mut conn = self.clone();
        Ok(pipeline.query_async(&mut conn).await?)
    }

    /// Takes a connection for exclusive use (blocking commands, `WATCH`/`MULTI`). It returns to the
    /// pool when dropped.
    ///
    /// A checkout still waiting when the topology changes (a new master announced, slots
    /// moved) starts over, so it takes a connection to the deployment as it is now instead of
    /// waiting out a connect to a master that is gone.
    ///
    /// # Errors
    /// [`crate::Error::PoolTimeout`] when the pool stays exhausted for its connection time-out;
    /// connection errors when a new connection cannot be opened.
    pub async fn dedicated(&self) -> Result<DedicatedConnection> {
        let mut watch = self.topology_watch();
        loop {
            watch.mark_seen();
            tokio::select! {
                conn = self.inner.backend.dedicated() => return conn,
                _ = watch.changed() => {}
            }
        }
    }

    /// Clients for connections of one's own (pub/sub). See [`Backend::endpoint`].
    ///
    /// # Errors
    /// [`crate::Error::Unsupported`] on backends without one; Sentinel look-up failures.
    pub async fn endpoint(&self) -> Result<Endpoint> {
        self.inner.backend.endpoint().await
    }

    /// The server's version (`redis_version` of `INFO server`), read once per handle. On a
    /// cluster, the oldest version among the nodes that answer.
    ///
    /// # Errors
    /// The command's failure; [`crate::Error::UnexpectedReply`] when no version can be read.
    pub async fn server_version(&self) -> Result<crate::ServerVersion> {
        self.inner
            .version
            .get_or_try_init(|| async {
                let reply: Value = self.query(redis::cmd("INFO").arg("server")).await?;
                oldest_version(&reply).ok_or_else(|| {
                    crate::Error::UnexpectedReply(format!(
                        "INFO server without a redis_version: {reply:?}"
                    ))
                })
            })
            .await
            .copied()
    }

    /// Checks once (the version is cached) that the server has `feature`, so a pattern fails
    /// with one clear error instead of a syntax or Lua error from deep inside a call.
    ///
    /// # Errors
    /// [`crate::Error::ServerTooOld`] naming the feature and the version it needs; the errors
    /// of [`server_version`](Self::server_version).
    ///
    /// ```no_run
    /// # async fn demo(redis: redis_core::Redis) -> redis_core::Result<()> {
    /// redis.require(redis_core::Feature::ShardedPubSub).await?;
    /// # Ok(()) }
    /// ```
    pub async fn require(&self, feature: crate::Feature) -> Result<()> {
        let found = self.server_version().await?;
        if found < feature.since() {
            return Err(crate::Error::ServerTooOld {
                feature,
                needs: feature.since(),
                found,
            });
        }
        Ok(())
    }

    /// The server's clock (`TIME`), as time since the Unix epoch.
    ///
    /// # Errors
    /// As [`crate::server_time`].
    pub async fn server_time(&self) -> Result<std::time::Duration> {
        crate::time::server_time(&mut self.clone()).await
    }
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Self::send(self, cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Self::send_pipeline(self, pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.backend.db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn handle_and_trait_objects_are_thread_safe() {
        assert_send_sync::<Redis>();
        assert_send_sync::<Arc<dyn Backend>>();
        assert_send_sync::<DedicatedConnection>();
        fn _object_safe(_: &dyn Backend) {}
    }
}
