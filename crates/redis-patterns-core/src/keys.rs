//! Key spaces: every key a pattern writes is `<prefix>:<pattern>:{<name>}`.
//!
//! The part in braces is the cluster *hash tag*: Redis Cluster hashes only that part, so a key and
//! all its [companions](Key::companion) (`<prefix>:<pattern>:{<name>}:<suffix>`) live on one slot and
//! a multi-key script over them is cluster-safe by construction.
//!
//! Names are arbitrary strings. The characters `{`, `}` and `%` in a name are percent-encoded so a
//! name can never change where the hash tag ends.
//!
//! ```
//! use redis_core::KeySpace;
//!
//! let limits = KeySpace::new("myapp")?.pattern("ratelimit")?;
//! let key = limits.key("user:42")?;
//! assert_eq!(key.as_str(), "myapp:ratelimit:{user:42}");
//! assert_eq!(key.companion("seq").as_str(), "myapp:ratelimit:{user:42}:seq");
//! assert_eq!(key.slot(), key.companion("seq").slot());
//!
//! // Braces in a name cannot break the hash tag.
//! assert_eq!(limits.key("a}b")?.as_str(), "myapp:ratelimit:{a%7Db}");
//! assert!(limits.key("").is_err());
//! # Ok::<(), redis_core::Error>(())
//! ```

use std::{borrow::Cow, fmt, io::Write, sync::Arc};

use crate::error::{KeyError, Result};

mod slot;

pub(crate) use slot::hash_tag;
pub use slot::{CLUSTER_SLOTS, slot};

/// Default maximum key length in bytes. Redis allows far longer keys, but long keys cost memory
/// on every access and usually mean a value was put into a key by mistake.
pub const DEFAULT_MAX_KEY_LEN: usize = 1024;

/// A namespace for keys: a prefix of one or more `:`-separated segments.
///
/// Cheap to clone. Segments must be non-empty and may not contain `{`, `}`, `:` or whitespace.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySpace {
    prefix: Arc<str>,
    max_key_len: usize,
}

impl fmt::Debug for KeySpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySpace")
            .field("prefix", &self.prefix)
            .field("max_key_len", &self.max_key_len)
            .finish()
    }
}

impl KeySpace {
    /// A key space with one prefix segment, usually the application's name.
    ///
    /// # Errors
    /// [`KeyError::Empty`] or [`KeyError::ForbiddenChar`] when `prefix` is not a valid segment.
    pub fn new(prefix: &str) -> Result<Self> {
        validate_segment(prefix)?;
        Ok(Self {
            prefix: prefix.into(),
            max_key_len: DEFAULT_MAX_KEY_LEN,
        })
    }

    /// A narrower key space: `<prefix>:<pattern>`. Pattern crates call this with their name.
    ///
    /// # Errors
    /// [`KeyError::Empty`] or [`KeyError::ForbiddenChar`] when `pattern` is not a valid segment.
    pub fn pattern(&self, pattern: &str) -> Result<Self> {
        validate_segment(pattern)?;
        Ok(Self {
            prefix: format!("{}:{pattern}", self.prefix).into(),
            max_key_len: self.max_key_len,
        })
    }

    /// Sets the largest key (in bytes) this space will build. Defaults to [`DEFAULT_MAX_KEY_LEN`].
    #[must_use]
    pub fn with_max_key_len(mut self, max: usize) -> Self {
        self.max_key_len = max;
        self
    }

    /// The prefix, without a trailing `:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The largest key this space builds, in bytes.
    pub fn max_key_len(&self) -> usize {
        self.max_key_len
    }

    /// `<prefix>:{<name>}`: the key of `name`, hash-tagged by the name itself.
    ///
    /// # Errors
    /// [`KeyError::Empty`] for an empty name, [`KeyError::TooLong`] past the limit.
    pub fn key(&self, name: &str) -> Result<Key> {
        Ok(self.key_ref(name)?.to_key())
    }

