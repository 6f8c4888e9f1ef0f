//! The background task of a subscription: its own connection, the health check, and the
//! reconnect loop that resubscribes everything and reports the outage as a gap.

use std::time::Duration;

use redis_core::{
    Backoff, Endpoint, Feature, Redis,
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
        // Connections in a row that were lost before they had been up for `backoff.max()`.
        let mut short_lived = 0u32;
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
                let delay = self.backoff.delay(short_lived);
                short_lived = short_lived.saturating_add(1);
                tracing::debug!(?delay, short_lived, "pub/sub connection was short-lived");
                tokio::select! {
                    () = self.cancel.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            } else {
                short_lived = 0;
            }
            // A fresh push channel so nothing from the dead connection is mixed in.
            let mut attempts = 0u32;
            conn = loop {
                attempts += 1;
                let (push_tx, rx) = mpsc::unbounded_channel();
                push_rx = rx;
                match connect(&self.redis, &self.channels, push_tx).await {
                    Ok(conn) => break conn,
                    Err(e) => {
                        let delay = self.backoff.delay(short_lived.saturating_add(attempts - 1));
                        tracing::debug!(error = %e, ?delay, attempts, "pub/sub reconnect failed");
                        tokio::select! {
                            () = self.cancel.cancelled() => return,
                            () = tokio::time::sleep(delay) => {}
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
                            if let Conn::Cluster(_) = conn {
                                // The cluster client reconnects and resubscribes by itself; say
                                // that messages may have been lost on the way.
                                let gap = Gap {
                                    kind: GapKind::Reconnect,
                                    reason: "a cluster node connection was lost".into(),
                                    duration: Duration::ZERO,
                                    attempts: 1,
                                    dropped: 0,
                                };
                                if outbox.gap(gap).is_err() {
                                    return Lost::Stop;
                                }
                                continue;
                            }
                            return Lost::Reason("the server closed the connection".into());
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
