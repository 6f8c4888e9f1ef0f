//! Following the redirects redis-rs' cluster connection hands back.
//!
//! redis-rs' `ClusterConnection` follows `MOVED` and `ASK` itself, but within a retry budget it
//! shares with `TRYAGAIN`, `CLUSTERDOWN` and connection errors, and never for a `MULTI`/`EXEC`
//! transaction (a redirect while queueing comes back as `EXECABORT`) or a fan-out. During a slot
//! migration a call can meet `ASK`, `TRYAGAIN` and `MOVED` in a row, and after a master dies a
//! replica can answer `MOVED` to the dead node until the cluster agrees on the promotion. What
//! escapes redis-rs is followed here, for commands (scripts included: `EVALSHA`, and the
//! `SCRIPT LOAD` and `EVALSHA` of the `NOSCRIPT` fallback) and pipelines:
//!
//! - `MOVED <slot> <node>`: sent again to that node;
//! - `ASK <slot> <node>`: sent again to that node after `ASKING` (on the same connection, in
//!   the same write);
//! - `TRYAGAIN` (a multi-key call while its keys are split between two nodes): sent again
//!   through the cluster connection after a short pause.
//!
//! A redirect means the command did not run where it was sent, so following it is always safe,
//! scripts and transactions included. `MOVED` hops are bounded ([`MAX_HOPS`]); when a redirect
//! names a node that cannot be reached (a dead master), the call goes back through the cluster
//! connection, whose slot map is refreshed by then, instead of reporting the redirect.
//!
//! `ASK` and `TRYAGAIN` are a migration in progress, and can last as long as the migration: a
//! script over several keys of a migrating slot runs only where all of them are, and a lock's or
//! a limiter's keys are often missing on purpose (a free lock, a new identity), so it meets
//! `ASK` then `TRYAGAIN` then `ASK` again until the slot has moved. Those are followed for up to
//! [`crate::MIGRATION_WAIT`] from the first of them, pausing 5–100 ms before each `TRYAGAIN`
//! resend, and then reported (retryable).

use std::{collections::HashMap, sync::Mutex, time::Duration};

use futures_util::future::BoxFuture;
use redis::{
    Cmd, ConnectionInfo, ErrorKind, Pipeline, RedisError, RedisResult, ServerErrorKind, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster_async::ClusterConnection,
};

use super::topology::NodeAddr;

/// The most redirects one call follows after redis-rs gave up on it, beyond the `ASK` and
/// `TRYAGAIN` of a migration (see [`crate::MIGRATION_WAIT`]).
pub(crate) const MAX_HOPS: u32 = 8;

/// How far a call has followed redirects: `MOVED` hops counted, a migration's `ASK`/`TRYAGAIN`
/// timed from the first of them.
struct Budget {
    hops: u32,
    sends: u32,
    migrating_since: Option<tokio::time::Instant>,
}

impl Budget {
    fn new() -> Self {
        Self {
            hops: 0,
            sends: 0,
            migrating_since: None,
        }
    }

    /// Whether `next` may be followed, counting it. Once a migration has shown itself (`ASK`,
    /// `TRYAGAIN`), everything is followed until [`crate::MIGRATION_WAIT`] has passed since, the
    /// `MOVED` a resend through a stale slot map meets included; otherwise at most
    /// [`MAX_HOPS`] `MOVED`s.
    fn allows(&mut self, next: &Hop) -> bool {
        let migrating = match (next, self.migrating_since) {
            (Hop::Ask(_) | Hop::TryAgain, None) => {
                self.migrating_since = Some(tokio::time::Instant::now());
                true
            }
            (_, Some(since)) => since.elapsed() < crate::MIGRATION_WAIT,
            (Hop::Moved(_), None) => false,
        };
        if migrating {
            return true;
        }
        let allowed = matches!(next, Hop::Moved(_)) && self.hops < MAX_HOPS;
        self.hops += u32::from(allowed);
        allowed
    }

    /// The pause before sending again through the cluster connection.
    fn pause(&mut self) -> Duration {
        let pause = PAUSE.delay(self.sends);
        self.sends = self.sends.saturating_add(1);
        pause
    }
}

/// Pause before sending again after `TRYAGAIN` or an unreachable redirect target.
const PAUSE: crate::Backoff =
    crate::Backoff::clamped(Duration::from_millis(5), Duration::from_millis(100));

/// What a reply asks the client to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hop {
    Moved(NodeAddr),
    Ask(NodeAddr),
    TryAgain,
}