    /// The key of `name` as [`key`](Self::key) checks it, not built yet: it writes itself into
    /// a command without allocating, and becomes a [`Key`] only where one is needed.
    ///
    /// ```
    /// use redis_core::KeySpace;
    ///
    /// let space = KeySpace::new("app")?;
    /// let key = space.key_ref("a}b")?;
    /// assert_eq!(key.to_string(), "app:{a%7Db}");
    /// assert_eq!(key.to_key(), space.key("a}b")?);
    /// let cmd = redis_core::redis::cmd("GET").arg(&key).clone();
    /// let built = redis_core::redis::cmd("GET").arg(space.key("a}b")?).clone();
    /// assert_eq!(cmd.get_packed_command(), built.get_packed_command());
    /// # Ok::<(), redis_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`key`](Self::key).
    pub fn key_ref<'a>(&'a self, name: &'a str) -> Result<KeyRef<'a>> {
        if name.is_empty() {
            return Err(KeyError::Empty("key name").into());
        }
        let name = escape(name);
        self.check_len(self.prefix.len() + 3 + name.len())?;
        Ok(KeyRef {
            prefix: &self.prefix,
            tag: name,
            rest: "",
        })
    }

    /// `<prefix>:{<tag>}:<name>`: a key that shares the slot of every other key with the same tag,
    /// for example all sessions of one user.
    ///
    /// # Errors
    /// [`KeyError::Empty`] for an empty tag or name, [`KeyError::TooLong`] past the limit.
    pub fn tagged(&self, tag: &str, name: &str) -> Result<Key> {
        Ok(self.tagged_ref(tag, name)?.to_key())
    }

    /// The key of [`tagged`](Self::tagged), checked as it checks it and not built yet (see
    /// [`key_ref`](Self::key_ref)).
    ///
    /// ```
    /// use redis_core::KeySpace;
    ///
    /// let space = KeySpace::new("app")?;
    /// let key = space.tagged_ref("user:7", "cart")?;
    /// assert_eq!(key.to_string(), "app:{user:7}:cart");
    /// assert_eq!(key.to_key(), space.tagged("user:7", "cart")?);
    /// # Ok::<(), redis_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`tagged`](Self::tagged).
    pub fn tagged_ref<'a>(&'a self, tag: &'a str, name: &'a str) -> Result<KeyRef<'a>> {
        if tag.is_empty() {
            return Err(KeyError::Empty("hash tag").into());
        }
        if name.is_empty() {
            return Err(KeyError::Empty("key name").into());
        }
        let tag = escape(tag);
        self.check_len(self.prefix.len() + 3 + tag.len() + 1 + name.len())?;
        Ok(KeyRef {
            prefix: &self.prefix,
            tag,
            rest: name,
        })
    }

    /// A glob (for `SCAN MATCH`) that matches every key of this space.
    pub fn scan_pattern(&self) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 2);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str(":*");
        out
    }

    /// Refuses a key of `len` bytes past this space's limit, before anything is built.
    fn check_len(&self, len: usize) -> Result<()> {
        if len > self.max_key_len {
            return Err(KeyError::TooLong {
                len,
                max: self.max_key_len,
            }
            .into());
        }
        Ok(())
    }
}

/// A key of [`KeySpace::key_ref`] (`<prefix>:{<name>}`) or [`KeySpace::tagged_ref`]
/// (`<prefix>:{<tag>}:<name>`): checked, borrowed, not built yet.
///
/// Written into a command (it is a [`redis::ToRedisArgs`]) with no allocation of its own;
/// [`to_key`](Self::to_key) builds the [`Key`].
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRef<'a> {
    prefix: &'a str,
    /// The hash tag, escaped.
    tag: Cow<'a, str>,
    /// What follows the tag after a `:`; empty for a key that is its tag.
    rest: &'a str,
}

impl KeyRef<'_> {
    /// The key's length in bytes.
    pub fn byte_len(&self) -> usize {
        let tag_end = self.tag_end();
        match self.rest.len() {
            0 => tag_end,
            n => tag_end + 1 + n,
        }
    }

    /// Byte index just past the closing `}` of the hash tag.
    fn tag_end(&self) -> usize {
        self.prefix.len() + 3 + self.tag.len()
    }

    /// The key's parts, laid end to end.
    fn parts(&self) -> [&str; 6] {
        let separator = if self.rest.is_empty() { "" } else { ":" };
        [self.prefix, ":{", &self.tag, "}", separator, self.rest]
    }

    /// The key, built.
    pub fn to_key(&self) -> Key {
        Key {
            full: joined(&self.parts()),
            tag_end: self.tag_end(),
        }
    }
}

impl fmt::Debug for KeyRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl fmt::Display for KeyRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.parts().iter().try_for_each(|part| f.write_str(part))
    }
}

