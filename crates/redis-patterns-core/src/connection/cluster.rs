//! Redis Cluster: redis-rs' async `ClusterConnection` routes each command by its key's slot and
//! follows `MOVED`/`ASK` and topology changes by itself.

use std::fmt;

use futures_util::future::BoxFuture;
use redis::{
    Cmd, ConnectionInfo, Pipeline, RedisFuture, Value,
    aio::ConnectionLike,
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
};

use super::{
    Backend, DedicatedConnection, Endpoint,
    pool::{self, PoolManager},
};
use crate::{
    config::{Config, TopologyKind},
    error::Result,
};

/// Cluster has no "no time-out": a day stands in for it on dedicated connections.
const LONG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(86_400);

pub(crate) struct Cluster {
    client: ClusterClient,
    shared: ClusterConnection,
    pool: pool::Dedicated,
    nodes: Vec<ConnectionInfo>,
}

impl Cluster {
    pub(crate) async fn connect(config: &Config, nodes: &[ConnectionInfo]) -> Result<Self> {
        let mut builder = ClusterClient::builder(nodes.to_vec())
            .connection_timeout(config.connect_timeout)
            .retries(3);
        if let Some(timeout) = config.response_timeout {
            builder = builder.response_timeout(timeout);
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &config.tls {
            builder = builder.certs(tls.certificates());
        }
        let client = builder.build()?;
        let shared = client.get_async_connection().await?;
        let dedicated_config = ClusterConfig::new()
            .set_connection_timeout(config.connect_timeout)
            .set_response_timeout(config.pool.response_timeout.unwrap_or(LONG_TIMEOUT));
        let pool_client = client.clone();
        let pool = PoolManager::new(move || {
            let client = pool_client.clone();
            let config = dedicated_config.clone();
            async move { client.get_async_connection_with_config(config).await }
        })
        .into_pool(&config.pool);
        Ok(Self {
            client,
            shared,
            pool,
            nodes: nodes.to_vec(),
        })
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("seed_nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl Backend for Cluster {
    fn send<'a>(&'a self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut conn = self.shared.clone();
        Box::pin(async move { conn.req_packed_command(cmd).await })
    }

    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut conn = self.shared.clone();
        Box::pin(async move { conn.req_packed_commands(pipeline, offset, count).await })
    }

    fn dedicated(&self) -> BoxFuture<'_, Result<DedicatedConnection>> {
        Box::pin(self.pool.checkout())
    }

    fn topology(&self) -> TopologyKind {
        TopologyKind::Cluster
    }

    fn endpoint(&self) -> BoxFuture<'_, Result<Endpoint>> {
        let endpoint = Endpoint::Cluster {
            client: Box::new(self.client.clone()),
            nodes: self.nodes.clone(),
        };
        Box::pin(async move { Ok(endpoint) })
    }
}
