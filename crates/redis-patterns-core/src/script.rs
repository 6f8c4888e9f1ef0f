//! Lua scripts: EVALSHA with load-on-`NOSCRIPT`, cluster routing by key, and a slot check.
//!
//! Built on [`redis::Script`], which sends `EVALSHA` and, when the server answers `NOSCRIPT`
//! (after a restart, a failover or `SCRIPT FLUSH`), loads the script and retries. On a cluster the
//! call is routed by its first key. Before anything is sent, [`ScriptCall::invoke`] checks that all
//! keys hash to one slot, so a script that would fail on a cluster fails the same way on a laptop.
//!
//! ```no_run
//! use redis_core::{KeySpace, Redis, Script};
//!
//! static INCR_BOTH: Script = Script::new("incr_both", "
//!     redis.call('INCR', KEYS[1])
//!     return redis.call('INCRBY', KEYS[2], ARGV[1])
//! ");
//!
//! # async fn demo(redis: Redis) -> redis_core::Result<()> {
//! let key = KeySpace::new("app")?.pattern("demo")?.key("counter")?;
//! let total: i64 = INCR_BOTH
//!     .call()
//!     .key(&key)
//!     .key(&key.companion("total"))
//!     .arg(5)
//!     .invoke(&redis)
//!     .await?;
//! # Ok(()) }
//! ```

use std::sync::OnceLock;

use redis::{FromRedisValue, ToRedisArgs, aio::ConnectionLike};

use crate::{
    Redis,
    error::{Error, Result},
    keys::slot,
};

/// Lua helpers `now_us()` and `now_ms()`: the server's clock (`TIME`) in microseconds or whole
/// milliseconds since the Unix epoch. Prepend it with [`Script::with_preludes`] to every script that
/// reads the time, instead of repeating the `TIME` lines.
///
/// ```
/// use redis_core::{Script, script::SERVER_CLOCK};
///
/// static DEADLINE: Script = Script::new("deadline", "return now_ms() + tonumber(ARGV[1])")
///     .with_preludes(&[SERVER_CLOCK]);
/// assert!(DEADLINE.source().starts_with(SERVER_CLOCK));
/// ```
pub const SERVER_CLOCK: &str = include_str!("scripts/server_clock.lua");

/// A named Lua script. `const`-constructible, so it can live in a `static`; the full source and
/// the SHA1 are computed once, on first use.
pub struct Script {
    name: &'static str,
    preludes: &'static [&'static str],
    body: &'static str,
    compiled: OnceLock<(String, redis::Script)>,
    #[cfg(feature = "metrics")]
    metrics: OnceLock<ScriptMetrics>,
}

/// The metric handles of one script, registered on its first call.
#[cfg(feature = "metrics")]
struct ScriptMetrics {
    calls: [crate::metrics::Counter; 2],
    duration: crate::metrics::Histogram,
    reloads: crate::metrics::Counter,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("name", &self.name).finish()
    }
}

impl Script {
    /// Declares a script. `name` shows up in traces and errors.
    pub const fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            preludes: &[],
            body: source,
            compiled: OnceLock::new(),
            #[cfg(feature = "metrics")]
            metrics: OnceLock::new(),
        }
    }

    /// Puts shared Lua (helper functions, constants) before the script's own source, in order:
    /// [`SERVER_CLOCK`] for the server's time, or a pattern's own helpers.
    #[must_use]
    pub const fn with_preludes(mut self, preludes: &'static [&'static str]) -> Self {
        self.preludes = preludes;
        self
    }

    /// The script's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The Lua source sent to the server: the preludes, then the script's own body.
    pub fn source(&self) -> &str {
        &self.compiled().0
    }

    /// The script's own body, without preludes.
    pub fn body(&self) -> &'static str {
        self.body
    }

    /// The SHA1 the server knows the script by.
    pub fn sha1(&self) -> &str {
        self.inner().get_hash()
    }

    /// Starts a call: add keys and arguments, then [`invoke`](ScriptCall::invoke).
    pub fn call(&self) -> ScriptCall<'_> {
        ScriptCall {
            script: self,
            invocation: self.inner().prepare_invoke(),
            first: None,
            cross: None,
        }
    }

    /// The underlying redis-rs script.
    pub fn inner(&self) -> &redis::Script {
        &self.compiled().1
    }

    #[cfg(feature = "metrics")]
    fn metrics(&self) -> &ScriptMetrics {
        use crate::metrics::{Counter, Histogram, result_label};
        self.metrics.get_or_init(|| ScriptMetrics {
            calls: [true, false].map(|ok| {
                Counter::new(
                    "redis_patterns_core_scripts_total",
                    &[("script", self.name), ("result", result_label(ok))],
                )
            }),
            duration: Histogram::new(
                "redis_patterns_core_script_duration_seconds",
                &[("script", self.name)],
            ),
            reloads: Counter::new(
                "redis_patterns_core_script_reloads_total",
                &[("script", self.name)],
            ),
        })
    }

    fn compiled(&self) -> &(String, redis::Script) {
        self.compiled.get_or_init(|| {
            let mut source = String::with_capacity(
                self.preludes.iter().map(|p| p.len()).sum::<usize>() + self.body.len(),
            );
            for prelude in self.preludes {
                source.push_str(prelude);
            }
            source.push_str(self.body);
            let script = redis::Script::new(&source);
            (source, script)
        })
    }
}

