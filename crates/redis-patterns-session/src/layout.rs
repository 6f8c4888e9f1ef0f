//! How a session is stored: one string per session, so that a read is one `GET`.
//!
//! ```text
//! S1 | created (16 digits) | seen (16 digits) | owner length (8 digits) | owner | fields
//! ```
//!
//! `S1` marks a session, `T1` a tower-sessions record (whose `seen` slot holds its expiry date).
//! Times are milliseconds of the server clock, zero-padded so that a script moves `seen` in place
//! (`SETRANGE`) and everyone reads the header at fixed offsets. The fields are a MessagePack map
//! of names to the codec's bytes: what the scripts' `cmsgpack` reads and writes, so a field write
//! changes one entry on the server and concurrent writers of different fields lose nothing.
//!
//! Only the subset `cmsgpack` produces for a table of strings is read here: a map (or the empty
//! array it writes for an empty table) of strings (str or bin). Anything else is a corrupt value.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use redis_core::{Redis, keys::KeyRef, redis};

use crate::config::Timeouts;

mod fields;
mod writer;
#[cfg(feature = "tower-sessions")]
pub(crate) use fields::fields;
pub(crate) use fields::{FieldRange, decode_fields, encode_fields, field_ranges};
pub(crate) use writer::ValueWriter;

/// The mark of a session value.
pub(crate) const SESSION: &[u8; 2] = b"S1";
/// The mark of a tower-sessions record.
#[cfg(feature = "tower-sessions")]
pub(crate) const RECORD: &[u8; 2] = b"T1";
/// Bytes before the owner: the mark, two times and the owner's length.
pub(crate) const HEAD: usize = 2 + 16 + 16 + 8;
/// Bytes of the header a plain `touch` reads (`GETRANGE 0 LAST_TIME_BYTE`): the mark and both times.
pub(crate) const TIMES_END: usize = 2 + 16 + 16;

/// A stored value, parsed: the header's times, the owner and the (still encoded) fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored<'a> {
    pub(crate) created: u64,
    /// The last recorded access of a session; the expiry date of a tower-sessions record.
    pub(crate) seen: u64,
    pub(crate) owner: Option<&'a str>,
    pub(crate) fields: &'a [u8],
}

/// Parses the times of a value marked `mark` (at least [`TIMES_END`] bytes of it).
pub(crate) fn times(value: &[u8], mark: &[u8; 2]) -> Option<(u64, u64)> {
    if value.len() < TIMES_END || &value[..2] != mark {
        return None;
    }
    Some((digits::<16>(&value[2..18])?, digits::<16>(&value[18..34])?))
}

/// Parses a whole value marked `mark`; `None` when it is not one.
pub(crate) fn parse<'a>(value: &'a [u8], mark: &[u8; 2]) -> Option<Stored<'a>> {
    let (created, seen) = times(value, mark)?;
    let owner_len = usize::try_from(digits::<8>(value.get(TIMES_END..HEAD)?)?).ok()?;
    let owner = value.get(HEAD..HEAD.checked_add(owner_len)?)?;
    let owner = match owner_len {
        0 => None,
        _ => Some(std::str::from_utf8(owner).ok()?),
    };
    Some(Stored {
        created,
        seen,
        owner,
        fields: &value[HEAD + owner_len..],
    })
}

/// A value: the header for `created`, `seen` and `owner`, then the encoded `fields`.
pub(crate) fn encode(
    mark: &[u8; 2],
    created: u64,
    seen: u64,
    owner: &str,
    fields: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD + owner.len() + fields.len());
    push_header(&mut out, mark, created, seen, owner);
    out.extend_from_slice(fields);
    out
}

/// The header of a value marked `mark`: both times, the owner's length and the owner.
fn push_header(out: &mut Vec<u8>, mark: &[u8; 2], created: u64, seen: u64, owner: &str) {
    out.extend_from_slice(mark);
    push_digits(out, created, 16);
    push_digits(out, seen, 16);
    push_digits(out, owner.len() as u64, 8);
    out.extend_from_slice(owner.as_bytes());
}

/// `n` as `width` (at most 20) zero-padded decimal digits: its last `width` digits if longer
/// (the header's numbers, ms timestamps and an owner's length, never are). Two digits at a time.
fn push_digits(out: &mut Vec<u8>, mut n: u64, width: usize) {
    debug_assert!(width <= 20);
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut digits = [b'0'; 20];
    let first = digits.len() - width;
    let mut at = digits.len();
    while at > first {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        digits[at - 2..at].copy_from_slice(&PAIRS[pair..pair + 2]);
        at -= 2;
    }
    out.extend_from_slice(&digits[first..]);
}

