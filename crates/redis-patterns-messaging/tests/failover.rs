//! Streams and pub/sub through a Sentinel failover, a Cluster failover and a live slot
//! migration, under load: two producers sending, one scheduling delayed jobs, two consumers of
//! one group, a publisher and a subscriber.
//!
//! What holds by design and is asserted: callers see only typed, retryable errors, never a
//! redirect, and no call hangs; every entry in the stream after the switch is delivered at least
//! once, and no entry is handled by two consumers at once; every delayed job replicated before
//! the kill is delivered, due during the outage or after it; the consumer and the subscriber
//! resume within about a second of the new master answering. A migration shows callers no error
//! at all and loses nothing. What cannot hold (replication is asynchronous): entries and jobs
//! acknowledged just before the kill can be lost with the master; they are counted and printed,
//! and each must have been acknowledged within `LOSS_BOUND` of the kill. Pub/sub messages
//! published while the subscriber is away are lost by design (the subscriber gets a gap event).

mod support;

use std::time::{Duration, Instant};

use redis_core::KeySpace;
use redis_test_support::{MigrateOptions, TestCluster, TestSentinel, wait_until};
use support::{
    DEADLINE,
    failover::{Channel, NODE_TIMEOUT, Outcome, RESUME_BOUND, Resumed, Traffic, replicated},
};

/// Jobs due every 300 ms from 200 ms on, for `span`: during the switch and after it.
fn due_across(span: Duration) -> Vec<Duration> {
    (0..)
        .map(|i| Duration::from_millis(200 + 300 * i))
        .take_while(|d| *d <= span)
        .collect()
}

fn keys() -> KeySpace {
    KeySpace::new("fo").unwrap()
}

/// Prints the resume times and asserts they are within [`RESUME_BOUND`].
fn check_resumed(what: &str, resumed: Resumed) {
    eprintln!(
        "{what}: after the new master answered, the consumer handled an entry after {:?}, the \
         subscriber received a message after {:?}, a send succeeded after {:?}",
        resumed.consumer, resumed.subscriber, resumed.send
    );
    assert!(
        resumed.consumer < RESUME_BOUND,
        "{what}: the consumer resumes within about a second: {:?}",
        resumed.consumer
    );
    assert!(
        resumed.subscriber < RESUME_BOUND,
        "{what}: the subscriber resumes within about a second: {:?}",
        resumed.subscriber
    );
}

/// Waits until every job of `jobs` has been delivered.
async fn jobs_delivered(traffic: &Traffic, jobs: &[String]) {
    wait_until("every delayed job delivered", DEADLINE, || async {
        traffic.delivered_jobs(jobs)
    })
    .await;
}

fn check_kill(what: &str, outcome: &Outcome) {
    assert!(
        outcome.gaps >= 1,
        "{what}: the subscriber was told messages may be missing"
    );
    assert!(outcome.sent > outcome.lost && outcome.scheduled > outcome.lost_jobs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_kill() {
    let mut group = TestSentinel::spawn();
    let redis = group.redis().await;
    let traffic = Traffic::start(&redis, &keys(), "orders", Channel::Plain).await;
    traffic.warmed_up().await;
    let jobs = traffic.schedule(due_across(Duration::from_secs(6))).await;
    let barrier = format!("{}:barrier", traffic.stream());
    replicated(group.current_master_port().await, &barrier).await;
    let event = Instant::now();
    let switch = group.kill_master_and_wait_switch().await;
    let switched = Instant::now();
    eprintln!(
        "sentinel: :{} killed, +switch-master to :{} after {:?}",
        switch.old, switch.new, switch.took
    );
    let resumed = traffic.resumed_after(switched).await;
    let settled = Instant::now();
    traffic.succeeds(200, "load after the switch").await;
    jobs_delivered(&traffic, &jobs).await;
    let outcome = traffic.finish("sentinel master kill", event, settled).await;
    check_resumed("sentinel master kill", resumed);
    check_kill("sentinel master kill", &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_kill() {
    let mut cluster = TestCluster::spawn_with_node_timeout(3, 1, NODE_TIMEOUT);
    let redis = cluster.redis().await;
    let traffic = Traffic::start(&redis, &keys(), "orders", Channel::Sharded).await;
    traffic.warmed_up().await;
    let jobs = traffic.schedule(due_across(Duration::from_secs(6))).await;
    let stream = traffic.stream().to_string();
    let master = cluster
        .owner_of(redis_core::keys::slot(stream.as_bytes()))
        .await;
    replicated(master.port, &format!("{stream}:barrier")).await;
    let event = Instant::now();
    let promotion = cluster.kill_master_of(stream.as_bytes()).await;
    let switched = Instant::now();
    eprintln!(
        "cluster: master :{} killed, replica :{} promoted after {:?}",
        promotion.killed, promotion.promoted, promotion.took
    );
    let resumed = traffic.resumed_after(switched).await;
    let settled = Instant::now();
    traffic.succeeds(200, "load after the promotion").await;
    jobs_delivered(&traffic, &jobs).await;
    let outcome = traffic.finish("cluster master kill", event, settled).await;
    check_resumed("cluster master kill", resumed);
    check_kill("cluster master kill", &outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_slot_migration() {
    let mut cluster = TestCluster::spawn_with_node_timeout(3, 0, NODE_TIMEOUT);
    let redis = cluster.redis().await;
    let traffic = Traffic::start(&redis, &keys(), "orders", Channel::Sharded).await;
    let stream = traffic.stream().to_string();
    // Keys to move besides the stream's own, so the slot stays split for a while.
    cluster.fill_slot(&stream, 40).await;
    traffic.warmed_up().await;
    let jobs = traffic.schedule(due_across(Duration::from_secs(3))).await;
    let event = Instant::now();
    let (there, back) = cluster
        .migrate_slot_there_and_back(stream.as_bytes(), MigrateOptions::default())
        .await;
    let settled = Instant::now();
    eprintln!(
        "slot {} moved :{} -> :{} ({} keys, {:?}) and back ({} keys, {:?})",
        there.slot, there.from, there.to, there.keys, there.took, back.keys, back.took
    );
    let resumed = traffic.resumed_after(settled).await;
    traffic.succeeds(200, "load after the migrations").await;
    jobs_delivered(&traffic, &jobs).await;
    let outcome = traffic.finish("live slot migration", event, settled).await;
    eprintln!(
        "live slot migration: the consumer handled an entry {:?} and the subscriber received a \
         message {:?} after the slot came back",
        resumed.consumer, resumed.subscriber
    );
    assert!(there.keys >= 40, "the migration moved the slot's keys");
    assert_eq!(
        outcome.window.failed, 0,
        "a migration is invisible to callers"
    );
    assert_eq!(
        (outcome.lost, outcome.lost_jobs),
        (0, 0),
        "a migration loses nothing"
    );
}
