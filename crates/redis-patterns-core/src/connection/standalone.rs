//! One server: a multiplexed connection replaced after failures, and a pool.

use std::{fmt, sync::Arc};

use futures_util::future::BoxFuture;
use redis::{AsyncConnectionConfig, Client, Cmd, ConnectionInfo, Pipeline, RedisFuture, Value};

use super::{
    Backend, DedicatedConnection, Endpoint,
    events::TopologySignal,
    pool::{self, PoolManager},
    reconnect::Reconnecting,
};
use crate::{
    config::{Config, TopologyKind},
    error::Result,
};

pub(crate) struct Standalone {
    client: Client,
    shared: Arc<Reconnecting>,
    pool: pool::Dedicated,
    db: i64,
}

impl Standalone {
    pub(crate) async fn connect(
        config: &Config,
        info: &ConnectionInfo,
        signal: Arc<TopologySignal>,
    ) -> Result<Self> {
        let client = match &config.tls {
            #[cfg(feature = "tls")]
            Some(tls) => Client::build_with_tls(info.clone(), tls.certificates())?,
            _ => Client::open(info.clone())?,
        };
        let shared_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(config.response_timeout);
        let shared_client = client.clone();
        let shared = Arc::new(
            Reconnecting::connect(format!("{:?}", info.addr()), signal, move || {
                let client = shared_client.clone();
                let config = shared_config.clone();
                async move {
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                }
            })
            .await?,
        );
        let dedicated_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(config.pool.response_timeout);
        let pool_client = client.clone();
        let pool = PoolManager::new(move || {
            let client = pool_client.clone();
            let config = dedicated_config.clone();
            async move {
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
            }
        })
        .into_pool(&config.pool);
        Ok(Self {
            db: info.redis_settings().db(),
            client,
            shared,
            pool,
        })
    }

    /// The shared connection, for `Redis::query`'s unboxed path.
    pub(crate) fn shared(&self) -> Arc<Reconnecting> {
        self.shared.clone()
    }
}

impl fmt::Debug for Standalone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Standalone")
            .field("addr", self.client.get_connection_info().addr())
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl Backend for Standalone {
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
        TopologyKind::Standalone
    }

    fn db(&self) -> i64 {
        self.db
    }

    fn endpoint(&self) -> BoxFuture<'_, Result<Endpoint>> {
        let client = self.client.clone();
        Box::pin(async move { Ok(Endpoint::Single(client)) })
    }
}