/// A script call being built. Keys must all hash to one cluster slot.
pub struct ScriptCall<'a> {
    script: &'a Script,
    invocation: redis::ScriptInvocation<'a>,
    /// The first key's slot and bytes (text only for the cross-slot message, built on failure).
    first: Option<(u16, Vec<u8>)>,
    cross: Option<String>,
}

impl std::fmt::Debug for ScriptCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptCall")
            .field("script", &self.script.name)
            .finish_non_exhaustive()
    }
}

impl<'a> ScriptCall<'a> {
    /// Adds a key (`KEYS[n]`). Use [`crate::Key`]s from one [`crate::KeySpace`] name and its companions.
    #[must_use]
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        let bytes = key.as_ref();
        let key_slot = slot(bytes);
        match &self.first {
            None => self.first = Some((key_slot, bytes.to_vec())),
            Some((first_slot, first_key)) if *first_slot != key_slot && self.cross.is_none() => {
                self.cross = Some(format!(
                    "{:?} (slot {first_slot}) and {:?} (slot {key_slot}) in script {}",
                    String::from_utf8_lossy(first_key),
                    String::from_utf8_lossy(bytes),
                    self.script.name
                ));
            }
            Some(_) => {}
        }
        self.invocation.key(bytes);
        self
    }

    /// Adds an argument (`ARGV[n]`).
    #[must_use]
    pub fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.invocation.arg(arg);
        self
    }

    /// Runs the script on the shared connection of `redis`.
    ///
    /// # Errors
    /// [`Error::CrossSlot`] before sending when keys span slots; otherwise whatever the server or
    /// the connection reports, converted into [`Error`].
    pub async fn invoke<T: FromRedisValue>(self, redis: &Redis) -> Result<T> {
        // Counted once, in `redis_patterns_core_scripts_total`, not again as an `EVALSHA` command.
        self.invoke_on(&mut redis.uncounted()).await
    }

    /// Runs the script on any redis-rs async connection (a dedicated one, a raw multiplexed one).
    ///
    /// # Errors
    /// As [`invoke`](Self::invoke).
    pub async fn invoke_on<T, C>(self, conn: &mut C) -> Result<T>
    where
        T: FromRedisValue,
        C: ConnectionLike + Send,
    {
        if let Some(detail) = self.cross {
            return Err(Error::CrossSlot(detail));
        }
        let span = tracing::trace_span!("redis.script", name = self.script.name);
        #[cfg(feature = "metrics")]
        let (started, metrics) = (
            crate::metrics::sample_latency().then(std::time::Instant::now),
            self.script.metrics(),
        );
        #[cfg(feature = "metrics")]
        let conn = &mut ReloadCounter {
            conn,
            reloads: &metrics.reloads,
        };
        let result =
            tracing::Instrument::instrument(self.invocation.invoke_async(conn), span).await;
        #[cfg(feature = "metrics")]
        {
            if let Some(started) = started {
                metrics.duration.record_duration(started.elapsed());
            }
            metrics.calls[usize::from(result.is_err())].increment(1);
        }
        result.map_err(|e| {
            tracing::debug!(script = self.script.name, error = %e, "script failed");
            Error::from(e)
        })
    }
}

/// Passes commands through to `conn`, counting the `SCRIPT LOAD` that redis-rs sends after a
/// `NOSCRIPT` reply.
#[cfg(feature = "metrics")]
struct ReloadCounter<'c, C> {
    conn: &'c mut C,
    reloads: &'c crate::metrics::Counter,
}

#[cfg(feature = "metrics")]
impl<C: ConnectionLike + Send> ConnectionLike for ReloadCounter<'_, C> {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        if matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(name)) if name.eq_ignore_ascii_case(b"SCRIPT"))
        {
            self.reloads.increment(1);
        }
        self.conn.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.conn.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}