/// The hop `err` asks for: a redirect, `TRYAGAIN`, or either of them inside an aborted
/// transaction.
pub(crate) fn hop_of(err: &RedisError) -> Option<Hop> {
    match err.kind() {
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) => {
            let (addr, _slot) = err.redirect_node()?;
            let (host, port) = addr.rsplit_once(':')?;
            let node = NodeAddr {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                port: port.parse().ok()?,
            };
            Some(match err.kind() {
                ErrorKind::Server(ServerErrorKind::Ask) => Hop::Ask(node),
                _ => Hop::Moved(node),
            })
        }
        ErrorKind::Server(ServerErrorKind::TryAgain) => Some(Hop::TryAgain),
        ErrorKind::Server(ServerErrorKind::ExecAbort) => err
            .clone()
            .into_server_errors()?
            .iter()
            .find_map(|(_, inner)| hop_of(&RedisError::from(inner.clone()))),
        _ => None,
    }
}

/// The hop a single command's result asks for (server errors arrive as values, too).
pub(crate) fn hop_of_result(result: &RedisResult<Value>) -> Option<Hop> {
    match result {
        Err(e) => hop_of(e),
        Ok(Value::ServerError(e)) => hop_of(&RedisError::from(e.clone())),
        Ok(_) => None,
    }
}

/// Opens a connection of one's own to one node.
pub(crate) type NodeConnect =
    dyn Fn(ConnectionInfo) -> BoxFuture<'static, RedisResult<MultiplexedConnection>> + Send + Sync;

/// Connections to the nodes redirects name, opened on first use and dropped when they fail.
pub(crate) struct Hops {
    /// Credentials, database and TLS settings for every node (a seed node's).
    template: ConnectionInfo,
    connect: Box<NodeConnect>,
    nodes: Mutex<HashMap<NodeAddr, MultiplexedConnection>>,
}

/// A hop that could not be sent (the node is unreachable): safe to send again elsewhere.
struct NotSent(RedisError);

/// The last redirect target that could not be reached, and why.
#[derive(Default)]
struct Unreachable(Option<(NodeAddr, RedisError)>);

impl Unreachable {
    fn note(&mut self, hop: &Hop, err: RedisError) {
        if let Hop::Moved(addr) | Hop::Ask(addr) = hop {
            self.0 = Some((addr.clone(), err));
        }
    }

    /// When the hops ran out on a redirect to a node that could not be reached (a dead master
    /// a replica still points at), what to report instead: the failure to reach it, which is
    /// what happened, and retryable; the caller never sees a redirect.
    fn instead_of(self, last: &Hop) -> Option<RedisError> {
        match (last, self.0) {
            (Hop::Moved(addr) | Hop::Ask(addr), Some((dead, err))) if *addr == dead => Some(err),
            _ => None,
        }
    }
}

