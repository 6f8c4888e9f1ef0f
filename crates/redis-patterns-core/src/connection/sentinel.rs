//! A master behind Sentinel. The shared connection is resolved through the sentinels and
//! re-resolved when a command shows the master is gone (connection lost, time-out) or demoted
//! (`READONLY`). The handle also subscribes to `+switch-master` on every sentinel: a new master
//! drops the shared connection, drains the dedicated pool and moves the topology epoch at once,
//! so the next command and the next checkout reach it without first failing on the old one.

use std::{
    fmt,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{StreamExt as _, future::BoxFuture};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, Pipeline, RedisFuture, RedisResult,
    Value,
    aio::MultiplexedConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};

use super::{
    Backend, DedicatedConnection, Endpoint,
    events::{BackgroundTasks, TopologySignal},
    pool::{self, PoolManager},
    reconnect::Reconnecting,
};
use crate::{
    config::{Config, TopologyKind},
    error::Result,
};

/// Pause between attempts to (re)subscribe to a sentinel's `+switch-master`.
const RESUBSCRIBE: crate::Backoff =
    crate::Backoff::clamped(Duration::from_millis(100), Duration::from_secs(1));

pub(crate) struct Sentinel {
    resolver: Arc<tokio::sync::Mutex<SentinelClient>>,
    shared: Arc<Reconnecting>,
    pool: pool::Dedicated,
    service: String,
    db: i64,
    _watchers: BackgroundTasks,
}

/// The master the backend last reached or heard of, and what to do when it changes.
struct MasterTracker {
    known: Mutex<Option<(String, u16)>>,
    signal: Arc<TopologySignal>,
    /// The dedicated pool's generation: moving it drains the pool.
    pool_generation: Arc<AtomicU64>,
}

impl MasterTracker {
    /// Records `addr` as the master; on a change from a known one, drains the pool and moves
    /// the topology epoch. Returns whether it changed.
    fn observe(&self, addr: (String, u16), why: &str) -> bool {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = known.replace(addr.clone());
        drop(known);
        let changed = previous.is_some_and(|previous| previous != addr);
        if changed {
            self.pool_generation.fetch_add(1, Ordering::AcqRel);
            self.signal.bump(why);
        }
        changed
    }
}

fn tcp_addr(info: &ConnectionInfo) -> Option<(String, u16)> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Some((host.clone(), *port))
        }
        _ => None,
    }
}

impl Sentinel {
    pub(crate) async fn connect(
        config: &Config,
        sentinels: &[ConnectionInfo],
        service: &str,
        master: &redis::RedisConnectionInfo,
        signal: Arc<TopologySignal>,
    ) -> Result<Self> {
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master.clone());
        // The parameter is `String` without the `tls` feature and `impl AsRef<str>` with it.
        #[allow(clippy::unnecessary_to_owned)]
        let client = SentinelClient::build(
            sentinels.to_vec(),
            service.to_owned(),
            Some(node),
            SentinelServerType::Master,
        )?;
        let resolver = Arc::new(tokio::sync::Mutex::new(client));
        let pool_generation = Arc::new(AtomicU64::new(0));
        let tracker = Arc::new(MasterTracker {
            known: Mutex::new(None),
            signal: signal.clone(),
            pool_generation: pool_generation.clone(),
        });
        let connect = |config: AsyncConnectionConfig| {
            let resolver = resolver.clone();
            let tracker = tracker.clone();
            move || {
                let resolver = resolver.clone();
                let tracker = tracker.clone();
                let config = config.clone();
                async move { resolve(&mut *resolver.lock().await, &config, &tracker).await }
            }
        };
        let shared_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(config.response_timeout);
        let dedicated_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(config.pool.response_timeout);
        let shared = Arc::new(
            Reconnecting::connect(
                format!("sentinel service {service}"),
                signal,
                connect(shared_config),
            )
            .await?,
        );
        let manager = PoolManager::new(connect(dedicated_config));
        let pool = PoolManager::with_generation(manager, pool_generation).into_pool(&config.pool);
        let mut watchers = BackgroundTasks::default();
        for info in sentinels {
            let client = sentinel_client(config, info)?;
            watchers.spawn(watch_switches(
                client,
                service.to_owned(),
                tracker.clone(),
                Arc::downgrade(&shared),
            ));
        }
        Ok(Self {
            resolver,
            shared,
            pool,
            service: service.to_owned(),
            db: master.db(),
            _watchers: watchers,
        })
    }

    /// The shared connection, for `Redis::query`'s unboxed path.
    pub(crate) fn shared(&self) -> Arc<Reconnecting> {
        self.shared.clone()
    }
}

/// A client for one sentinel, with the deployment's TLS roots.
fn sentinel_client(config: &Config, info: &ConnectionInfo) -> Result<redis::Client> {
    Ok(match &config.tls {
        #[cfg(feature = "tls")]
        Some(tls) => redis::Client::build_with_tls(info.clone(), tls.certificates())?,
        _ => redis::Client::open(info.clone())?,
    })
}

/// Follows one sentinel's `+switch-master` announcements for `service` until the backend is
/// dropped: a new master drains the pool, moves the topology epoch and drops the shared
/// connection, so the next command (and the next checkout) reach the new master without first
/// failing on the old one. Resubscribes when the sentinel connection drops.
async fn watch_switches(
    client: redis::Client,
    service: String,
    tracker: Arc<MasterTracker>,
    shared: Weak<Reconnecting>,
) {
    let mut attempt = 0;
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.subscribe("+switch-master").await.is_ok()
        {
            attempt = 0;
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let text: String = message.get_payload().unwrap_or_default();
                // "<name> <old-ip> <old-port> <new-ip> <new-port>"
                let fields: Vec<&str> = text.split_whitespace().collect();
                if let [name, _, _, host, port] = fields.as_slice()
                    && *name == service
                    && let Ok(port) = port.parse()
                    && tracker.observe(((*host).to_owned(), port), "sentinel +switch-master")
                {
                    match shared.upgrade() {
                        Some(shared) => shared.reset(),
                        None => return,
                    }
                }
            }
        }
        if shared.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(RESUBSCRIBE.delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

/// Asks the sentinels for the current master (redis-rs checks its `ROLE`) and connects to it.
async fn resolve(
    resolver: &mut SentinelClient,
    config: &AsyncConnectionConfig,
    tracker: &MasterTracker,
) -> RedisResult<MultiplexedConnection> {
    let client = resolver.async_get_client().await?;
    let conn = client
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    if let Some(addr) = tcp_addr(client.get_connection_info()) {
        tracker.observe(addr, "sentinel names a new master");
    }
    Ok(conn)
}

impl fmt::Debug for Sentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sentinel")
            .field("service", &self.service)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl Backend for Sentinel {
    fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.shared.send(cmd)
    }

    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.shared.send_pipeline(pipeline, offset, count)
    }

    fn dedicated(&self) -> BoxFuture<'_, Result<DedicatedConnection>> {
        Box::pin(self.pool.checkout())
    }

    fn topology(&self) -> TopologyKind {
        TopologyKind::Sentinel
    }

    fn db(&self) -> i64 {
        self.db
    }

    fn endpoint(&self) -> BoxFuture<'_, Result<Endpoint>> {
        Box::pin(async move {
            let client = self.resolver.lock().await.async_get_client().await?;
            Ok(Endpoint::Single(client))
        })
    }
}
