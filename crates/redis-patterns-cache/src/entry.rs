//! The stored envelope and the pure arithmetic of TTLs and early refresh.
//!
//! An entry is one Redis string:
//!
//! ```text
//! 0xCA 0x01                 magic and format version
//! kind          u8          0 = value, 1 = "not found" (negative entry)
//! fresh_until   u64 BE      Unix ms after which the entry is stale (logical expiry)
//! delta         u32 BE      ms the load took (XFetch's delta)
//! tag count     u16 BE
//! per tag       u16 BE len + tag key, u16 BE len + tag version
//! payload                   the codec's bytes (empty for a negative entry)
//! ```
//!
//! Redis's own TTL on the key is `fresh ttl + grace`: the stale window lives only in Redis.

use std::{
    io::Write,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis_core::redis::{RedisWrite, ToRedisArgs};

const MAGIC: u8 = 0xCA;
const FORMAT: u8 = 1;
const HEADER_LEN: usize = 2 + 1 + 8 + 4 + 2;

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Value,
    Negative,
}

/// A parsed envelope borrowing the bytes read from Redis.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub(crate) kind: Kind,
    pub(crate) fresh_until_ms: u64,
    pub(crate) delta_ms: u32,
    pub(crate) tags: Vec<(&'a [u8], &'a [u8])>,
    pub(crate) payload: &'a [u8],
}

/// Why an envelope did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed cache envelope: {0}")]
pub(crate) struct Malformed(&'static str);

/// An envelope to write: written straight into a command's argument (see [`ToRedisArgs`]), so a
/// write copies the payload once, into the command buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sealed<'a> {
    pub(crate) kind: Kind,
    pub(crate) fresh_until_ms: u64,
    pub(crate) delta_ms: u32,
    /// Counts and lengths within `u16` (checked by the caller).
    pub(crate) tags: &'a [(Vec<u8>, Vec<u8>)],
    pub(crate) payload: &'a [u8],
}

impl Sealed<'_> {
    pub(crate) fn len(&self) -> usize {
        let tags: usize = self.tags.iter().map(|(k, v)| 4 + k.len() + v.len()).sum();
        HEADER_LEN + tags + self.payload.len()
    }

    fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let kind = match self.kind {
            Kind::Value => 0,
            Kind::Negative => 1,
        };
        let mut header = [0u8; HEADER_LEN];
        header[..3].copy_from_slice(&[MAGIC, FORMAT, kind]);
        header[3..11].copy_from_slice(&self.fresh_until_ms.to_be_bytes());
        header[11..15].copy_from_slice(&self.delta_ms.to_be_bytes());
        header[15..].copy_from_slice(&(self.tags.len() as u16).to_be_bytes());
        out.write_all(&header)?;
        for (key, version) in self.tags {
            out.write_all(&(key.len() as u16).to_be_bytes())?;
            out.write_all(key)?;
            out.write_all(&(version.len() as u16).to_be_bytes())?;
            out.write_all(version)?;
        }
        out.write_all(self.payload)
    }

    /// The envelope's bytes.
    pub(crate) fn to_vec(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        // Writing to a `Vec` cannot fail.
        let _ = self.write_to(&mut out);
        out
    }
}

impl ToRedisArgs for Sealed<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        // Writing to a command buffer cannot fail.
        let _ = self.write_to(&mut out.writer_for_next_arg());
    }
}

