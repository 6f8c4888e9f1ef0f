//! A call of a [`Script`]: its `EVALSHA`, written as keys and arguments are added, and where it
//! is sent.

use std::{future::Future, io::Write as _};

use redis::{
    Arg, Cmd, FromRedisValue, RedisResult, RedisWrite as _, ToRedisArgs, Value, aio::ConnectionLike,
};

use super::Script;
use crate::{
    Key, Redis,
    error::{Error, Result},
    keys::{hash_tag, slot},
};

/// `EVALSHA`, the SHA1 and the key count: the items before a call's keys and arguments.
const HEAD: usize = 3;

/// Bytes a call learns to reserve at most: one unusually large call does not make every later
/// call allocate as much.
const MAX_LEARNED_BYTES: usize = 4096;

/// How a script's call looked: its keys, its keys and arguments in all, and their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    pub(super) keys: usize,
    pub(super) items: usize,
    pub(super) bytes: usize,
}

impl Shape {
    pub(super) fn pack(self) -> u64 {
        let keys = self.keys.min(0xFFFF) as u64;
        let items = self.items.min(0xFFFF) as u64;
        let bytes = self.bytes.min(MAX_LEARNED_BYTES) as u64;
        keys | items << 16 | bytes << 32
    }

    pub(super) fn unpack(packed: u64) -> Self {
        Self {
            keys: (packed & 0xFFFF) as usize,
            items: (packed >> 16 & 0xFFFF) as usize,
            bytes: (packed >> 32) as usize,
        }
    }
}

