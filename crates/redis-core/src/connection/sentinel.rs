//! A master behind Sentinel. The shared connection is resolved through the sentinels and
//! re-resolved when a command shows the master is gone (connection lost, time-out) or demoted
//! (`READONLY`), so the handle follows a failover within seconds.

use std::{
    fmt,
    sync::{Arc, RwLock},
};

use futures_util::future::BoxFuture;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionInfo, ErrorKind, Pipeline, RedisError, RedisFuture,
    RedisResult, ServerErrorKind, Value,
    aio::MultiplexedConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};

use super::{
    Backend, DedicatedConnection, Endpoint,
    pool::{self, PoolManager},
};
use crate::{
    config::{Config, TopologyKind},
    error::Result,
};

pub(crate) struct Sentinel {
    resolver: Arc<tokio::sync::Mutex<SentinelClient>>,
    /// The current master connection and its generation.
    current: RwLock<Option<(u64, MultiplexedConnection)>>,
    shared_config: AsyncConnectionConfig,
    pool: bb8::Pool<PoolManager>,
    pool_timeout: std::time::Duration,
    service: String,
    db: i64,
}

impl Sentinel {
    pub(crate) async fn connect(
        config: &Config,
        sentinels: &[ConnectionInfo],
        service: &str,
        master: &redis::RedisConnectionInfo,
    ) -> Result<Self> {
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master.clone());
        let client = SentinelClient::build(
            sentinels.to_vec(),
            service.to_owned(),
            Some(node),
            SentinelServerType::Master,
        )?;
        let resolver = Arc::new(tokio::sync::Mutex::new(client));
        let shared_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(config.response_timeout);
        let dedicated_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(config.pool.response_timeout);
        let pool_resolver = resolver.clone();
        let pool = PoolManager::new(move || {
            let resolver = pool_resolver.clone();
            let config = dedicated_config.clone();
            async move { resolve(&mut *resolver.lock().await, &config).await }
        })
        .into_pool(&config.pool);
        let backend = Self {
            resolver,
            current: RwLock::new(None),
            shared_config,
            pool,
            pool_timeout: config.pool.connection_timeout,
            service: service.to_owned(),
            db: master.db(),
        };
        backend.shared().await?;
        Ok(backend)
    }

    /// The current master connection, resolving one if there is none.
    async fn shared(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.read_current() {
            return Ok(current);
        }
        // Serialize look-ups so a failover triggers one resolution, not one per caller.
        let mut resolver = self.resolver.lock().await;
        if let Some(current) = self.read_current() {
            return Ok(current);
        }
        let conn = resolve(&mut resolver, &self.shared_config).await?;
        drop(resolver);
        let mut slot = self.current.write().unwrap_or_else(|p| p.into_inner());
        let generation = slot.as_ref().map_or(0, |(g, _)| g + 1);
        *slot = Some((generation, conn.clone()));
        tracing::info!(service = %self.service, "connected to the master through sentinel");
        Ok((generation, conn))
    }

    fn read_current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets the connection of `generation` when `err` says the master moved.
    fn observe(&self, generation: u64, err: &RedisError) {
        let moved = crate::error::is_connection_error(err)
            || err.is_timeout()
            || err.is_unrecoverable_error()
            || matches!(
                err.kind(),
                ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
            );
        if !moved {
            return;
        }
        let mut slot = self.current.write().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
            tracing::warn!(service = %self.service, error = %err, "master connection lost; will ask the sentinels again");
            *slot = None;
        }
    }
}

async fn resolve(
    resolver: &mut SentinelClient,
    config: &AsyncConnectionConfig,
) -> RedisResult<MultiplexedConnection> {
    let client = resolver.async_get_client().await?;
    client
        .get_multiplexed_async_connection_with_config(config)
        .await
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
        Box::pin(async move {
            let (generation, mut conn) = self.shared().await?;
            let result = conn.send_packed_command(cmd).await;
            match &result {
                Err(e) => self.observe(generation, e),
                // Server errors arrive as values; a demoted master answers writes with READONLY.
                Ok(Value::ServerError(e)) => {
                    self.observe(generation, &RedisError::from(e.clone()));
                }
                Ok(_) => {}
            }
            result
        })
    }

    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.shared().await?;
            let result = conn.send_packed_commands(pipeline, offset, count).await;
            match &result {
                Err(e) => self.observe(generation, e),
                Ok(values) => {
                    if let Some(Value::ServerError(e)) =
                        values.iter().find(|v| matches!(v, Value::ServerError(_)))
                    {
                        self.observe(generation, &RedisError::from(e.clone()));
                    }
                }
            }
            result
        })
    }

    fn dedicated(&self) -> BoxFuture<'_, Result<DedicatedConnection>> {
        Box::pin(pool::checkout(&self.pool, self.pool_timeout))
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
