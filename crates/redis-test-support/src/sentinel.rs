//! One master, one replica and three sentinels (quorum 2, down-after 1 s).

use std::time::{Duration, Instant};

use redis_core::{Config, Redis};

use crate::server::TestServer;

/// The service name the sentinels monitor.
pub const SERVICE: &str = "mymaster";

/// A Sentinel-managed pair with three sentinels. Everything is killed on drop.
#[derive(Debug)]
pub struct TestSentinel {
    pub(crate) master: TestServer,
    pub(crate) replica: TestServer,
    pub(crate) sentinels: Vec<TestServer>,
    _conf_dir: tempfile::TempDir,
}

impl TestSentinel {
    /// Starts the group and waits until the sentinels agree on quorum and know the replica.
    ///
    /// # Panics
    /// When the group does not come up within 30 s (with the logs).
    pub fn spawn() -> Self {
        let master = TestServer::builder()
            .args(["--repl-diskless-sync-delay", "0"])
            .spawn();
        let replica = TestServer::builder()
            .args([
                "--repl-diskless-sync-delay",
                "0",
                "--replicaof",
                "127.0.0.1",
            ])
            .args([master.port().to_string()])
            .spawn();
        let conf_dir = tempfile::Builder::new()
            .prefix("redis-sentinel-conf-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let sentinels = (0..3)
            .map(|i| {
                let conf = conf_dir.path().join(format!("sentinel-{i}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "sentinel monitor {SERVICE} 127.0.0.1 {} 2\n\
                         sentinel down-after-milliseconds {SERVICE} 1000\n\
                         sentinel failover-timeout {SERVICE} 3000\n\
                         sentinel parallel-syncs {SERVICE} 1\n",
                        master.port()
                    ),
                )
                .unwrap_or_else(|e| panic!("write sentinel config: {e}"));
                TestServer::builder()
                    .config_file(conf)
                    .args(["--sentinel"])
                    .spawn()
            })
            .collect();
        let group = Self {
            master,
            replica,
            sentinels,
            _conf_dir: conf_dir,
        };
        group.wait("replica in sync", |g| g.replica.replica_in_sync());
        group.wait("sentinels agree on quorum and know the replica", |g| {
            g.sentinels.iter().all(|s| {
                let quorum = s
                    .cmd::<String>(redis::cmd("SENTINEL").arg("CKQUORUM").arg(SERVICE))
                    .is_ok_and(|r| r.starts_with("OK 3"));
                let replicas = s
                    .cmd::<Vec<redis::Value>>(redis::cmd("SENTINEL").arg("REPLICAS").arg(SERVICE))
                    .is_ok_and(|r| r.len() == 1);
                quorum && replicas
            })
        });
        group
    }

    fn wait(&self, what: &str, ok: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok(self) {
            if Instant::now() > deadline {
                let mut logs = format!(
                    "--- master ---\n{}\n--- replica ---\n{}\n",
                    self.master.log(),
                    self.replica.log()
                );
                for s in &self.sentinels {
                    logs.push_str(&format!("--- sentinel {} ---\n{}\n", s.port(), s.log()));
                }
                panic!("sentinel group did not reach '{what}' within 30 s\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server that started as master.
    pub fn master(&mut self) -> &mut TestServer {
        &mut self.master
    }

    /// The server that started as replica.
    pub fn replica(&mut self) -> &mut TestServer {
        &mut self.replica
    }

    /// The sentinels' URLs.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(TestServer::url).collect()
    }

    /// A [`Config`] that finds the master through the sentinels.
    ///
    /// # Panics
    /// Never for a running group.
    pub fn config(&self) -> Config {
        Config::builder()
            .sentinel(self.sentinel_urls(), SERVICE)
            .build()
            .unwrap_or_else(|e| panic!("sentinel config: {e}"))
    }

    /// Connects a [`Redis`] handle through the sentinels.
    ///
    /// # Panics
    /// When the connection fails.
    pub async fn redis(&self) -> Redis {
        Redis::connect(&self.config())
            .await
            .unwrap_or_else(|e| panic!("cannot connect through sentinel: {e}"))
    }
}