/// A script call being built. Keys must all hash to one cluster slot.
///
/// Keys and arguments go straight into the `EVALSHA` command, which starts out with the key count
/// of the script's previous call; a call whose keys do not all come first, or whose key count
/// differs, is laid out again when invoked. Either way the server gets its keys first.
pub struct ScriptCall<'a> {
    script: &'a Script,
    /// `EVALSHA <sha> <numkeys> <keys and arguments as added>`.
    cmd: Cmd,
    /// The key count written into `cmd`.
    numkeys: usize,
    /// Keys added before any argument: the first items.
    leading_keys: usize,
    /// An argument has been added: a key after it is out of place.
    args_seen: bool,
    /// Item indexes (after [`HEAD`]) of keys added after an argument.
    late_keys: Vec<usize>,
    /// Item index of the first key, whose slot the others must share.
    first_key: Option<usize>,
    /// The first cross-slot pair, reported by `invoke`.
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
    /// A call of `script`, its command laid out for `shape` (the script's previous call).
    pub(super) fn new(script: &'a Script, shape: Shape) -> Self {
        Self {
            script,
            cmd: head(script, shape),
            numkeys: shape.keys,
            leading_keys: 0,
            args_seen: false,
            late_keys: Vec::new(),
            first_key: None,
            cross: None,
        }
    }

    /// Adds a key (`KEYS[n]`). Use [`Key`]s of one [`KeySpace`](crate::KeySpace) name and its
    /// companions: keys of several slots are refused by `invoke`.
    #[must_use]
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        let at = self.items();
        self.cmd.arg(key.as_ref());
        self.placed_key(at, true);
        self
    }

    /// Adds `key`'s companion `<key>:<suffix>` (see [`Key::companion`]) as a key, written straight
    /// into the command instead of built first.
    #[must_use]
    pub fn companion(mut self, key: &Key, suffix: &str) -> Self {
        let at = self.items();
        {
            let mut out = self.cmd.writer_for_next_arg();
            // Writes into a `Vec`: they cannot fail.
            let _ = out.write_all(key.as_str().as_bytes());
            let _ = out.write_all(b":");
            let _ = out.write_all(suffix.as_bytes());
        }
        // The companion of the first key is on its slot: no hashing.
        let of_first = self
            .first_key
            .is_some_and(|first| self.item(first) == key.as_str().as_bytes());
        self.placed_key(at, !of_first);
        self
    }

    /// Adds an argument (`ARGV[n]`).
    #[must_use]
    pub fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.cmd.arg(arg);
        self.args_seen = true;
        self
    }

    /// Runs the script on the shared connection of `redis`.
    ///
    /// # Errors
    /// [`Error::CrossSlot`] before sending when keys span slots; otherwise whatever the server or
    /// the connection reports, converted into [`Error`].
    pub async fn invoke<T: FromRedisValue>(self, redis: &Redis) -> Result<T> {
        // Counted once, in `redis_patterns_core_scripts_total`, not again as an `EVALSHA` command.
        self.run(&mut Shared(redis)).await
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
        self.run(&mut Any(conn)).await
    }

    async fn run<T: FromRedisValue>(self, conn: &mut impl Conn) -> Result<T> {
        let script = self.script;
        let cmd = self.finish()?;
        // `Span::none()` when nothing could see it, so that `in_span!` adds nothing.
        let span = if crate::__private::trace_spans_seen() {
            tracing::trace_span!("redis.script", name = script.name)
        } else {
            tracing::Span::none()
        };
        #[cfg(feature = "metrics")]
        let started = crate::metrics::sample_latency().then(std::time::Instant::now);
        let result = crate::in_span!(span, script.send(&cmd, conn));
        #[cfg(feature = "metrics")]
        {
            let metrics = script.metrics();
            if let Some(started) = started {
                metrics.duration.record_duration(started.elapsed());
            }
            metrics.calls[usize::from(result.is_err())].increment(1);
        }
        result.map_err(|e| {
            tracing::debug!(script = script.name, error = %e, "script failed");
            Error::from(e)
        })
    }

    /// Records that the item at `at` is a key: checks its slot against the first key's (when
    /// `check`) and notes where it stands.
    fn placed_key(&mut self, at: usize, check: bool) {
        match self.first_key {
            None => self.first_key = Some(at),
            Some(first) if check && self.cross.is_none() => self.check_slot(first, at),
            Some(_) => {}
        }
        if self.args_seen {
            self.late_keys.push(at);
        } else {
            self.leading_keys += 1;
        }
    }

    /// Keys and arguments added so far.
    fn items(&self) -> usize {
        self.cmd.args_iter().len() - HEAD
    }

    /// The item at `index` (after [`HEAD`]).
    fn item(&self, index: usize) -> &[u8] {
        self.cmd.args_iter().nth(HEAD + index).map_or(&[], bytes)
    }

    /// Records a cross-slot pair when the key at `at` is not on the slot of the first key (the
    /// item at `first`). Keys with the same hash tag share a slot without hashing either.
    fn check_slot(&mut self, first: usize, at: usize) {
        let (first_key, key) = (self.item(first), self.item(at));
        if hash_tag(first_key) == hash_tag(key) {
            return;
        }
        let (first_slot, key_slot) = (slot(first_key), slot(key));
        if first_slot != key_slot {
            self.cross = Some(format!(
                "{:?} (slot {first_slot}) and {:?} (slot {key_slot}) in script {}",
                String::from_utf8_lossy(first_key),
                String::from_utf8_lossy(key),
                self.script.name
            ));
        }
    }

    /// The finished `EVALSHA`, keys first under their count; teaches the script this call's shape.
    fn finish(self) -> Result<Cmd> {
        if let Some(detail) = self.cross {
            return Err(Error::CrossSlot(detail));
        }
        let keys = self.leading_keys + self.late_keys.len();
        let shape = Shape {
            keys,
            items: self.items(),
            bytes: self
                .cmd
                .args_iter()
                .skip(HEAD)
                .map(|arg| bytes(arg).len())
                .sum(),
        };
        self.script.learn(shape);
        if keys == self.numkeys && self.late_keys.is_empty() {
            return Ok(self.cmd);
        }
        Ok(self.laid_out(shape))
    }

    /// The command written again: the key count, the keys in the order they were added, then
    /// the arguments in theirs.
    fn laid_out(&self, shape: Shape) -> Cmd {
        let is_key = |index: usize| index < self.leading_keys || self.late_keys.contains(&index);
        let items: Vec<&[u8]> = self.cmd.args_iter().skip(HEAD).map(bytes).collect();
        let mut cmd = head(self.script, shape);
        let (keys, args): (Vec<_>, Vec<_>) = items
            .iter()
            .enumerate()
            .partition(|&(index, _)| is_key(index));
        for (_, item) in keys.into_iter().chain(args) {
            cmd.arg(*item);
        }
        cmd
    }
}

/// `EVALSHA <sha> <numkeys>` of `script`, with room for a call of `shape`.
fn head(script: &Script, shape: Shape) -> Cmd {
    let sha = script.sha1();
    let mut cmd = Cmd::with_capacity(
        HEAD + shape.items,
        "EVALSHA".len() + sha.len() + 5 + shape.bytes,
    );
    cmd.arg("EVALSHA").arg(sha).arg(shape.keys);
    cmd
}

/// An item's bytes (keys and arguments are never cursors).
fn bytes(arg: Arg<&[u8]>) -> &[u8] {
    match arg {
        Arg::Simple(bytes) => bytes,
        _ => &[],
    }
}

/// Where a call is sent.
pub(super) trait Conn: Send {
    fn send<'c>(&'c mut self, cmd: &'c Cmd)
    -> impl Future<Output = RedisResult<Value>> + Send + 'c;
}

