//! Real Redis servers for tests, never mocks.
//!
//! - [`TestServer`]: one `redis-server` on a free loopback port; kill, restart, read its log.
//! - [`TestCluster`]: a formed Redis Cluster (3 masters by default in tests, replicas optional).
//! - [`TestMasters`]: independent masters (Redlock).
//! - [`TestSentinel`]: master + replica + 3 sentinels.
//! - [`TestContext`]: a [`redis_core::Redis`] and a unique key prefix per test; uses `REDIS_URL`
//!   when set (cleaning only its own keys), else a private server.
//! - Failover tests: [`TestCluster::kill_master_of`] (SIGKILL the master of a key's slot, wait
//!   for its replica's promotion), [`TestCluster::migrate_slot_of`] (move a key's slot live,
//!   paced by [`MigrateOptions`]), [`TestSentinel::kill_master_and_wait_switch`] and
//!   [`TestSentinel::failover_and_wait_switch`] (wait for `+switch-master`); all `async`, to run
//!   while load runs. [`CallLog`] times the load's calls and checks what holds through any switch
//!   (no hang, no redirect, only retryable errors, success afterwards) and measures the error
//!   window. `crates/redis-patterns-core/tests/failover.rs` is the worked example; spawn clusters
//!   with [`TestCluster::spawn_with_node_timeout`] (1000 ms) to keep a promotion near 2 s.
//! - [`FaultProxy`]: latency, blackhole, refused and reset connections between client and server.
//! - [`observe`]: the metrics and span fields the patterns record, for assertions.
//! - [`wait_until`] / [`wait_for`]: wait for a condition with a deadline instead of sleeping.
//!
//! Every process is a child of the test and is killed when its handle drops. Servers come from
//! `redis-server` on `PATH` (or `REDIS_SERVER_BIN`); when it is missing, tests fail with a message
//! saying what to install. No test skips silently.
#![deny(missing_docs)]

mod calls;
mod cluster;
mod context;
mod failover;
mod observe;
mod proxy;
mod sentinel;
mod server;
mod stats;
mod wait;

pub use calls::{Call, CallError, CallLog, ErrorWindow};
pub use cluster::{DEFAULT_NODE_TIMEOUT, TestCluster};
pub use context::{REDIS_URL_ENV, TestContext};
pub use failover::{
    ClusterNode, MigrateOptions, Migration, Promotion, Switch, parse_cluster_nodes,
};
pub use observe::{Metrics, Observed, Sample, SpanRecord, assert_no_field_contains, observe};
pub use proxy::FaultProxy;
pub use sentinel::{SERVICE as SENTINEL_SERVICE, TestSentinel};
pub use server::{
    SERVER_BIN_ENV, TestMasters, TestServer, TestServerBuilder, free_port, server_bin,
};
pub use stats::{command_calls, command_calls_and_cpu, parse_command_calls, parse_server_cpu};
pub use wait::{wait_for, wait_until};
