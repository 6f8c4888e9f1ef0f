//! The background task of a subscription: its own connection, the health check, and the
//! reconnect loop that resubscribes everything and reports the outage as a gap.

use std::time::Duration;

use redis_core::{
    Backoff, Endpoint, Feature, Redis, TopologyBackoff,
    redis::{self, ProtocolVersion, PushInfo, PushKind, aio::ConnectionLike},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    event::{Gap, GapKind, to_raw},
    outbox::Outbox,
};
use crate::{config::Channels, error::Result};

/// The subscription's own connection.
pub(super) enum Conn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    async fn ping(&mut self) -> redis::RedisResult<()> {
        let cmd = redis::cmd("PING");
        let reply = match self {
            Self::Single(c) => c.req_packed_command(&cmd).await?,
            Self::Cluster(c) => c.req_packed_command(&cmd).await?,
        };
        reply.extract_error().map(drop)
    }
}

pub(super) type PushTx = mpsc::UnboundedSender<PushInfo>;

/// Opens a RESP3 connection whose pushes go to `push_tx` and subscribes everything in `channels`.
pub(super) async fn connect(redis: &Redis, channels: &Channels, push_tx: PushTx) -> Result<Conn> {
    match redis.endpoint().await? {
        Endpoint::Single(client) => {
            if !channels.sharded.is_empty() {
                return Err(redis_core::Error::Unsupported(
                    "sharded channels need a Redis Cluster endpoint",
                )
                .into());
            }
            let mut conn = redis_core::connect_with_pushes(
                client.get_connection_info(),
                push_tx,
                Duration::from_secs(5),
            )
            .await?;
            if !channels.channels.is_empty() {
                conn.subscribe(&channels.channels).await?;
            }
            if !channels.patterns.is_empty() {
                conn.psubscribe(&channels.patterns).await?;
            }
            Ok(Conn::Single(conn))
        }
        Endpoint::Cluster { nodes, .. } => {
            if !channels.sharded.is_empty() {
                redis.require(Feature::ShardedPubSub).await?;
            }
            let client = redis::cluster::ClusterClient::builder(nodes)
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(push_tx)
                .connection_timeout(Duration::from_secs(5))
                .response_timeout(Duration::from_secs(5))
                .build()?;
            let mut conn = client
                .get_async_connection()
                .await
                .map_err(|e| redis_core::Error::refusing(Feature::Resp3, e))?;
            for channel in &channels.channels {
                conn.subscribe(channel).await?;
            }
            for pattern in &channels.patterns {
                conn.psubscribe(pattern).await?;
            }
            for channel in &channels.sharded {
                conn.ssubscribe(channel).await?;
            }
            Ok(Conn::Cluster(conn))
        }
        _ => Err(redis_core::Error::Unsupported("this endpoint kind has no pub/sub").into()),
    }
}

/// The background task of a subscription: forwards messages, checks the connection's health,
/// reconnects and resubscribes after a loss.
pub(super) struct Worker {
    pub(super) redis: Redis,
    pub(super) channels: Channels,
    pub(super) backoff: Backoff,
    pub(super) health_check: Duration,
    pub(super) cancel: CancellationToken,
}

/// Why [`Worker::listen`] returned.
enum Lost {
    Reason(String),
    Stop,
}

