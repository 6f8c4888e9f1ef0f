//! The tracking task: RESP3 connections with `CLIENT TRACKING ON BCAST PREFIX <prefix>` to the
//! server (or the current master behind Sentinel), or to every master of a cluster, whose
//! invalidation pushes evict entries of the store. A lost connection flushes the store and
//! bypasses it until tracking is re-established.
//!
//! A topology change (a new master behind Sentinel, moved slots or a promoted replica in a
//! cluster, a re-established connection) re-tracks at once: entries read from the old master
//! get no invalidation from the new one, so the store is flushed and tracking starts over on
//! the master(s) of now. Reconnects wait out a [`TopologyBackoff`], which a topology change cuts
//! short: tracking resumes within one short step of a new master answering.

use std::{sync::Arc, time::Duration};

use redis_core::{
    Backoff, Endpoint, NodeAddr, Redis, TopologyBackoff, TopologyWatch, cluster_masters,
    redis::{self, ConnectionInfo, PushInfo, PushKind, Value, aio::ConnectionLike},
};
use tokio::sync::{mpsc, oneshot};

use super::store::Near;

/// Name the tracking connection shows in `CLIENT LIST`.
pub(crate) const CLIENT_NAME: &str = "redis-cache-near";
/// How often the tracking connection is pinged to notice a silent loss.
const HEALTH_CHECK: Duration = Duration::from_secs(1);
/// Connect and response time-out of the tracking connection.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before reconnecting, from 50 ms doubling up to 500 ms, restarted when the topology
/// changes: a master promoted in a cluster is tracked within about half a second even before
/// the handle's slot map poll reports it.
const RECONNECT: Backoff = Backoff::clamped(Duration::from_millis(50), Duration::from_millis(500));

/// Starts the tracking task; it ends when `stop`'s sender is dropped (the last cache clone).
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    near: Arc<Near>,
    redis: Redis,
    stop: oneshot::Receiver<()>,
) {
    runtime.spawn(track(near, redis, stop));
}

/// Turns the near cache off when the tracking task ends for any reason, including its runtime
/// shutting down while the cache lives on: without the task nobody applies invalidations.
struct Bypass(Arc<Near>);

impl Drop for Bypass {
    fn drop(&mut self) {
        self.0.flush(false);
    }
}

