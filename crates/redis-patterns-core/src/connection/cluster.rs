//! Redis Cluster: redis-rs' async `ClusterConnection` routes each command by its key's slot and
//! follows `MOVED`/`ASK` and topology changes by itself, within a retry budget tuned here for
//! short pauses; what it hands back anyway (see [`super::redirect`]) is followed here. A
//! background task compares the slot map every [`super::events::CLUSTER_POLL`] (and at once
//! after a redirect) and moves the topology epoch when it changes.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use redis::{
    Cmd, ConnectionInfo, Pipeline, RedisFuture, Value,
    aio::ConnectionLike,
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
};
use tokio::sync::Notify;

use super::{
    Backend, DedicatedConnection, Endpoint,
    events::{BackgroundTasks, CLUSTER_POLL, TopologySignal},
    pool::{self, PoolManager},
    redirect::Hops,
};
use crate::{
    config::{Config, TopologyKind},
    error::Result,
};

/// Cluster has no "no time-out": a day stands in for it on dedicated connections.
const LONG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Retries redis-rs makes inside one call (redirects, `TRYAGAIN`, `CLUSTERDOWN`, reconnects).
const RETRIES: u32 = 5;
/// redis-rs waits between retries: random in `[MIN, min(MAX, 10 ms * 2^retry)]`. Its defaults
/// (at least 1.28 s) held calls for seconds during a failover; failing fast with a retryable
/// error serves callers better than a long wait.
const RETRY_WAIT_MIN_MS: u64 = 5;
const RETRY_WAIT_MAX_MS: u64 = 100;

/// The least time between two slot-map checks, however often redirects prompt one.
const POLL_GAP: Duration = Duration::from_millis(50);

pub(crate) struct Cluster {
    client: ClusterClient,
    shared: ClusterConnection,
    pool: pool::Dedicated,
    nodes: Vec<ConnectionInfo>,
    hops: Hops,
    /// Wakes the slot-map watcher early.
    nudge: Arc<Notify>,
    _watcher: BackgroundTasks,
}

impl Cluster {
    pub(crate) async fn connect(
        config: &Config,
        nodes: &[ConnectionInfo],
        signal: Arc<TopologySignal>,
    ) -> Result<Self> {
        let mut builder = ClusterClient::builder(nodes.to_vec())
            .connection_timeout(config.connect_timeout)
            .retries(RETRIES)
            .min_retry_wait(RETRY_WAIT_MIN_MS)
            .max_retry_wait(RETRY_WAIT_MAX_MS)
            .retry_wait_formula(10, 2);
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
        let manager = PoolManager::new(move || {
            let client = pool_client.clone();
            let config = dedicated_config.clone();
            async move { client.get_async_connection_with_config(config).await }
        });
        let pool_generation = Arc::new(AtomicU64::new(0));
        let pool = manager
            .with_generation(pool_generation.clone())
            .into_pool(&config.pool);
        let node_config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(config.response_timeout);
        let tls = config.tls.clone();
        let template = nodes.first().cloned().ok_or_else(|| {
            crate::Error::invalid_config("a cluster needs at least one seed node")
        })?;
        let hops = Hops::new(
            template,
            Box::new(move |info| {
                let config = node_config.clone();
                let client = match &tls {
                    #[cfg(feature = "tls")]
                    Some(tls) => redis::Client::build_with_tls(info, tls.certificates()),
                    _ => redis::Client::open(info),
                };
                Box::pin(async move {
                    client?
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                })
            }),
        );
        let nudge = Arc::new(Notify::new());
        let mut watcher = BackgroundTasks::default();
        watcher.spawn(watch_slots(
            shared.clone(),
            nudge.clone(),
            signal,
            pool_generation,
        ));
        Ok(Self {
            client,
            shared,
            pool,
            nodes: nodes.to_vec(),
            hops,
            nudge,
            _watcher: watcher,
        })
    }
}

/// One slot range and the master serving it, as `CLUSTER SLOTS` lists it.
type SlotMap = Vec<(i64, i64, String, i64)>;

/// The slot ranges and their masters in a `CLUSTER SLOTS` reply, sorted.
fn slot_map(reply: &Value) -> Option<SlotMap> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut map = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(fields) = range else {
            return None;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        let host = match master.first() {
            Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
            Some(Value::SimpleString(host)) => host.clone(),
            _ => return None,
        };
        let Some(Value::Int(port)) = master.get(1) else {
            return None;
        };
        map.push((*start, *end, host, *port));
    }
    map.sort();
    Some(map)
}

/// Compares the slot map every [`CLUSTER_POLL`] (sooner when nudged): a change moves the
/// topology epoch, and a change in the set of masters also drains the dedicated pool.
async fn watch_slots(
    conn: ClusterConnection,
    nudge: Arc<Notify>,
    signal: Arc<TopologySignal>,
    pool_generation: Arc<AtomicU64>,
) {
    let mut last: Option<SlotMap> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(CLUSTER_POLL) => {}
            () = nudge.notified() => {}
        }
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let reply = conn
            .clone()
            .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
            .await;
        if let Some(map) = reply.ok().as_ref().and_then(slot_map)
            && last.as_ref() != Some(&map)
        {
            if let Some(previous) = &last {
                let masters = |map: &SlotMap| {
                    let mut masters: Vec<(String, i64)> =
                        map.iter().map(|r| (r.2.clone(), r.3)).collect();
                    masters.sort();
                    masters.dedup();
                    masters
                };
                if masters(previous) != masters(&map) {
                    pool_generation.fetch_add(1, Ordering::AcqRel);
                }
                signal.bump("cluster slot map changed");
            }
            last = Some(map);
        }
        tokio::time::sleep(POLL_GAP).await;
    }
}

impl Cluster {
    /// Checks the slot map soon when `err` hints at a topology change (a lost node, a cluster
    /// that is down, a demoted master).
    fn observe(&self, err: &redis::RedisError) {
        if crate::Error::from(err.clone()).is_retryable() {
            self.nudge.notify_one();
        }
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
        Box::pin(async move {
            let first = conn.req_packed_command(cmd).await;
            if super::redirect::hop_of_result(&first).is_none() {
                if let Err(e) = &first {
                    self.observe(e);
                }
                return first;
            }
            self.hops
                .follow_command(cmd, first, &self.shared, || self.nudge.notify_one())
                .await
        })
    }

    fn send_pipeline<'a>(
        &'a self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut conn = self.shared.clone();
        Box::pin(async move {
            let first = conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &first {
                self.observe(e);
            }
            self.hops
                .follow_pipeline(pipeline, (offset, count), first, &self.shared, || {
                    self.nudge.notify_one()
                })
                .await
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_slots_replies_yield_ranges_and_masters() {
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let range = |start, end, master: i64, replica: i64| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                node(master),
                node(replica),
            ])
        };
        let reply = Value::Array(vec![
            range(5461, 16383, 7001, 7004),
            range(0, 5460, 7000, 7003),
        ]);
        assert_eq!(
            slot_map(&reply),
            Some(vec![
                (0, 5460, "127.0.0.1".to_owned(), 7000),
                (5461, 16383, "127.0.0.1".to_owned(), 7001)
            ])
        );
        assert_eq!(slot_map(&Value::Nil), None);
        assert_eq!(slot_map(&Value::Array(vec![Value::Int(1)])), None);
    }
}