impl Worker {
    pub(super) async fn run(
        self,
        mut conn: Conn,
        mut push_rx: mpsc::UnboundedReceiver<PushInfo>,
        mut outbox: Outbox,
    ) {
        // Steps of the configured backoff that restart from its minimum when the topology
        // changes (a new master is announced), so the subscription comes back within one short
        // step of the new master answering instead of finishing a pause grown during the outage.
        let mut backoff = TopologyBackoff::new(self.backoff, self.redis.topology_watch());
        let mut watch = self.redis.topology_watch();
        let mut connected_at = tokio::time::Instant::now();
        loop {
            let reason = match self.listen(&mut conn, &mut push_rx, &mut outbox).await {
                Lost::Stop => return,
                Lost::Reason(reason) => reason,
            };
            tracing::warn!(%reason, "pub/sub connection lost; reconnecting");
            let lost_at = tokio::time::Instant::now();
            // A server that accepts and subscribes but then drops the connection at once (killed
            // again and again, output buffer limit hit on every attempt) must not get a reconnect
            // storm: the backoff carries over until a connection stays up long enough.
            if lost_at.duration_since(connected_at) < self.backoff.max() {
                tracing::debug!(
                    attempt = backoff.attempt(),
                    "pub/sub connection was short-lived"
                );
                tokio::select! {
                    () = self.cancel.cancelled() => return,
                    () = backoff.wait() => {}
                }
            } else {
                backoff.reset();
            }
            // A fresh push channel so nothing from the dead connection is mixed in.
            let mut attempts = 0u32;
            conn = loop {
                attempts += 1;
                let (push_tx, rx) = mpsc::unbounded_channel();
                push_rx = rx;
                // A connect can wait for its time-out on a master that is gone; when a new one
                // is announced meanwhile, start over and connect to it now.
                watch.mark_seen();
                let connected = tokio::select! {
                    () = self.cancel.cancelled() => return,
                    connected = connect(&self.redis, &self.channels, push_tx) => connected,
                    _ = watch.changed() => continue,
                };
                match connected {
                    Ok(conn) => break conn,
                    Err(e) => {
                        tracing::debug!(error = %e, attempt = backoff.attempt(), attempts, "pub/sub reconnect failed");
                        tokio::select! {
                            () = self.cancel.cancelled() => return,
                            () = backoff.wait() => {}
                        }
                    }
                }
            };
            connected_at = tokio::time::Instant::now();
            let gap = Gap {
                kind: GapKind::Reconnect,
                reason,
                duration: lost_at.elapsed(),
                attempts,
                dropped: 0,
            };
            tracing::info!(%gap, "pub/sub resubscribed");
            if outbox.gap(gap).is_err() {
                return;
            }
        }
    }

    /// Forwards messages until the connection is lost or the subscription is dropped. It never
    /// waits for the reader, so the connection's push queue is drained as fast as it fills.
    async fn listen(
        &self,
        conn: &mut Conn,
        push_rx: &mut mpsc::UnboundedReceiver<PushInfo>,
        outbox: &mut Outbox,
    ) -> Lost {
        let mut ticker = tokio::time::interval(self.health_check);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            let pending = outbox.has_pending();
            tokio::select! {
                () = self.cancel.cancelled() => return Lost::Stop,
                // Room for a gap that is waiting: deliver it even when no message comes.
                room = outbox.room(), if pending => {
                    if room.is_err() || outbox.flush().is_err() {
                        return Lost::Stop;
                    }
                }
                push = push_rx.recv() => {
                    let Some(push) = push else {
                        return Lost::Reason("push channel closed".into());
                    };
                    match push.kind {
                        PushKind::Disconnection => {
                            // On a cluster too: the client would resubscribe by itself, but only
                            // once it refreshes its slot map, seconds after a promotion. A fresh
                            // connection, retried on the topology backoff, is back within one
                            // short step of the new master answering.
                            return Lost::Reason(match conn {
                                Conn::Cluster(_) => "a cluster node connection was lost".into(),
                                Conn::Single(_) => "the server closed the connection".into(),
                            });
                        }
                        // Nothing here unsubscribes: the server dropped a sharded subscription
                        // because its slot moved to another master. Subscribe everything again
                        // on a fresh connection, which finds the slot's new owner.
                        PushKind::SUnsubscribe if matches!(conn, Conn::Cluster(_)) => {
                            return Lost::Reason(
                                "the server dropped a sharded subscription (its slot moved)".into(),
                            );
                        }
                        kind => {
                            if let Some(raw) = to_raw(&kind, push.data)
                                && outbox.message(raw).is_err()
                            {
                                return Lost::Stop;
                            }
                        }
                    }
                }
                _ = ticker.tick() => {
                    match tokio::time::timeout(self.health_check, conn.ping()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Lost::Reason(format!("health check failed: {e}")),
                        Err(_) => return Lost::Reason(format!("no answer to a health check within {:?}", self.health_check)),
                    }
                }
            }
        }
    }
}