/// Whether a whole-value write applies to a missing key (`SET NX`) or an existing one (`SET XX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Only when the key does not exist: a create, never overwriting.
    Missing,
    /// Only when the key exists: a save, never bringing a record back.
    #[cfg_attr(not(feature = "tower-sessions"), allow(dead_code))]
    Present,
}

/// Writes a whole value with its deadline (`SET key value NX|XX PXAT deadline`, one plain
/// command); whether it was written.
pub(crate) async fn set_value(
    redis: &Redis,
    key: &KeyRef<'_>,
    value: Vec<u8>,
    existing: Existing,
    deadline_ms: u64,
) -> redis_core::Result<bool> {
    let condition = match existing {
        Existing::Missing => "NX",
        Existing::Present => "XX",
    };
    // `OK` or nil, read without converting the `OK` into a string.
    let set: redis::Value = redis
        .query(
            // SET key value NX|XX PXAT deadline: sized ahead (a deadline is at most 20 digits).
            redis_core::command("SET", 6, key.byte_len() + value.len() + 26)
                .arg(key)
                .arg(value)
                .arg(condition)
                .arg("PXAT")
                .arg(deadline_ms),
        )
        .await?;
    Ok(!matches!(set, redis::Value::Nil))
}

/// One of the header's fixed-width numbers: exactly `N` decimal digits. At most 19 of them, so
/// it never overflows and the loop needs no checks but one for digits, taken at the end.
fn digits<const N: usize>(bytes: &[u8]) -> Option<u64> {
    const { assert!(N > 0 && N <= 19) };
    let bytes: &[u8; N] = bytes.try_into().ok()?;
    let (mut n, mut all_digits) = (0u64, true);
    for &b in bytes {
        let digit = b.wrapping_sub(b'0');
        all_digits &= digit < 10;
        // Wraps only on a non-digit, and then the number is thrown away.
        n = n.wrapping_mul(10).wrapping_add(u64::from(digit));
    }
    all_digits.then_some(n)
}

/// How long a reading of the server's clock is carried forward by the local monotonic clock
/// before a script reads it again.
pub(crate) const CLOCK_FRESH_FOR: Duration = Duration::from_secs(10);

/// The server's clock as the store's scripts last read it, carried forward by the local
/// monotonic clock. The script's time is read before its reply arrives, so the estimate is never
/// ahead of the server by more than the clocks' drift; it lags by up to one round trip. Unset,
/// or older than [`CLOCK_FRESH_FOR`], it is unknown and the operation runs its script.
#[derive(Debug)]
pub(crate) struct ServerClock {
    /// Server ms minus local monotonic ms at the last reading, or `i64::MIN` for none.
    offset: AtomicI64,
    /// Local monotonic ms of the last reading.
    read_at: AtomicI64,
}

/// The local monotonic clock, ms since the first use.
fn local_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX)
}

impl ServerClock {
    pub(crate) const fn new() -> Self {
        Self {
            offset: AtomicI64::new(i64::MIN),
            read_at: AtomicI64::new(0),
        }
    }

    /// Records a reading `server_ms` taken by a script whose reply has just arrived.
    pub(crate) fn observe(&self, server_ms: u64) {
        let Ok(server_ms) = i64::try_from(server_ms) else {
            return;
        };
        let local = local_ms();
        self.read_at.store(local, Ordering::Relaxed);
        self.offset
            .store(server_ms.saturating_sub(local), Ordering::Relaxed);
    }

    /// The server's clock now, ms, when a fresh reading exists.
    pub(crate) fn now(&self) -> Option<u64> {
        let offset = self.offset.load(Ordering::Relaxed);
        if offset == i64::MIN {
            return None;
        }
        let local = local_ms();
        let age = local.saturating_sub(self.read_at.load(Ordering::Relaxed));
        if !(0..i64::try_from(CLOCK_FRESH_FOR.as_millis()).unwrap_or(i64::MAX)).contains(&age) {
            return None;
        }
        u64::try_from(local.saturating_add(offset)).ok()
    }
}

/// What a plain read of a session (created `created`, last seen `seen`) allows at `now` (the
/// clock estimate, `None` when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Live, and the access need not be recorded: no script.
    Live,
    /// Run the script: the access is due to be recorded, a timeout of the current settings has
    /// passed while the key lives on, or the clock is unknown. It decides on the server's clock.
    Script,
}

