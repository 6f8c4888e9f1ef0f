//! Topology changes for failover tests, made while the code under test keeps running.
//!
//! - [`TestCluster::kill_master_of`]: SIGKILL the master that owns a key's slot and wait until
//!   its replica is promoted and every live node agrees.
//! - [`TestCluster::migrate_slot_of`]: move a key's slot live to another master
//!   (`CLUSTER SETSLOT IMPORTING/MIGRATING`, `MIGRATE` in batches, `SETSLOT NODE`).
//! - [`TestSentinel::kill_master_and_wait_switch`] / [`TestSentinel::failover_and_wait_switch`]:
//!   lose the master (or ask for a failover) and wait for the sentinels' `+switch-master`.
//!
//! All of them are `async` and talk to the nodes over their own async connections, so a test
//! runs them concurrently with its load (`tokio::join!`, or load in spawned tasks) on a
//! multi-threaded runtime. They panic with the reason (and a deadline) when the deployment does
//! not get there: a failover test should fail loudly, not hang.
//!
//! ```no_run
//! # async fn demo() {
//! use redis_test_support::{MigrateOptions, TestCluster};
//!
//! let mut cluster = TestCluster::spawn_with_node_timeout(3, 1, std::time::Duration::from_millis(1000));
//! let redis = cluster.redis().await;
//! // ... start load on keys tagged `{app}` ...
//! let moved = cluster.migrate_slot_of(b"{app}", MigrateOptions::default()).await;
//! eprintln!("slot {} moved from :{} to :{} in {:?}", moved.slot, moved.from, moved.to, moved.took);
//! let promoted = cluster.kill_master_of(b"{app}").await;
//! eprintln!("replica :{} took over after {:?}", promoted.promoted, promoted.took);
//! # drop(redis);
//! # }
//! ```

use std::time::{Duration, Instant};

use redis::{AsyncConnectionConfig, RedisResult, aio::MultiplexedConnection};

use crate::{TestCluster, TestSentinel, sentinel::SERVICE};

/// How long a helper waits for the deployment to settle before panicking.
const SETTLE: Duration = Duration::from_secs(30);

/// One node as `CLUSTER NODES` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterNode {
    /// The node id.
    pub id: String,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// Flags (`master`, `slave`, `myself`, `fail`, `fail?`, ...).
    pub flags: Vec<String>,
    /// The id of its master, for a replica.
    pub master_id: Option<String>,
    /// The slot ranges it serves (inclusive), for a master.
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    /// A master not flagged as failed.
    pub fn is_healthy_master(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
            && !self.flags.iter().any(|f| f == "fail" || f == "fail?")
    }

    /// Whether it serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

/// Parses a `CLUSTER NODES` reply (importing/migrating markers are skipped).
pub fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let port = fields[1]
                .split(['@', ','])
                .next()?
                .rsplit_once(':')?
                .1
                .parse()
                .ok()?;
            let slots = fields[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|one| (one, one)),
                })
                .collect();
            Some(ClusterNode {
                id: fields[0].to_owned(),
                port,
                flags: fields[2].split(',').map(str::to_owned).collect(),
                master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                slots,
            })
        })
        .collect()
}

/// What [`TestCluster::kill_master_of`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Promotion {
    /// The slot of the key.
    pub slot: u16,
    /// Port of the master that was killed.
    pub killed: u16,
    /// Port of the replica now serving the slot.
    pub promoted: u16,
    /// From the kill until every live node reports `cluster_state:ok` with the slot on the
    /// promoted replica.
    pub took: Duration,
}

/// What [`TestCluster::migrate_slot_of`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Migration {
    /// The slot that moved.
    pub slot: u16,
    /// Port of the master that owned it.
    pub from: u16,
    /// Port of the master that owns it now.
    pub to: u16,
    /// Keys moved with `MIGRATE`.
    pub keys: usize,
    /// From `SETSLOT IMPORTING` until every live node agrees on the new owner.
    pub took: Duration,
}

/// How [`TestCluster::migrate_slot_of`] paces a migration.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MigrateOptions {
    /// Keys per `MIGRATE`.
    pub batch: usize,
    /// Pause after each batch, so load runs while the slot's keys are split between the nodes.
    pub pause: Duration,
    /// The least time the slot stays `MIGRATING`/`IMPORTING` (new keys land on the target
    /// through `ASK` meanwhile), even with few keys to move.
    pub dwell: Duration,
}