async fn track(near: Arc<Near>, redis: Redis, mut stop: oneshot::Receiver<()>) {
    let near = Bypass(near);
    let near = &near.0;
    let mut backoff = TopologyBackoff::new(RECONNECT, redis.topology_watch());
    let mut watch = redis.topology_watch();
    loop {
        // A change from here on re-tracks, even one during the connect: the connections may
        // reach a master that is being replaced.
        watch.mark_seen();
        let (push_tx, mut push_rx) = mpsc::unbounded_channel();
        let connected = tokio::select! {
            _ = &mut stop => return,
            c = connect(&redis, near.prefix(), &push_tx) => c,
        };
        match connected {
            Ok(mut tracking) => {
                backoff.reset();
                near.flush(true);
                tracing::debug!(prefix = %near.prefix(), "near cache tracking established");
                let ended = tokio::select! {
                    _ = &mut stop => return,
                    ended = listen(near, &mut tracking, &mut push_rx, &mut watch) => ended,
                };
                near.flush(false);
                match ended {
                    Ended::Topology => {
                        tracing::info!("topology changed; near cache flushed and re-tracking");
                        continue;
                    }
                    Ended::Lost(reason) => tracing::warn!(
                        %reason,
                        "near cache tracking connection lost; near cache flushed"
                    ),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "near cache tracking connection failed; near cache bypassed");
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            () = backoff.wait() => {}
        }
    }
}

/// Why [`listen`] returned.
enum Ended {
    /// The topology changed: track the master(s) of now.
    Topology,
    /// A connection was lost or failed its health check, or the cluster's masters changed.
    Lost(String),
}

/// The tracking connections: one to the server, or one to each master of a cluster.
struct Tracking {
    conns: Vec<redis::aio::MultiplexedConnection>,
    /// On a cluster, the masters tracked (sorted), to notice when they change.
    cluster: Option<Vec<NodeAddr>>,
}

/// Opens the tracking connections, pushes going to `push_tx`: to the server (or the current
/// master behind Sentinel), or to every master of a cluster. A cluster whose state is not `ok`
/// (a master failed and its replica is not promoted yet) is not tracked: the master to come
/// would be missed. The error says why.
async fn connect(
    redis: &Redis,
    prefix: &str,
    push_tx: &mpsc::UnboundedSender<PushInfo>,
) -> Result<Tracking, String> {
    let endpoint = redis.endpoint().await.map_err(|e| e.to_string())?;
    let masters = endpoint
        .masters(IO_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let mut conns = Vec::with_capacity(masters.len());
    for (_, info) in &masters {
        let conn = track_node(info, prefix, push_tx.clone()).await;
        conns.push(conn.map_err(|e| e.to_string())?);
    }
    let cluster: Option<Vec<NodeAddr>> = matches!(endpoint, Endpoint::Cluster { .. })
        .then(|| masters.into_iter().map(|(addr, _)| addr).collect());
    if let Some(known) = &cluster {
        for conn in &mut conns {
            settled(conn, known).await?;
        }
    }
    Ok(Tracking { conns, cluster })
}

/// Checks that the master behind `conn` sees the cluster `ok` and the same masters as `known`:
/// after a failover the nodes agree on the promoted replica one by one, and tracking a set of
/// masters one of them has not heard of could leave the new one untracked.
async fn settled(
    conn: &mut redis::aio::MultiplexedConnection,
    known: &[NodeAddr],
) -> Result<(), String> {
    let info = conn
        .req_packed_command(redis::cmd("CLUSTER").arg("INFO"))
        .await
        .and_then(Value::extract_error)
        .and_then(|info| redis::from_redis_value::<String>(info).map_err(Into::into))
        .map_err(|e| format!("CLUSTER INFO failed: {e}"))?;
    if !info.contains("cluster_state:ok") {
        return Err("the cluster's state is not ok (a failover under way?)".into());
    }
    let seen = cluster_masters(conn)
        .await
        .map_err(|e| format!("CLUSTER NODES failed: {e}"))?;
    if seen != known {
        return Err("the masters do not agree on the cluster's masters yet".into());
    }
    Ok(())
}

/// Opens a RESP3 connection to one node whose pushes go to `push_tx`, and turns on broadcast
/// tracking of `prefix`.
async fn track_node(
    info: &ConnectionInfo,
    prefix: &str,
    push_tx: mpsc::UnboundedSender<PushInfo>,
) -> redis_core::Result<redis::aio::MultiplexedConnection> {
    let mut conn = redis_core::connect_with_pushes(info, push_tx, IO_TIMEOUT).await?;
    conn.req_packed_command(redis::cmd("CLIENT").arg("SETNAME").arg(CLIENT_NAME))
        .await?
        .extract_error()?;
    conn.req_packed_command(
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("BCAST")
            .arg("PREFIX")
            .arg(prefix),
    )
    .await
    .and_then(Value::extract_error)
    .map_err(|e| redis_core::Error::refusing(redis_core::Feature::ClientTracking, e))?;
    Ok(conn)
}

/// Applies pushes until a connection is lost, the cluster's masters change or `watch` reports
/// a topology change; returns why.
async fn listen(
    near: &Near,
    tracking: &mut Tracking,
    push_rx: &mut mpsc::UnboundedReceiver<PushInfo>,
    watch: &mut TopologyWatch,
) -> Ended {
    let mut health = tokio::time::interval(HEALTH_CHECK);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    health.tick().await;
    loop {
        tokio::select! {
            push = push_rx.recv() => match push {
                None => return Ended::Lost("push channel closed".into()),
                Some(push) => match push.kind {
                    PushKind::Disconnection => return Ended::Lost("disconnected".into()),
                    PushKind::Invalidate => apply(near, push.data),
                    _ => {}
                },
            },
            _ = watch.changed() => return Ended::Topology,
            _ = health.tick() => {
                if let Err(reason) = check(tracking).await {
                    return Ended::Lost(reason);
                }
            }
        }
    }
}

/// Pings every tracking connection; on a cluster, also checks the masters did not change
/// (a failover or a new master: keys may now live where nobody tracks them).
async fn check(tracking: &mut Tracking) -> Result<(), String> {
    for conn in &mut tracking.conns {
        let pong = conn.req_packed_command(&redis::cmd("PING")).await;
        if let Err(e) = pong.and_then(Value::extract_error) {
            return Err(format!("health check failed: {e}"));
        }
    }
    if let (Some(known), Some(conn)) = (&tracking.cluster, tracking.conns.first_mut()) {
        let now = cluster_masters(conn)
            .await
            .map_err(|e| format!("cluster topology check failed: {e}"))?;
        if &now != known {
            let list = |m: &[NodeAddr]| m.iter().map(ToString::to_string).collect::<Vec<_>>();
            return Err(format!(
                "cluster masters changed: {:?} -> {:?}",
                list(known),
                list(&now)
            ));
        }
    }
    Ok(())
}

/// One `invalidate` push: an array of keys, or null for "everything".
fn apply(near: &Near, data: Vec<Value>) {
    for value in data {
        match value {
            Value::Array(keys) => {
                for key in keys {
                    match key {
                        Value::BulkString(key) => near.invalidate_pushed(&key),
                        Value::SimpleString(key) => near.invalidate_pushed(key.as_bytes()),
                        _ => near.flush(true),
                    }
                }
            }
            _ => near.flush(true),
        }
    }
}
