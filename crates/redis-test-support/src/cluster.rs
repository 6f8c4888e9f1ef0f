//! A Redis Cluster of real nodes, formed with `CLUSTER ADDSLOTSRANGE` / `MEET` / `REPLICATE`
//! (no `redis-cli` needed).

use std::time::{Duration, Instant};

use redis_core::{Config, Redis};

use crate::server::TestServer;

const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// The `cluster-node-timeout` of [`TestCluster::spawn`]: how long a master must be unreachable
/// before the others mark it failed and its replica takes over.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// A running cluster: `masters` masters with `replicas` replicas each. Killed on drop.
#[derive(Debug)]
pub struct TestCluster {
    pub(crate) nodes: Vec<TestServer>,
    masters: usize,
}

impl TestCluster {
    /// Starts and forms a cluster, waiting until every node reports `cluster_state:ok`
    /// and every replica is in sync. `cluster-node-timeout` is [`DEFAULT_NODE_TIMEOUT`].
    ///
    /// # Panics
    /// When nodes do not start or the cluster does not form within 30 s (with the node logs).
    pub fn spawn(masters: usize, replicas: usize) -> Self {
        Self::spawn_with_node_timeout(masters, replicas, DEFAULT_NODE_TIMEOUT)
    }

    /// As [`spawn`](Self::spawn), with another `cluster-node-timeout`: failover tests use a
    /// short one (1000 ms) so a killed master's replica is promoted within about two seconds.
    ///
    /// # Panics
    /// As [`spawn`](Self::spawn).
    pub fn spawn_with_node_timeout(
        masters: usize,
        replicas: usize,
        node_timeout: Duration,
    ) -> Self {
        assert!(masters >= 1, "a cluster needs at least one master");
        let total = masters * (1 + replicas);
        let node_timeout = node_timeout.as_millis().max(1).to_string();
        let nodes: Vec<TestServer> = (0..total)
            .map(|_| {
                TestServer::builder()
                    .args([
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        node_timeout.as_str(),
                        "--repl-diskless-sync-delay",
                        "0",
                    ])
                    .spawn()
            })
            .collect();
        let cluster = Self { nodes, masters };
        cluster.form(replicas);
        cluster
    }

    fn form(&self, replicas: usize) {
        let slots_per_master = 16_384 / self.masters;
        for (i, node) in self.nodes.iter().enumerate() {
            self.must::<()>(
                node,
                redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(i + 1),
            );
            if i < self.masters {
                let start = i * slots_per_master;
                let end = if i + 1 == self.masters {
                    16_383
                } else {
                    start + slots_per_master - 1
                };
                self.must::<()>(
                    node,
                    redis::cmd("CLUSTER")
                        .arg("ADDSLOTSRANGE")
                        .arg(start)
                        .arg(end),
                );
            }
        }
        let first = &self.nodes[0];
        for node in &self.nodes[1..] {
            self.must::<()>(
                first,
                redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(node.port()),
            );
        }
        let total = self.nodes.len();
        self.wait("every node to know every other", |node| {
            let nodes: String = node
                .cmd(redis::cmd("CLUSTER").arg("NODES"))
                .unwrap_or_default();
            nodes.lines().filter(|l| !l.contains("handshake")).count() == total
        });
        for r in 0..replicas {
            for m in 0..self.masters {
                let master_id: String =
                    self.must(&self.nodes[m], redis::cmd("CLUSTER").arg("MYID"));
                let replica = &self.nodes[self.masters * (1 + r) + m];
                self.must::<()>(
                    replica,
                    redis::cmd("CLUSTER").arg("REPLICATE").arg(master_id),
                );
            }
        }
        self.wait("cluster_state:ok on every node", |node| {
            let info: String = node
                .cmd(redis::cmd("CLUSTER").arg("INFO"))
                .unwrap_or_default();
            info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
        });
        for replica in &self.nodes[self.masters..] {
            self.wait_node(replica, "replica in sync", TestServer::replica_in_sync);
        }
    }

    fn must<T: redis::FromRedisValue>(&self, node: &TestServer, cmd: &redis::Cmd) -> T {
        node.cmd(cmd).unwrap_or_else(|e| {
            panic!(
                "cluster set-up command failed on port {}: {e}\nlog:\n{}",
                node.port(),
                node.log()
            )
        })
    }

    fn wait(&self, what: &str, ok: impl Fn(&TestServer) -> bool) {
        for node in &self.nodes {
            self.wait_node(node, what, &ok);
        }
    }

    fn wait_node(&self, node: &TestServer, what: &str, ok: impl Fn(&TestServer) -> bool) {
        let deadline = Instant::now() + FORM_TIMEOUT;
        while !ok(node) {
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("--- node {} ---\n{}", n.port(), n.log()))
                    .collect();
                panic!(
                    "cluster did not reach '{what}' within {FORM_TIMEOUT:?}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(TestServer::url).collect()
    }

    /// All nodes: masters first, then replicas.
    pub fn nodes(&mut self) -> &mut [TestServer] {
        &mut self.nodes
    }

    /// A [`Config`] for this cluster.
    ///
    /// # Panics
    /// Never for a running cluster (the URLs are well-formed).
    pub fn config(&self) -> Config {
        Config::builder()
            .cluster(self.urls())
            .build()
            .unwrap_or_else(|e| panic!("cluster config: {e}"))
    }

    /// Connects a [`Redis`] handle to the cluster.
    ///
    /// # Panics
    /// When the connection fails.
    pub async fn redis(&self) -> Redis {
        Redis::connect(&self.config())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test cluster: {e}"))
    }
}