/// The shared connection of a [`Redis`], awaited in place and uncounted.
struct Shared<'r>(&'r Redis);

impl Conn for Shared<'_> {
    fn send<'c>(
        &'c mut self,
        cmd: &'c Cmd,
    ) -> impl Future<Output = RedisResult<Value>> + Send + 'c {
        self.0.send_uncounted(cmd)
    }
}

/// Any connection.
struct Any<'c, C>(&'c mut C);

impl<C: ConnectionLike + Send> Conn for Any<'_, C> {
    fn send<'c>(
        &'c mut self,
        cmd: &'c Cmd,
    ) -> impl Future<Output = RedisResult<Value>> + Send + 'c {
        self.0.req_packed_command(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(cmd: &Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|arg| String::from_utf8_lossy(bytes(arg)).into_owned())
            .collect()
    }

    #[test]
    fn calls_put_keys_first_under_their_count_whatever_the_order_or_the_last_shape() {
        static SCRIPT: Script = Script::new("layout", "return 1");
        let sha = SCRIPT.sha1().to_owned();
        let expect = |keys: &[&str], args: &[&str]| {
            let mut all = vec!["EVALSHA".to_owned(), sha.clone(), keys.len().to_string()];
            all.extend(keys.iter().chain(args).map(|s| (*s).to_owned()));
            all
        };
        // Two keys first: the first call lays out again (the script knew no shape), the second
        // is written in place.
        for _ in 0..2 {
            let call = SCRIPT.call().key("{t}a").key("{t}b").arg("x").arg(7);
            assert_eq!(
                items(&call.finish().unwrap()),
                expect(&["{t}a", "{t}b"], &["x", "7"])
            );
        }
        assert_eq!(SCRIPT.call().numkeys, 2);
        // Keys after arguments, and fewer or more keys than last time.
        let call = SCRIPT
            .call()
            .arg("x")
            .key("{t}a")
            .arg("y")
            .key("{t}b")
            .key("{t}c");
        assert_eq!(
            items(&call.finish().unwrap()),
            expect(&["{t}a", "{t}b", "{t}c"], &["x", "y"])
        );
        let call = SCRIPT.call().key("{t}a").arg("x");
        assert_eq!(items(&call.finish().unwrap()), expect(&["{t}a"], &["x"]));
        let call = SCRIPT.call().arg("x").arg("y");
        assert_eq!(items(&call.finish().unwrap()), expect(&[], &["x", "y"]));
    }

    #[test]
    fn companions_are_written_as_the_companion_keys_are() {
        static SCRIPT: Script = Script::new("companion", "return 1");
        let key = crate::KeySpace::new("app").unwrap().key("{x}").unwrap();
        let written = SCRIPT.call().key(&key).companion(&key, "fence").arg(1);
        let built = SCRIPT.call().key(&key).key(key.companion("fence")).arg(1);
        assert_eq!(
            items(&written.finish().unwrap()),
            items(&built.finish().unwrap())
        );
        // A companion is on its key's slot, and another key's companion is refused like the key.
        let other = crate::KeySpace::new("app").unwrap().key("y").unwrap();
        assert_ne!(key.slot(), other.slot());
        let err = SCRIPT
            .call()
            .key(&key)
            .companion(&other, "fence")
            .finish()
            .unwrap_err();
        assert!(matches!(err, Error::CrossSlot(_)), "{err:?}");
    }

    #[test]
    fn keys_of_two_slots_are_refused_naming_both() {
        static SCRIPT: Script = Script::new("slots", "return 1");
        // Same tag, or different tags on one slot: accepted.
        assert!(SCRIPT.call().key("p:{a}:x").key("q:{a}:y").finish().is_ok());
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert!(
            SCRIPT
                .call()
                .key("{user1000}.following")
                .key("user1000")
                .finish()
                .is_ok()
        );
        let err = SCRIPT.call().key("a").arg(1).key("b").finish().unwrap_err();
        assert!(
            matches!(err, Error::CrossSlot(ref m) if m.contains("\"a\"") && m.contains("\"b\"")),
            "{err:?}"
        );
    }

    #[test]
    fn shapes_pack_and_cap_what_they_reserve() {
        let shape = Shape {
            keys: 3,
            items: 9,
            bytes: 120,
        };
        assert_eq!(Shape::unpack(shape.pack()), shape);
        let huge = Shape {
            keys: 70_000,
            items: 70_000,
            bytes: 1 << 40,
        };
        assert_eq!(
            Shape::unpack(huge.pack()),
            Shape {
                keys: 0xFFFF,
                items: 0xFFFF,
                bytes: MAX_LEARNED_BYTES
            }
        );
    }
}