/// Whether a session read plainly needs its script.
pub(crate) fn session_read(created: u64, seen: u64, now: Option<u64>, timeouts: &Timeouts) -> Read {
    let Some(now) = now else {
        return Read::Script;
    };
    // The script deletes a session past either deadline of the current settings; the touch is
    // due once `touch` ms have passed since the last recorded access.
    if timeouts.touch == 0
        || now >= timeouts.deadline(created, seen)
        || now.saturating_sub(seen) >= timeouts.touch
    {
        return Read::Script;
    }
    Read::Live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_foreign_bytes_do_not_parse() {
        let fields =
            encode_fields([(&b"a"[..], &b"1"[..]), (b"long", &[7u8; 300][..])].into_iter());
        let value = encode(
            SESSION,
            1_764_490_000_000,
            1_764_490_000_123,
            "dora",
            &fields,
        );
        assert_eq!(
            &value[..HEAD + 4],
            b"S1\
              0001764490000000\
              0001764490000123\
              00000004\
              dora"
        );
        let stored = parse(&value, SESSION).unwrap();
        assert_eq!(
            (stored.created, stored.seen, stored.owner),
            (1_764_490_000_000, 1_764_490_000_123, Some("dora"))
        );
        let decoded = decode_fields(stored.fields).unwrap();
        assert_eq!(decoded[0], ("a".to_owned(), b"1".to_vec()));
        assert_eq!(decoded[1], ("long".to_owned(), vec![7; 300]));
        assert_eq!(
            times(&value, SESSION),
            Some((1_764_490_000_000, 1_764_490_000_123))
        );

        let anonymous = encode(SESSION, 1, 2, "", &encode_fields(std::iter::empty()));
        let stored = parse(&anonymous, SESSION).unwrap();
        assert_eq!(stored.owner, None);
        assert!(decode_fields(stored.fields).unwrap().is_empty());

        assert_eq!(parse(b"", SESSION), None);
        assert_eq!(parse(&value[..HEAD + 2], SESSION), None);
        assert_eq!(
            parse(b"X1000000000000000100000000000000020000000000", SESSION),
            None
        );
        for bad in [b'x', b'/', b':', b' ', b'-'] {
            let mut bad_digit = value.clone();
            bad_digit[5] = bad;
            assert_eq!(parse(&bad_digit, SESSION), None);
        }
        assert_eq!(digits::<16>(b"0000000000000042"), Some(42));
        assert_eq!(
            digits::<19>(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(digits::<16>(b"000000000000042"), None, "too short");
        assert_eq!(digits::<8>(b"000000042"), None, "too long");
        assert_eq!(digits::<8>(b"0000004\xff"), None, "not a digit");
        assert_eq!(digits::<8>(b"00000/42"), None, "below '0'");
    }

    #[test]
    fn fixed_width_digits_are_the_last_digits_zero_padded() {
        for n in [
            0,
            7,
            42,
            99,
            100,
            1_764_490_000_123,
            9_999_999_999_999_999,
            u64::MAX,
        ] {
            for width in [1, 2, 3, 8, 15, 16, 19, 20] {
                let mut out = b"x".to_vec();
                push_digits(&mut out, n, width);
                let text = format!("{n:020}");
                assert_eq!(&out[1..], &text.as_bytes()[20 - width..], "{n} in {width}");
            }
        }
    }

    #[test]
    fn the_clock_is_unknown_until_read_and_then_moves_with_the_local_one() {
        let clock = ServerClock::new();
        assert_eq!(clock.now(), None);
        clock.observe(1_000_000);
        let now = clock.now().unwrap();
        assert!((1_000_000..1_000_000 + 1_000).contains(&now), "{now}");
    }

    #[test]
    fn plain_reads_go_to_the_script_when_a_touch_or_timeout_is_due_or_the_clock_unknown() {
        let t = Timeouts::new(
            Duration::from_millis(60_000),
            Duration::from_millis(600_000),
            Duration::from_millis(10_000),
        )
        .unwrap();
        assert_eq!(session_read(1_000, 5_000, Some(5_000), &t), Read::Live);
        assert_eq!(session_read(1_000, 5_000, Some(14_999), &t), Read::Live);
        assert_eq!(session_read(1_000, 5_000, Some(15_000), &t), Read::Script);
        assert_eq!(session_read(1_000, 5_000, None, &t), Read::Script);
        // Past the absolute deadline of the current settings.
        assert_eq!(
            session_read(1_000, 600_500, Some(601_000), &t),
            Read::Script
        );
        // A clock behind the stored access (another server, a lagging estimate): still live.
        assert_eq!(session_read(1_000, 5_000, Some(4_000), &t), Read::Live);
        let eager = Timeouts::new(
            Duration::from_millis(60_000),
            Duration::from_millis(600_000),
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(
            session_read(1_000, 5_000, Some(5_000), &eager),
            Read::Script
        );
    }
}
