//! One server: a `ConnectionManager` (reconnects by itself) as the shared connection.

use std::fmt;

use futures_util::future::BoxFuture;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionInfo, Pipeline, RedisFuture, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use super::{
    Backend, DedicatedConnection, Endpoint,
    pool::{self, PoolManager},
};
use crate::{
    config::{Config, TopologyKind},
    error::Result,
};

pub(crate) struct Standalone {
    client: Client,
    shared: ConnectionManager,
    pool: bb8::Pool<PoolManager>,
    pool_timeout: std::time::Duration,
    db: i64,
}

impl Standalone {
    pub(crate) async fn connect(config: &Config, info: &ConnectionInfo) -> Result<Self> {
        let client = match &config.tls {
            #[cfg(feature = "tls")]
            Some(tls) => Client::build_with_tls(info.clone(), tls.certificates())?,
            _ => Client::open(info.clone())?,
        };
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(config.response_timeout)
            .set_number_of_retries(2)
            .set_max_delay(std::time::Duration::from_secs(1));
        let shared = ConnectionManager::new_with_config(client.clone(), manager_config).await?;
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
            pool_timeout: config.pool.connection_timeout,
        })
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
        let mut conn = self.shared.clone();
        Box::pin(async move { conn.send_packed_command(cmd).await })
    }

    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut conn = self.shared.clone();
        Box::pin(async move { conn.send_packed_commands(pipeline, offset, count).await })
    }

    fn dedicated(&self) -> BoxFuture<'_, Result<DedicatedConnection>> {
        Box::pin(pool::checkout(&self.pool, self.pool_timeout))
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
