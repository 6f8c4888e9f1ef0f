//! What a pattern needs from the server, declared by the pattern crate itself.

use super::Severity;
use crate::{Script, ServerVersion};

/// One rule of a [`Requirements`]: how bad breaking it is, and why, in the pattern's words.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub(crate) severity: Severity,
    pub(crate) why: &'static str,
}

/// Which keys of a pattern an eviction policy can take, and how bad that is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EvictionRule {
    /// Under `allkeys-*` policies.
    pub(crate) allkeys: Severity,
    /// Under `volatile-*` policies (they only evict keys with a TTL); `None` when the pattern's
    /// keys that matter have no TTL.
    pub(crate) volatile: Option<Severity>,
    pub(crate) why: &'static str,
}

/// Placeholder in a [`Requirements::commands`] entry, replaced by a key of the pattern's key
/// space (`<prefix>:<pattern>:{doctor}`) when asking `ACL DRYRUN`, so key patterns of the user
/// are checked too.
pub const KEY: &str = "$key";
/// Placeholder for a pub/sub channel name (`<prefix>:<pattern>:{doctor}`).
pub const CHANNEL: &str = "$channel";
/// Placeholder for a script's SHA1 (`EVALSHA`).
pub const SHA: &str = "$sha";

/// What one pattern needs from the server so that its promises hold. Each pattern crate declares
/// its own (`redis_lock::REQUIREMENTS`, ...), so the rules live next to the pattern; the
/// [doctor](super) checks them on every master.
///
/// Built in a `static` with `const` setters:
///
/// ```
/// use redis_core::doctor::{KEY, Requirements, Severity};
///
/// static QUEUE: Requirements = Requirements::new("queue")
///     .no_eviction(Severity::Error, None, "an evicted queue loses its jobs")
///     .persistence(Severity::Error, "a restart without persistence loses every job")
///     .commands(&[&["LPUSH", KEY, "job"], &["BRPOP", KEY, "1"]]);
/// assert_eq!(QUEUE.pattern(), "queue");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Requirements {
    pub(crate) pattern: &'static str,
    pub(crate) eviction: Option<EvictionRule>,
    pub(crate) wants_eviction: Option<Rule>,
    pub(crate) memory_limit: Option<Rule>,
    pub(crate) persistence: Option<Rule>,
    pub(crate) fsync_always: Option<Rule>,
    pub(crate) resp3: Option<Rule>,
    pub(crate) min_version: Option<(ServerVersion, &'static str)>,
    pub(crate) commands: &'static [&'static [&'static str]],
    pub(crate) scripts: &'static [&'static Script],
    pub(crate) no_ttl: &'static [&'static str],
}

impl Requirements {
    /// Nothing required yet, for the pattern `pattern` (its key-space segment: `lock`, `cache`).
    pub const fn new(pattern: &'static str) -> Self {
        Self {
            pattern,
            eviction: None,
            wants_eviction: None,
            memory_limit: None,
            persistence: None,
            fsync_always: None,
            resp3: None,
            min_version: None,
            commands: &[],
            scripts: &[],
            no_ttl: &[],
        }
    }

    /// The pattern's name.
    pub const fn pattern(&self) -> &'static str {
        self.pattern
    }

    /// The pattern's keys must not be evicted: a finding of `allkeys` severity under an
    /// `allkeys-*` policy, of `volatile` severity under a `volatile-*` policy (`None` when the
    /// keys that matter carry no TTL, so `volatile-*` cannot take them). Without `maxmemory` no
    /// policy evicts yet, so the finding is at most a warning then.
    #[must_use]
    pub const fn no_eviction(
        mut self,
        allkeys: Severity,
        volatile: Option<Severity>,
        why: &'static str,
    ) -> Self {
        self.eviction = Some(EvictionRule {
            allkeys,
            volatile,
            why,
        });
        self
    }

    /// The pattern wants an evicting policy (a cache): `noeviction` with a `maxmemory` makes
    /// writes fail once memory is full.
    #[must_use]
    pub const fn wants_eviction(mut self, severity: Severity, why: &'static str) -> Self {
        self.wants_eviction = Some(Rule { severity, why });
        self
    }

    /// The pattern wants a `maxmemory` limit.
    #[must_use]
    pub const fn memory_limit(mut self, severity: Severity, why: &'static str) -> Self {
        self.memory_limit = Some(Rule { severity, why });
        self
    }

    /// The pattern's keys must survive a restart: `severity` without any persistence, at most a
    /// warning with RDB snapshots only (the writes since the last snapshot are lost).
    #[must_use]
    pub const fn persistence(mut self, severity: Severity, why: &'static str) -> Self {
        self.persistence = Some(Rule { severity, why });
        self
    }

    /// The pattern wants every write on disk before it is acknowledged (`appendfsync always`).
    #[must_use]
    pub const fn fsync_always(mut self, severity: Severity, why: &'static str) -> Self {
        self.fsync_always = Some(Rule { severity, why });
        self
    }

    /// The pattern needs RESP3 (`HELLO 3`), tried on a connection of the doctor's own.
    #[must_use]
    pub const fn resp3(mut self, severity: Severity, why: &'static str) -> Self {
        self.resp3 = Some(Rule { severity, why });
        self
    }

    /// The oldest server version the pattern works with (an error below it).
    #[must_use]
    pub const fn min_version(mut self, version: ServerVersion, why: &'static str) -> Self {
        self.min_version = Some((version, why));
        self
    }

    /// The commands the pattern sends, including those its scripts call, each with example
    /// arguments ([`KEY`], [`CHANNEL`] and [`SHA`] are placeholders), for `ACL DRYRUN`.
    #[must_use]
    pub const fn commands(mut self, commands: &'static [&'static [&'static str]]) -> Self {
        self.commands = commands;
        self
    }

    /// The pattern's scripts, so the audit can name them in `SLOWLOG` entries.
    #[must_use]
    pub const fn scripts(mut self, scripts: &'static [&'static Script]) -> Self {
        self.scripts = scripts;
        self
    }

    /// The documented keys without a TTL, as globs (`*` matches anything) over the part of the
    /// key after `<prefix>:<pattern>:`, e.g. `{*}:fence`.
    #[must_use]
    pub const fn no_ttl_keys(mut self, globs: &'static [&'static str]) -> Self {
        self.no_ttl = globs;
        self
    }

    /// The scripts declared with [`scripts`](Self::scripts).
    pub fn script_list(&self) -> &'static [&'static Script] {
        self.scripts
    }

    /// True when `rest` (a key without its `<prefix>:<pattern>:`) is a documented key without TTL.
    pub fn allows_no_ttl(&self, rest: &str) -> bool {
        self.no_ttl.iter().any(|glob| glob_match(glob, rest))
    }
}

/// `*`-only glob matching (no other special characters).
pub(crate) fn glob_match(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_stars_only() {
        assert!(glob_match("{*}:fence", "{a:b}:fence"));
        assert!(!glob_match("{*}:fence", "{a}"));
        assert!(glob_match("{*}", "{orders}"));
        assert!(!glob_match("{*}", "{orders}:done:1-0"));
        assert!(glob_match("semaphore:{*}:fence", "semaphore:{x}:fence"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXc"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("*", ""));
    }
}