impl redis::ToRedisArgs for KeyRef<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        // Short keys are laid out on the stack and copied in once (cheaper than several writes
        // through the command's writer); long ones are written part by part.
        const STACK: usize = 128;
        let parts = self.parts();
        let len = self.byte_len();
        if len <= STACK {
            let mut buf = [0u8; STACK];
            let mut at = 0;
            for part in parts {
                buf[at..at + part.len()].copy_from_slice(part.as_bytes());
                at += part.len();
            }
            out.write_arg(&buf[..len]);
            return;
        }
        let mut arg = out.writer_for_next_arg();
        // Writing into a command buffer cannot fail.
        for part in parts {
            let _ = arg.write_all(part.as_bytes());
        }
    }
}

impl redis::ToSingleRedisArg for KeyRef<'_> {}

/// A finished key: `<prefix>:{<tag>}[:<rest>]`. Cheap to clone; use it wherever redis-rs takes a key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    full: Arc<str>,
    /// Byte index just past the closing `}` of the hash tag.
    tag_end: usize,
}

impl Key {
    /// The key as Redis sees it.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// `<this key>:<suffix>`: a companion key on the same cluster slot.
    ///
    /// Suffixes are chosen by pattern crates (`seq`, `fence`, `idx`, ...), so they are not checked
    /// against the length limit.
    pub fn companion(&self, suffix: &str) -> Self {
        Self {
            full: joined(&[&self.full, ":", suffix]),
            tag_end: self.tag_end,
        }
    }

    /// The key up to and including its hash tag: `<prefix>:{<tag>}`.
    pub fn tag_root(&self) -> &str {
        &self.full[..self.tag_end]
    }

    /// The cluster slot (0..16384) of this key.
    pub fn slot(&self) -> u16 {
        slot(self.full.as_bytes())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.full, f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        self.full.as_bytes()
    }
}

impl redis::ToRedisArgs for Key {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        out.write_arg(self.full.as_bytes());
    }
}

impl redis::ToSingleRedisArg for Key {}

fn validate_segment(segment: &str) -> Result<(), KeyError> {
    if segment.is_empty() {
        return Err(KeyError::Empty("key space segment"));
    }
    if let Some(found) = segment
        .chars()
        .find(|c| matches!(c, '{' | '}' | ':') || c.is_whitespace())
    {
        return Err(KeyError::ForbiddenChar {
            segment: segment.to_owned(),
            found,
        });
    }
    Ok(())
}

/// `parts` concatenated (`len` bytes in all) into one shared string with one allocation: short
/// keys are assembled on the stack, not in a `String` that `Arc<str>` would copy again.
fn joined(parts: &[&str]) -> Arc<str> {
    const STACK: usize = 256;
    let len: usize = parts.iter().map(|part| part.len()).sum();
    if len <= STACK {
        let mut buf = [0u8; STACK];
        let mut at = 0;
        for part in parts {
            buf[at..at + part.len()].copy_from_slice(part.as_bytes());
            at += part.len();
        }
        // Whole `str`s laid end to end are valid UTF-8: this never fails.
        if let Ok(key) = std::str::from_utf8(&buf[..at]) {
            return Arc::from(key);
        }
    }
    Arc::from(parts.concat())
}

/// `name` with `{`, `}` and `%` percent-encoded; borrowed when it has none (the usual case,
/// checked inline).
#[inline]
fn escape(name: &str) -> Cow<'_, str> {
    if !name.bytes().any(|b| matches!(b, b'{' | b'}' | b'%')) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(escaped(name))
}

