//! A master behind Sentinel. The shared connection is resolved through the sentinels and
//! re-resolved when a command shows the master is gone (connection lost, time-out) or demoted
//! (`READONLY`), so the handle follows a failover within seconds.

use std::{fmt, sync::Arc};

use futures_util::future::BoxFuture;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionInfo, Pipeline, RedisFuture, RedisResult, Value,
    aio::MultiplexedConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};

use super::{
    Backend, DedicatedConnection, Endpoint,
    pool::{self, PoolManager},
    reconnect::Reconnecting,
};
use crate::{
    config::{Config, TopologyKind},
    error::Result,
};

pub(crate) struct Sentinel {
    resolver: Arc<tokio::sync::Mutex<SentinelClient>>,
    shared: Reconnecting,
    pool: pool::Dedicated,
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
        // The parameter is `String` without the `tls` feature and `impl AsRef<str>` with it.
        #[allow(clippy::unnecessary_to_owned)]
        let client = SentinelClient::build(
            sentinels.to_vec(),
            service.to_owned(),
            Some(node),
            SentinelServerType::Master,
        )?;
        let resolver = Arc::new(tokio::sync::Mutex::new(client));
        let connect = |resolver: Arc<tokio::sync::Mutex<SentinelClient>>,
                       config: AsyncConnectionConfig| {
            move || {
                let resolver = resolver.clone();
                let config = config.clone();
                async move { resolve(&mut *resolver.lock().await, &config).await }
            }
        };
        let shared_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(config.response_timeout);
        let dedicated_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(config.pool.response_timeout);
        let shared = Reconnecting::connect(
            format!("sentinel service {service}"),
            connect(resolver.clone(), shared_config),
        )
        .await?;
        let pool =
            PoolManager::new(connect(resolver.clone(), dedicated_config)).into_pool(&config.pool);
        Ok(Self {
            resolver,
            shared,
            pool,
            service: service.to_owned(),
            db: master.db(),
        })
    }
}

/// Asks the sentinels for the current master (redis-rs checks its `ROLE`) and connects to it.
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
