//! Lua scripts: EVALSHA with load-on-`NOSCRIPT`, cluster routing by key, and a slot check.
//!
//! A call sends `EVALSHA` with the SHA1 of [`redis::Script`] and, when the server answers
//! `NOSCRIPT` (after a restart, a failover or `SCRIPT FLUSH`), loads the script and retries, as
//! redis-rs does; the command is written as the call is built, laid out ahead from the script's
//! previous call, so a call costs the client no more than redis-rs's own `Script` does. On a
//! cluster the call is routed by its first key. Before anything is sent, [`ScriptCall::invoke`]
//! checks that all keys hash to one slot, so a script that would fail on a cluster fails the same
//! way on a laptop.
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
//!     .companion(&key, "total") // the key `<key>:total`, on the same slot
//!     .arg(5)
//!     .invoke(&redis)
//!     .await?;
//! # Ok(()) }
//! ```

mod call;

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, ServerErrorKind};

pub use self::call::ScriptCall;
use self::call::{Conn, Shape};

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
    /// The [`Shape`] of the last call, packed: how the next call lays out its command.
    shape: AtomicU64,
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
            shape: AtomicU64::new(0),
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
        ScriptCall::new(self, Shape::unpack(self.shape.load(Ordering::Relaxed)))
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

    /// Remembers `shape` for the next call's layout when it differs in keys or items, or needs
    /// more room (the store is skipped otherwise: calls on many threads share this word).
    fn learn(&self, shape: Shape) {
        let known = Shape::unpack(self.shape.load(Ordering::Relaxed));
        // Compared as stored (capped): a call past the caps would otherwise store every time.
        let shape = Shape::unpack(shape.pack());
        if shape.keys != known.keys || shape.items != known.items || shape.bytes > known.bytes {
            self.shape.store(shape.pack(), Ordering::Relaxed);
        }
    }

    /// Sends `cmd` (this script's `EVALSHA`) on `conn`; on `NOSCRIPT`, loads the script and
    /// sends it again.
    async fn send<T: FromRedisValue>(&self, cmd: &Cmd, conn: &mut impl Conn) -> RedisResult<T> {
        let reply = match conn.send(cmd).await?.extract_error() {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                #[cfg(feature = "metrics")]
                self.metrics().reloads.increment(1);
                let mut load = Cmd::with_capacity(3, 11 + self.source().len());
                load.arg("SCRIPT").arg("LOAD").arg(self.source());
                conn.send(&load).await?.extract_error()?;
                conn.send(cmd).await?.extract_error()
            }
            reply => reply,
        }?;
        Ok(T::from_redis_value(reply)?)
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