/// The percent-encoding of a name that needs it (see [`escape`]).
#[cold]
fn escaped(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companions_share_the_slot_of_their_key() {
        let ks = KeySpace::new("app").unwrap().pattern("lock").unwrap();
        for name in ["a", "b}c", "{x}", "%7D", "x:y:z", "ünïcødé"] {
            let key = ks.key(name).unwrap();
            assert_eq!(key.slot(), key.companion("fence").slot(), "{name}");
            assert_eq!(slot(key.tag_root().as_bytes()), key.slot());
        }
    }

    #[test]
    fn short_and_long_keys_are_built_alike() {
        let space = KeySpace::new("app").unwrap();
        for len in [1, 200, 251, 252, 253, 300, 1000] {
            let name = "n".repeat(len);
            let key = space.key(&name).unwrap();
            assert_eq!(key.as_str(), format!("app:{{{name}}}"));
            assert_eq!(key.tag_root(), key.as_str());
            let tagged = space.tagged(&name, "x").unwrap();
            assert_eq!(tagged.as_str(), format!("app:{{{name}}}:x"));
            assert_eq!(tagged.tag_root(), key.as_str());
            assert_eq!(key.companion("seq").as_str(), format!("app:{{{name}}}:seq"));
        }
        assert_eq!(space.key("é{}%").unwrap().as_str(), "app:{é%7B%7D%25}");
        // `app:{abcde}` is 11 bytes, `app:{abcde}:x` 13.
        let exact = space.clone().with_max_key_len(11);
        assert_eq!(exact.key("abcde").unwrap().as_str(), "app:{abcde}");
        assert!(exact.tagged("abcde", "x").is_err());
        assert!(space.with_max_key_len(10).key("abcde").is_err());
    }

    #[test]
    fn unbuilt_keys_write_what_built_keys_write() {
        let space = KeySpace::new("app").unwrap().pattern("cache").unwrap();
        for name in [
            "a",
            "b}c",
            "{x}",
            "%7D",
            "x:y:z",
            "ünïcødé",
            &"n".repeat(300),
        ] {
            let unbuilt = space.key_ref(name).unwrap();
            let built = space.key(name).unwrap();
            assert_eq!(unbuilt.to_key(), built);
            assert_eq!(unbuilt.byte_len(), built.as_str().len());
            assert_eq!(unbuilt.to_string(), built.as_str());
            assert_eq!(unbuilt.to_key().tag_root(), built.tag_root());
            assert_eq!(
                redis::cmd("GET").arg(&unbuilt).get_packed_command(),
                redis::cmd("GET").arg(&built).get_packed_command(),
            );
            // Tagged: the tag's key, a `:` and the name (not escaped), with the tag's slot.
            for rest in ["r", "x:{y}", &"m".repeat(200)] {
                let tagged = space.tagged_ref(name, rest).unwrap();
                let expected = format!("{built}:{rest}");
                assert_eq!(tagged.to_string(), expected);
                assert_eq!(tagged.byte_len(), expected.len());
                let key = tagged.to_key();
                assert_eq!(key.as_str(), expected);
                assert_eq!(key.tag_root(), built.as_str());
                assert_eq!(key.slot(), built.slot());
                assert_eq!(
                    redis::cmd("GET").arg(&tagged).get_packed_command(),
                    redis::cmd("GET")
                        .arg(expected.as_str())
                        .get_packed_command(),
                );
            }
        }
        assert!(space.key_ref("").is_err());
        assert!(space.tagged_ref("", "x").is_err());
        assert!(space.tagged_ref("x", "").is_err());
        let short = space.with_max_key_len(16);
        assert!(matches!(
            short.key_ref("0123456789"),
            Err(crate::Error::InvalidKey(KeyError::TooLong { max: 16, .. }))
        ));
    }

    #[test]
    fn escaping_is_injective() {
        let ks = KeySpace::new("app").unwrap();
        let a = ks.key("%7D").unwrap();
        let b = ks.key("}").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn tagged_keys_share_the_tag_slot() {
        let ks = KeySpace::new("app").unwrap().pattern("session").unwrap();
        let a = ks.tagged("user:1", "s1").unwrap();
        let b = ks.tagged("user:1", "index").unwrap();
        assert_eq!(a.as_str(), "app:session:{user:1}:s1");
        assert_eq!(a.slot(), b.slot());
        assert_eq!(a.slot(), ks.key("user:1").unwrap().slot());
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert!(matches!(
            KeySpace::new(""),
            Err(crate::Error::InvalidKey(KeyError::Empty(_)))
        ));
        assert!(matches!(
            KeySpace::new("a{b"),
            Err(crate::Error::InvalidKey(KeyError::ForbiddenChar {
                found: '{',
                ..
            }))
        ));
        assert!(KeySpace::new("a b").is_err());
        let ks = KeySpace::new("app").unwrap().with_max_key_len(16);
        assert!(matches!(
            ks.key("0123456789abcdef"),
            Err(crate::Error::InvalidKey(KeyError::TooLong { max: 16, .. }))
        ));
        assert!(ks.tagged("", "x").is_err());
        assert!(ks.tagged("x", "").is_err());
    }

    #[test]
    fn scan_pattern_escapes_glob_characters() {
        let ks = KeySpace::new("a*b").unwrap().pattern("c?").unwrap();
        assert_eq!(ks.scan_pattern(), "a\\*b:c\\?:*");
    }
}