impl Hops {
    pub(crate) fn new(template: ConnectionInfo, connect: Box<NodeConnect>) -> Self {
        Self {
            template,
            connect,
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, HashMap<NodeAddr, MultiplexedConnection>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn node(&self, addr: &NodeAddr) -> Result<MultiplexedConnection, NotSent> {
        if let Some(conn) = self.nodes().get(addr) {
            return Ok(conn.clone());
        }
        let info = addr.connection_info(&self.template).map_err(|e| {
            NotSent(RedisError::from((
                ErrorKind::Client,
                "redirect",
                e.to_string(),
            )))
        })?;
        let conn = (self.connect)(info).await.map_err(NotSent)?;
        self.nodes().insert(addr.clone(), conn.clone());
        Ok(conn)
    }

    fn forget(&self, addr: &NodeAddr, err: &RedisError) {
        if crate::error::is_connection_error(err) || err.is_timeout() {
            self.nodes().remove(addr);
        }
    }

    /// Sends `cmd` to `addr`, after `ASKING` when `asking`.
    async fn command_on(
        &self,
        addr: &NodeAddr,
        cmd: &Cmd,
        asking: bool,
    ) -> Result<RedisResult<Value>, NotSent> {
        let mut conn = self.node(addr).await?;
        let result = if asking {
            let mut both = redis::pipe();
            both.cmd("ASKING").add_command(cmd.clone());
            conn.req_packed_commands(&both, 1, 1)
                .await
                .and_then(|mut replies| {
                    replies.pop().ok_or_else(|| {
                        RedisError::from((ErrorKind::Client, "no reply after ASKING"))
                    })
                })
        } else {
            conn.req_packed_command(cmd).await
        };
        if let Err(e) = &result {
            self.forget(addr, e);
        }
        Ok(result)
    }

    /// Sends `pipeline` to `addr`, after `ASKING` when `asking`. A transaction after `ASKING`
    /// goes over a connection of its own, so no other caller's command can come between the
    /// two (`ASKING` holds for the whole `MULTI` block); a plain pipeline gets an `ASKING`
    /// before each command in one write.
    async fn pipeline_on(
        &self,
        addr: &NodeAddr,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
        asking: bool,
    ) -> Result<RedisResult<Vec<Value>>, NotSent> {
        let result = match (asking, pipeline.is_transaction()) {
            (false, _) => {
                let mut conn = self.node(addr).await?;
                conn.req_packed_commands(pipeline, offset, count).await
            }
            (true, false) => {
                let mut conn = self.node(addr).await?;
                let mut asked = redis::pipe();
                for cmd in pipeline.cmd_iter() {
                    asked.cmd("ASKING").add_command(cmd.clone());
                }
                let total = pipeline.len();
                conn.req_packed_commands(&asked, 0, total * 2)
                    .await
                    .map(|replies| {
                        replies
                            .into_iter()
                            .skip(1)
                            .step_by(2)
                            .skip(offset)
                            .take(count)
                            .collect()
                    })
            }
            (true, true) => {
                let info = addr.connection_info(&self.template).map_err(|e| {
                    NotSent(RedisError::from((
                        ErrorKind::Client,
                        "redirect",
                        e.to_string(),
                    )))
                })?;
                let mut conn = (self.connect)(info).await.map_err(NotSent)?;
                match conn.req_packed_command(&redis::cmd("ASKING")).await {
                    Ok(_) => conn.req_packed_commands(pipeline, offset, count).await,
                    Err(e) => return Err(NotSent(e)),
                }
            }
        };
        if let Err(e) = &result {
            self.forget(addr, e);
        }
        Ok(result)
    }

    /// Follows what `first` (redis-rs' answer to `cmd`) asks for, sending again through
    /// `cluster` after `TRYAGAIN` or an unreachable node.
    pub(crate) async fn follow_command(
        &self,
        cmd: &Cmd,
        first: RedisResult<Value>,
        cluster: &ClusterConnection,
        on_hop: impl Fn(),
    ) -> RedisResult<Value> {
        let mut result = first;
        let mut unreachable = Unreachable::default();
        let mut budget = Budget::new();
        loop {
            let Some(next) = hop_of_result(&result) else {
                return result;
            };
            if !budget.allows(&next) {
                break;
            }
            on_hop();
            let sent = match &next {
                Hop::Moved(addr) => self.command_on(addr, cmd, false).await,
                Hop::Ask(addr) => self.command_on(addr, cmd, true).await,
                Hop::TryAgain => Err(NotSent(RedisError::from((ErrorKind::Client, "TRYAGAIN")))),
            };
            result = match sent {
                Ok(result) => result,
                Err(NotSent(e)) => {
                    tracing::debug!(?next, error = %e, "redirect not followed; sending again");
                    unreachable.note(&next, e);
                    tokio::time::sleep(budget.pause()).await;
                    cluster.clone().req_packed_command(cmd).await
                }
            };
        }
        match hop_of_result(&result) {
            Some(last) => unreachable.instead_of(&last).map_or(result, Err),
            None => result,
        }
    }

    /// As [`follow_command`](Self::follow_command) for a pipeline: redirects redis-rs returned
    /// as its error (a transaction aborted by a redirect, retries used up) resend the whole
    /// pipeline, which did not run; redirects in the replies of a plain pipeline resend only
    /// those commands, in order.
    pub(crate) async fn follow_pipeline(
        &self,
        pipeline: &Pipeline,
        (offset, count): (usize, usize),
        first: RedisResult<Vec<Value>>,
        cluster: &ClusterConnection,
        on_hop: impl Fn() + Clone,
    ) -> RedisResult<Vec<Value>> {
        let mut result = first;
        let mut unreachable = Unreachable::default();
        let mut budget = Budget::new();
        loop {
            let next = match &result {
                Err(e) => hop_of(e),
                Ok(_) => None,
            };
            let Some(next) = next else { break };
            if !budget.allows(&next) {
                break;
            }
            on_hop();
            let sent = match &next {
                Hop::Moved(addr) => self.pipeline_on(addr, pipeline, offset, count, false).await,
                Hop::Ask(addr) => self.pipeline_on(addr, pipeline, offset, count, true).await,
                Hop::TryAgain => Err(NotSent(RedisError::from((ErrorKind::Client, "TRYAGAIN")))),
            };
            result = match sent {
                Ok(result) => result,
                Err(NotSent(e)) => {
                    tracing::debug!(?next, error = %e, "redirect not followed; sending again");
                    unreachable.note(&next, e);
                    tokio::time::sleep(budget.pause()).await;
                    cluster
                        .clone()
                        .req_packed_commands(pipeline, offset, count)
                        .await
                }
            };
        }
        if let Err(e) = &result
            && let Some(last) = hop_of(e)
            && let Some(instead) = unreachable.instead_of(&last)
        {
            return Err(instead);
        }
        let mut values = result?;
        // A plain pipeline's replies, one per command: follow each redirected one alone.
        if !pipeline.is_transaction() && offset == 0 && values.len() == pipeline.len() {
            for (value, cmd) in values.iter_mut().zip(pipeline.cmd_iter()) {
                let reply = Ok(std::mem::replace(value, Value::Nil));
                let followed = if hop_of_result(&reply).is_some() {
                    self.follow_command(cmd, reply, cluster, on_hop.clone())
                        .await
                } else {
                    reply
                };
                *value = match followed {
                    Ok(v) => v,
                    Err(e) => match e.into_server_errors() {
                        Some(errors) if errors.len() == 1 => {
                            Value::ServerError(errors[0].1.clone())
                        }
                        _ => {
                            return Err(RedisError::from((
                                ErrorKind::Client,
                                "pipeline reply lost",
                            )));
                        }
                    },
                };
            }
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(text: &str) -> RedisError {
        redis::parse_redis_value(text.as_bytes())
            .unwrap()
            .extract_error()
            .unwrap_err()
    }

    #[tokio::test(start_paused = true)]
    async fn a_migration_is_followed_for_its_budget_and_moved_for_max_hops() {
        let node = NodeAddr {
            host: "127.0.0.1".into(),
            port: 7000,
        };
        let mut moved = Budget::new();
        assert_eq!(
            (0..100)
                .filter(|_| moved.allows(&Hop::Moved(node.clone())))
                .count(),
            MAX_HOPS as usize
        );
        let mut migrating = Budget::new();
        // A migration's ping-pong, far more hops than MAX_HOPS, for about a second.
        for _ in 0..4 * MAX_HOPS {
            assert!(migrating.allows(&Hop::Ask(node.clone())));
            assert!(migrating.allows(&Hop::TryAgain));
            let pause = migrating.pause();
            assert!(pause <= Duration::from_millis(100));
            tokio::time::advance(pause / 4).await;
        }
        assert!(migrating.migrating_since.unwrap().elapsed() < crate::MIGRATION_WAIT);
        // Within the migration's wait, `MOVED` (a resend through a stale slot map) is followed
        // however often it comes.
        for _ in 0..2 * MAX_HOPS {
            assert!(migrating.allows(&Hop::Moved(node.clone())));
        }
        tokio::time::advance(crate::MIGRATION_WAIT).await;
        assert!(!migrating.allows(&Hop::TryAgain), "the budget runs out");
        assert!(!migrating.allows(&Hop::Ask(node.clone())));
        // Then `MOVED` gets the hops a call without a migration gets.
        assert_eq!(
            (0..100)
                .filter(|_| migrating.allows(&Hop::Moved(node.clone())))
                .count(),
            MAX_HOPS as usize
        );
    }

    #[test]
    fn redirects_and_tryagain_are_hops() {
        let node = |port| NodeAddr {
            host: "127.0.0.1".into(),
            port,
        };
        assert_eq!(
            hop_of(&server_error("-MOVED 3999 127.0.0.1:6381\r\n")),
            Some(Hop::Moved(node(6381)))
        );
        assert_eq!(
            hop_of(&server_error("-ASK 3999 127.0.0.1:6382\r\n")),
            Some(Hop::Ask(node(6382)))
        );
        assert_eq!(
            hop_of(&server_error(
                "-TRYAGAIN Multiple keys request during rehashing of slot\r\n"
            )),
            Some(Hop::TryAgain)
        );
        assert_eq!(hop_of(&server_error("-ERR wrong\r\n")), None);
        assert_eq!(
            hop_of(&server_error("-CLUSTERDOWN The cluster is down\r\n")),
            None
        );
        let ipv6 = hop_of(&server_error("-MOVED 1 [::1]:7000\r\n"));
        assert_eq!(
            ipv6,
            Some(Hop::Moved(NodeAddr {
                host: "::1".into(),
                port: 7000
            }))
        );
    }
}