impl Default for MigrateOptions {
    /// One key per batch, 10 ms apart, at least 500 ms in the migrating state.
    fn default() -> Self {
        Self {
            batch: 1,
            pause: Duration::from_millis(10),
            dwell: Duration::from_millis(500),
        }
    }
}

impl MigrateOptions {
    /// Keys per `MIGRATE`.
    #[must_use]
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Pause after each batch.
    #[must_use]
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// The least time in the migrating state.
    #[must_use]
    pub fn dwell(mut self, dwell: Duration) -> Self {
        self.dwell = dwell;
        self
    }
}

/// What a Sentinel switch did (from the `+switch-master` message).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Switch {
    /// Port of the master before the switch.
    pub old: u16,
    /// Port of the master after it.
    pub new: u16,
    /// From the kill (or the `SENTINEL FAILOVER`) until `+switch-master` arrived.
    pub took: Duration,
}

/// An async connection to a node on 127.0.0.1 with short time-outs.
async fn connect(port: u16) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    redis::Client::open(format!("redis://127.0.0.1:{port}"))?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

async fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    cmd.query_async(&mut connect(port).await?).await
}

/// Panics with `what` and the failure.
fn must<T>(what: &str, result: redis::RedisResult<T>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

impl TestCluster {
    fn live_ports(&mut self) -> Vec<u16> {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.is_running().then(|| n.port()))
            .collect()
    }

    /// The cluster as the first live node sees it.
    ///
    /// # Panics
    /// When no node answers.
    pub async fn topology(&mut self) -> Vec<ClusterNode> {
        for port in self.live_ports() {
            if let Ok(text) = query::<String>(port, redis::cmd("CLUSTER").arg("NODES")).await {
                return parse_cluster_nodes(&text);
            }
        }
        panic!("no cluster node answers CLUSTER NODES");
    }

    /// The node serving `slot`, as the first live node sees it.
    ///
    /// # Panics
    /// When no node answers or none serves the slot.
    pub async fn owner_of(&mut self, slot: u16) -> ClusterNode {
        self.topology()
            .await
            .into_iter()
            .find(|n| n.is_healthy_master() && n.serves(slot))
            .unwrap_or_else(|| panic!("no healthy master serves slot {slot}"))
    }

    /// Waits until every live node reports `cluster_state:ok` and names `port` as the owner of
    /// `slot`.
    async fn settle(&mut self, slot: u16, port: u16, what: &str) {
        let ports = self.live_ports();
        let deadline = Instant::now() + SETTLE;
        loop {
            let mut agreed = true;
            for &node in &ports {
                let info: String = query(node, redis::cmd("CLUSTER").arg("INFO"))
                    .await
                    .unwrap_or_default();
                let nodes: String = query(node, redis::cmd("CLUSTER").arg("NODES"))
                    .await
                    .unwrap_or_default();
                let owner = parse_cluster_nodes(&nodes)
                    .into_iter()
                    .find(|n| n.is_healthy_master() && n.serves(slot))
                    .map(|n| n.port);
                if !info.contains("cluster_state:ok") || owner != Some(port) {
                    agreed = false;
                    break;
                }
            }
            if agreed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster did not settle within {SETTLE:?}: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills (SIGKILL) the master serving `key`'s slot and waits until its replica has been
    /// promoted: every live node reports `cluster_state:ok` and names the replica as the slot's
    /// owner. Needs a cluster spawned with at least one replica per master.
    ///
    /// # Panics
    /// When the master has no replica or the promotion does not complete within 30 s.
    pub async fn kill_master_of(&mut self, key: &[u8]) -> Promotion {
        let slot = redis_core::keys::slot(key);
        let topology = self.topology().await;
        let master = topology
            .iter()
            .find(|n| n.is_healthy_master() && n.serves(slot))
            .unwrap_or_else(|| panic!("no healthy master serves slot {slot}"))
            .clone();
        let replica = topology
            .iter()
            .find(|n| n.master_id.as_deref() == Some(master.id.as_str()))
            .unwrap_or_else(|| panic!("master :{} has no replica to promote", master.port))
            .port;
        let started = Instant::now();
        self.nodes
            .iter_mut()
            .find(|n| n.port() == master.port)
            .unwrap_or_else(|| panic!("master :{} is not a node of this cluster", master.port))
            .kill();
        self.settle(slot, replica, "promotion of the killed master's replica")
            .await;
        Promotion {
            slot,
            killed: master.port,
            promoted: replica,
            took: started.elapsed(),
        }
    }

    /// Writes `n` keys `<tagged>:fill:<i>` (TTL 300 s) on the slot of `tagged` (a key or prefix
    /// carrying a hash tag), so a migration of that slot has keys to move and stays split
    /// between the two nodes for a while.
    ///
    /// # Panics
    /// When a write fails.
    pub async fn fill_slot(&self, tagged: &str, n: usize) {
        let redis = self.redis().await;
        for i in 0..n {
            let _: () = redis
                .query(
                    redis::cmd("SET")
                        .arg(format!("{tagged}:fill:{i}"))
                        .arg(i)
                        .arg("EX")
                        .arg(300),
                )
                .await
                .unwrap_or_else(|e| panic!("filling the slot of {tagged}: {e}"));
        }
    }

    /// The two legs every failover test runs: `key`'s slot to another master as `there` says,
    /// then back in batches of 5 keys, 2 ms apart.
    ///
    /// # Panics
    /// As [`migrate_slot_of`](Self::migrate_slot_of).
    pub async fn migrate_slot_there_and_back(
        &mut self,
        key: &[u8],
        there: MigrateOptions,
    ) -> (Migration, Migration) {
        let there = self.migrate_slot_of(key, there).await;
        let back = self
            .migrate_slot_of(
                key,
                MigrateOptions::default()
                    .batch(5)
                    .pause(Duration::from_millis(2)),
            )
            .await;
        (there, back)
    }

    /// Moves `key`'s slot, live, to another healthy master: `SETSLOT IMPORTING` on the target,
    /// `SETSLOT MIGRATING` on the source, `MIGRATE` of the slot's keys in batches (pausing as
    /// `options` says), then `SETSLOT NODE` on the target, the source and every other master;
    /// returns once every live node names the target as the owner.
    ///
    /// # Panics
    /// When there is no other master, a step fails, or the nodes do not agree within 30 s.
    pub async fn migrate_slot_of(&mut self, key: &[u8], options: MigrateOptions) -> Migration {
        let slot = redis_core::keys::slot(key);
        let topology = self.topology().await;
        let source = topology
            .iter()
            .find(|n| n.is_healthy_master() && n.serves(slot))
            .unwrap_or_else(|| panic!("no healthy master serves slot {slot}"))
            .clone();
        let target = topology
            .iter()
            .find(|n| n.is_healthy_master() && n.id != source.id)
            .unwrap_or_else(|| panic!("no other master to move slot {slot} to"))
            .clone();
        let started = Instant::now();
        let mut src = must("connect to the source", connect(source.port).await);
        let mut dst = must("connect to the target", connect(target.port).await);
        let setslot = |state: &str, id: &str| {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg(state).arg(id);
            cmd
        };
        let () = must(
            "SETSLOT IMPORTING",
            setslot("IMPORTING", &source.id).query_async(&mut dst).await,
        );
        let () = must(
            "SETSLOT MIGRATING",
            setslot("MIGRATING", &target.id).query_async(&mut src).await,
        );
        let mut moved = 0;
        loop {
            let keys: Vec<Vec<u8>> = must(
                "GETKEYSINSLOT",
                redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(slot)
                    .arg(options.batch.max(1))
                    .query_async(&mut src)
                    .await,
            );
            if keys.is_empty() && started.elapsed() >= options.dwell {
                break;
            }
            if !keys.is_empty() {
                let mut migrate = redis::cmd("MIGRATE");
                migrate
                    .arg("127.0.0.1")
                    .arg(target.port)
                    .arg("")
                    .arg(0)
                    .arg(5000)
                    .arg("KEYS")
                    .arg(&keys);
                let _: redis::Value = must("MIGRATE", migrate.query_async(&mut src).await);
                moved += keys.len();
            }
            tokio::time::sleep(options.pause.max(Duration::from_millis(1))).await;
        }
        let () = must(
            "SETSLOT NODE on the target",
            setslot("NODE", &target.id).query_async(&mut dst).await,
        );
        let () = must(
            "SETSLOT NODE on the source",
            setslot("NODE", &target.id).query_async(&mut src).await,
        );
        for other in topology
            .iter()
            .filter(|n| n.is_healthy_master() && n.id != source.id && n.id != target.id)
        {
            // Gossip would tell them too; saying it now shortens the window of stale views.
            let _ = query::<()>(other.port, &setslot("NODE", &target.id)).await;
        }
        self.settle(slot, target.port, "slot migration").await;
        Migration {
            slot,
            from: source.port,
            to: target.port,
            keys: moved,
            took: started.elapsed(),
        }
    }
}

impl TestSentinel {
    /// The port of the master the sentinels name now.
    ///
    /// # Panics
    /// When no sentinel answers.
    pub async fn current_master_port(&self) -> u16 {
        for sentinel in &self.sentinels {
            let addr: RedisResult<(String, u16)> = query(
                sentinel.port(),
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(SERVICE),
            )
            .await;
            if let Ok((_, port)) = addr {
                return port;
            }
        }
        panic!("no sentinel names a master");
    }

    /// Kills (SIGKILL) the current master and waits for a sentinel's `+switch-master`: from then
    /// on the sentinels name the promoted replica. Works once per group (the old master stays
    /// down; [`crate::TestServer::restart`] brings it back, and the sentinels make it a replica).
    ///
    /// # Panics
    /// When no `+switch-master` arrives within 30 s.
    pub async fn kill_master_and_wait_switch(&mut self) -> Switch {
        let master = self.current_master_port().await;
        let switched = self.watch_switch().await;
        let started = Instant::now();
        for server in [&mut self.master, &mut self.replica] {
            if server.port() == master {
                server.kill();
            }
        }
        let (old, new) = switched.await;
        assert_eq!(old, master, "+switch-master names another old master");
        Switch {
            old,
            new,
            took: started.elapsed(),
        }
    }

    /// Asks the sentinels for a failover (`SENTINEL FAILOVER`) while the master stays up (it is
    /// demoted to a replica) and waits for `+switch-master`.
    ///
    /// # Panics
    /// When the sentinel refuses or no `+switch-master` arrives within 30 s.
    pub async fn failover_and_wait_switch(&mut self) -> Switch {
        let switched = self.watch_switch().await;
        let started = Instant::now();
        let () = must(
            "SENTINEL FAILOVER",
            query(
                self.sentinels[0].port(),
                redis::cmd("SENTINEL").arg("FAILOVER").arg(SERVICE),
            )
            .await,
        );
        let (old, new) = switched.await;
        Switch {
            old,
            new,
            took: started.elapsed(),
        }
    }

    /// Subscribes to `+switch-master` on every sentinel now, and returns a future of the first
    /// message's old and new master ports.
    async fn watch_switch(&self) -> impl Future<Output = (u16, u16)> + use<> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for sentinel in &self.sentinels {
            let client = must("sentinel client", redis::Client::open(sentinel.url()));
            let mut pubsub = must("sentinel pub/sub", client.get_async_pubsub().await);
            must(
                "SUBSCRIBE +switch-master",
                pubsub.subscribe("+switch-master").await,
            );
            let tx = tx.clone();
            tokio::spawn(async move {
                use futures_util::StreamExt as _;
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let text: String = msg.get_payload().unwrap_or_default();
                    if tx.send(text).is_err() {
                        return;
                    }
                }
            });
        }
        async move {
            let deadline = tokio::time::sleep(SETTLE);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    () = &mut deadline => panic!("no +switch-master within {SETTLE:?}"),
                    text = rx.recv() => {
                        let text = text.unwrap_or_default();
                        // "<name> <old-ip> <old-port> <new-ip> <new-port>"
                        let fields: Vec<&str> = text.split_whitespace().collect();
                        if let [name, _, old, _, new] = fields.as_slice()
                            && *name == SERVICE
                            && let (Ok(old), Ok(new)) = (old.parse(), new.parse())
                        {
                            return (old, new);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_parse() {
        let text = "\
a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 [5461->-b2]
b2 127.0.0.1:30002@40002 master - 0 0 2 connected 5461-10922 16000
c3 127.0.0.1:30003@40003 slave a1 0 0 1 connected
d4 127.0.0.1:30004@40004 master,fail - 0 0 3 disconnected";
        let nodes = parse_cluster_nodes(text);
        assert_eq!(nodes.len(), 4);
        assert_eq!(nodes[0].slots, vec![(0, 5460)]);
        assert!(nodes[1].serves(16000) && nodes[1].serves(6000) && !nodes[1].serves(0));
        assert_eq!(nodes[2].master_id.as_deref(), Some("a1"));
        assert!(!nodes[3].is_healthy_master());
        assert!(nodes[0].is_healthy_master());
    }
}