#[cfg(test)]
pub(crate) fn encode(
    kind: Kind,
    fresh_until_ms: u64,
    delta_ms: u32,
    tags: &[(Vec<u8>, Vec<u8>)],
    payload: &[u8],
) -> Vec<u8> {
    Sealed {
        kind,
        fresh_until_ms,
        delta_ms,
        tags,
        payload,
    }
    .to_vec()
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope<'_>, Malformed> {
    if bytes.len() < HEADER_LEN {
        return Err(Malformed("too short"));
    }
    if bytes[0] != MAGIC || bytes[1] != FORMAT {
        return Err(Malformed("unknown magic or format"));
    }
    let kind = match bytes[2] {
        0 => Kind::Value,
        1 => Kind::Negative,
        _ => return Err(Malformed("unknown kind")),
    };
    let fresh_until_ms = u64::from_be_bytes(array(&bytes[3..11])?);
    let delta_ms = u32::from_be_bytes(array(&bytes[11..15])?);
    let count = u16::from_be_bytes(array(&bytes[15..17])?);
    let mut rest = &bytes[HEADER_LEN..];
    let mut tags = Vec::new();
    for _ in 0..count {
        let (key, r) = take(rest)?;
        let (version, r) = take(r)?;
        tags.push((key, version));
        rest = r;
    }
    if kind == Kind::Negative && !rest.is_empty() {
        return Err(Malformed("negative entry with a payload"));
    }
    Ok(Envelope {
        kind,
        fresh_until_ms,
        delta_ms,
        tags,
        payload: rest,
    })
}

fn array<const N: usize>(bytes: &[u8]) -> Result<[u8; N], Malformed> {
    bytes.try_into().map_err(|_| Malformed("truncated header"))
}

fn take(bytes: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    if bytes.len() < 2 {
        return Err(Malformed("truncated tag"));
    }
    let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
    let rest = &bytes[2..];
    if rest.len() < len {
        return Err(Malformed("truncated tag"));
    }
    Ok(rest.split_at(len))
}

/// Milliseconds since the Unix epoch on this machine's clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, redis_core::duration_millis)
}

/// The TTL actually written: `ttl` shortened by up to `jitter` (a fraction in `[0, 1)`), with
/// `u` uniform in `[0, 1)`. Never longer than `ttl`, never shorter than `ttl * (1 - jitter)`,
/// never below 1 ms.
///
/// Shortening (rather than lengthening) keeps the configured TTL an upper bound on staleness,
/// while entries written together still expire spread over a window.
pub fn jittered_ttl(ttl: Duration, jitter: f64, u: f64) -> Duration {
    let u = if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // `f64::clamp` keeps NaN, and `Duration::mul_f64` panics on it: no jitter instead.
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let factor = 1.0 - jitter * u;
    // Not `mul_f64`, which panics when the product rounds past `Duration::MAX`.
    Duration::try_from_secs_f64(ttl.as_secs_f64() * factor)
        .unwrap_or(ttl)
        .min(ttl)
        .max(Duration::from_millis(1))
}

/// XFetch (Vattani, Chierichetti, Lowenstein, VLDB 2015): should a caller that reads a fresh
/// entry recompute it now?
///
/// True when `now - delta * beta * ln(r) >= expiry`, with `r = 1 - u` in `(0, 1]`, `delta` the
/// measured load time and `beta` the eagerness (1.0 is the paper's optimum; 0 turns early
/// refresh off). The probability rises towards 1 as `now` approaches `expiry`, and is higher for
/// values that are slow to load.
pub fn xfetch_due(now_ms: u64, expiry_ms: u64, delta_ms: u32, beta: f64, u: f64) -> bool {
    if now_ms >= expiry_ms {
        return true;
    }
    if beta <= 0.0 || delta_ms == 0 {
        return false;
    }
    let u = if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let r = (1.0 - u).max(f64::MIN_POSITIVE);
    let gap = -(f64::from(delta_ms)) * beta * r.ln();
    now_ms as f64 + gap >= expiry_ms as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_with_tags() {
        let tags = vec![
            (b"app:cache:tag:{c1}".to_vec(), b"123".to_vec()),
            (b"app:cache:tag:{c2}".to_vec(), b"".to_vec()),
        ];
        let bytes = encode(Kind::Value, 42, 7, &tags, b"{\"a\":1}");
        let env = decode(&bytes).unwrap();
        assert_eq!(env.kind, Kind::Value);
        assert_eq!(env.fresh_until_ms, 42);
        assert_eq!(env.delta_ms, 7);
        assert_eq!(env.tags.len(), 2);
        assert_eq!(env.tags[0], (&b"app:cache:tag:{c1}"[..], &b"123"[..]));
        assert_eq!(env.payload, b"{\"a\":1}");

        let neg = encode(Kind::Negative, 1, 0, &[], b"");
        assert_eq!(decode(&neg).unwrap().kind, Kind::Negative);
    }

    #[test]
    fn garbage_and_truncated_envelopes_are_malformed() {
        assert!(decode(b"").is_err());
        assert!(decode(b"{\"plain\":\"json\"}").is_err());
        assert!(decode(&[0xCA, 0x01, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        let tags = vec![(b"k".to_vec(), b"v".to_vec())];
        let bytes = encode(Kind::Value, 1, 1, &tags, b"x");
        for cut in 0..bytes.len() - 1 {
            // Every prefix is either malformed or (past the tags) a shorter payload.
            if let Ok(env) = decode(&bytes[..cut]) {
                assert!(env.payload.is_empty(), "cut {cut}");
            }
        }
        assert!(decode(&encode(Kind::Negative, 1, 1, &[], b"x")).is_err());
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let ttl = Duration::from_secs(100);
        for i in 0..=1000 {
            let u = f64::from(i) / 1000.0;
            let t = jittered_ttl(ttl, 0.2, u);
            assert!(t <= ttl && t >= Duration::from_secs(80), "{t:?} for u={u}");
        }
        assert_eq!(jittered_ttl(ttl, 0.0, 0.9), ttl);
        assert_eq!(jittered_ttl(ttl, 0.5, 0.0), ttl);
        assert_eq!(jittered_ttl(ttl, 0.5, 1.0), Duration::from_secs(50));
        assert_eq!(jittered_ttl(ttl, 0.5, f64::NAN), ttl);
        // Out-of-range jitter (the builder refuses it; this function is public) never panics.
        assert_eq!(jittered_ttl(ttl, f64::NAN, 0.5), ttl);
        assert_eq!(
            jittered_ttl(ttl, f64::INFINITY, 0.5),
            Duration::from_secs(50)
        );
        assert_eq!(jittered_ttl(ttl, -3.0, 0.5), ttl);
        // A huge per-entry TTL is not a panic either (Redis refuses the PX instead).
        assert_eq!(jittered_ttl(Duration::MAX, 0.0, 0.0), Duration::MAX);
        assert!(jittered_ttl(Duration::MAX, 0.5, 0.5) < Duration::MAX);
        assert_eq!(
            jittered_ttl(Duration::from_micros(10), 0.9, 0.9),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn xfetch_rises_towards_expiry() {
        let expiry = 10_000;
        // Past expiry: always due.
        assert!(xfetch_due(10_000, expiry, 100, 1.0, 0.0));
        // u = 0 means r = 1, ln(r) = 0: never early.
        assert!(!xfetch_due(9_999, expiry, 100, 1.0, 0.0));
        // beta 0 disables early refresh.
        assert!(!xfetch_due(9_999, expiry, 100, 0.0, 0.999_999));
        // 100 ms load, 50 ms before expiry: due when -100 * ln(r) >= 50, i.e. r <= e^-0.5 ~ 0.607.
        assert!(!xfetch_due(9_950, expiry, 100, 1.0, 0.39));
        assert!(xfetch_due(9_950, expiry, 100, 1.0, 0.40));

        // The fraction of u in [0, 1) that triggers grows as expiry approaches.
        let share = |now: u64| {
            (0..1000)
                .filter(|&i| xfetch_due(now, expiry, 200, 1.0, f64::from(i) / 1000.0))
                .count()
        };
        let (far, mid, near) = (share(9_000), share(9_700), share(9_980));
        assert!(far < mid && mid < near, "{far} {mid} {near}");
        assert!(far <= 10, "{far}");
        // A slower load refreshes earlier.
        let slow = (0..1000)
            .filter(|&i| xfetch_due(9_700, expiry, 2_000, 1.0, f64::from(i) / 1000.0))
            .count();
        assert!(slow > mid);
    }
}
