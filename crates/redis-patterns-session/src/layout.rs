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
    ops::Range,
    sync::{
        OnceLock,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use redis_core::{Redis, keys::KeyRef, redis};

use crate::{config::Timeouts, error::Error};

mod writer;
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

/// The fields as a MessagePack map of strings.
pub(crate) fn encode_fields<'a>(
    fields: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + Clone,
) -> Vec<u8> {
    // Every string's bytes plus at most 5 bytes of header each.
    let size = fields
        .clone()
        .map(|(name, value)| name.len() + value.len() + 10)
        .sum::<usize>();
    let mut writer = ValueWriter::fields(fields.len(), size);
    for (name, value) in fields {
        writer.field_bytes(name, value);
    }
    writer.finish()
}

/// The field name, value pairs of an encoded map.
///
/// # Errors
/// [`Error::Core`] (an unexpected reply) when the bytes are not such a map or a name is not UTF-8.
pub(crate) fn decode_fields(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, Error> {
    Ok(field_ranges(bytes, 0)?
        .into_iter()
        .map(|field| {
            (
                String::from_utf8_lossy(&bytes[field.name]).into_owned(),
                bytes[field.value].to_vec(),
            )
        })
        .collect())
}

/// Where one field's name and value lie in a stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldRange {
    pub(crate) name: Range<usize>,
    pub(crate) value: Range<usize>,
}

/// The fields of the map that starts at `start` in `bytes` (and runs to its end), as ranges of
/// `bytes`, sorted by name; of a name given twice the last counts. Names are checked to be UTF-8.
///
/// # Errors
/// [`Error::Core`] (an unexpected reply) when the bytes are not such a map or a name is not UTF-8.
pub(crate) fn field_ranges(bytes: &[u8], start: usize) -> Result<Vec<FieldRange>, Error> {
    let fields = fields(bytes, start)?;
    let mut out: Vec<FieldRange> = Vec::with_capacity(fields.left().min(1024));
    // Whether the names came strictly ascending, as the store writes them.
    let mut ascending = true;
    for field in fields {
        let field = field?;
        if let Some(last) = out.last() {
            ascending &= bytes[last.name.clone()] < bytes[field.name.clone()];
        }
        out.push(field);
    }
    if ascending {
        return Ok(out);
    }
    // Stable: of equal names the later stays after the earlier, and replaces it.
    out.sort_by(|a, b| bytes[a.name.clone()].cmp(&bytes[b.name.clone()]));
    out.dedup_by(|later, earlier| {
        let same = bytes[later.name.clone()] == bytes[earlier.name.clone()];
        if same {
            earlier.value = later.value.clone();
        }
        same
    });
    Ok(out)
}

/// The fields of the map that starts at `start` in `bytes` (and runs to its end), in stored
/// order: a name given twice comes twice. For a reader that keeps the last of a name anyway (a
/// map), with no list of ranges built. Names are checked to be UTF-8; a fault ends the fields
/// with an error.
///
/// # Errors
/// [`Error::Core`] (an unexpected reply) when the bytes do not start with a map.
pub(crate) fn fields(bytes: &[u8], start: usize) -> Result<Fields<'_>, Error> {
    let mut reader = Reader { bytes, pos: start };
    let left = reader.map_len().ok_or_else(corrupt_fields)?;
    Ok(Fields { reader, left })
}

/// See [`fields`].
pub(crate) struct Fields<'a> {
    reader: Reader<'a>,
    /// Fields still to read; past the last, whether the map ends the bytes is checked once.
    left: usize,
}

impl Iterator for Fields<'_> {
    type Item = Result<FieldRange, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let Some(left) = self.left.checked_sub(1) else {
            // Once: bytes after the map make the value corrupt.
            let trailing = self.reader.pos != self.reader.bytes.len();
            self.reader.pos = self.reader.bytes.len();
            return trailing.then(|| Err(corrupt_fields()));
        };
        self.left = left;
        let field = self.field();
        if field.is_err() {
            // Nothing more is read after a fault.
            (self.left, self.reader.pos) = (0, self.reader.bytes.len());
        }
        Some(field)
    }
}

impl Fields<'_> {
    /// The fields not read yet.
    pub(crate) fn left(&self) -> usize {
        self.left
    }

    fn field(&mut self) -> Result<FieldRange, Error> {
        let name = self.reader.str().ok_or_else(corrupt_fields)?;
        let value = self.reader.str().ok_or_else(corrupt_fields)?;
        // ASCII, the usual case, is checked more cheaply than UTF-8 in general.
        let name_bytes = &self.reader.bytes[name.clone()];
        if !name_bytes.is_ascii() && std::str::from_utf8(name_bytes).is_err() {
            return Err(Error::unexpected_reply("non-UTF-8 field name"));
        }
        Ok(FieldRange { name, value })
    }
}

fn corrupt_fields() -> Error {
    Error::unexpected_reply("corrupt session fields")
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    /// Where the next string's bytes lie.
    fn str(&mut self) -> Option<Range<usize>> {
        let n = match self.byte()? {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 | 0xc4 => self.be(1)?,
            0xda | 0xc5 => self.be(2)?,
            0xdb | 0xc6 => self.be(4)?,
            _ => return None,
        };
        let start = self.pos;
        self.take(n)?;
        Some(start..self.pos)
    }

    fn be(&mut self, n: usize) -> Option<usize> {
        let bytes = self.take(n)?;
        Some(
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
        )
    }

    /// A map's length; `cmsgpack` writes an empty table as an empty array.
    fn map_len(&mut self) -> Option<usize> {
        match self.byte()? {
            m @ 0x80..=0x8f => Some(usize::from(m & 0x0f)),
            0xde => self.be(2),
            0xdf => self.be(4),
            0x90 => Some(0),
            0xdc if self.be(2)? == 0 => Some(0),
            0xdd if self.be(4)? == 0 => Some(0),
            _ => None,
        }
    }
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
    fn fields_come_in_stored_order_and_a_fault_ends_them() {
        let bytes = [
            b'x', 0x83, 0xa1, b'b', 0xa1, b'1', 0xa1, b'a', 0xa1, b'2', 0xa1, b'b', 0xa1, b'3',
        ];
        // Each field read as (name, value), or the error's text.
        type Read = Vec<Result<(Vec<u8>, Vec<u8>), String>>;
        let read = |bytes: &[u8]| -> Read {
            let fields = fields(bytes, 1).unwrap();
            fields
                .map(|f| {
                    f.map(|f| (bytes[f.name].to_vec(), bytes[f.value].to_vec()))
                        .map_err(|e| e.to_string())
                })
                .collect()
        };
        let pairs = |list: &[(&str, &str)]| -> Read {
            list.iter()
                .map(|(n, v)| Ok((n.as_bytes().to_vec(), v.as_bytes().to_vec())))
                .collect()
        };
        assert_eq!(fields(&bytes, 1).unwrap().left(), 3);
        assert_eq!(read(&bytes), pairs(&[("b", "1"), ("a", "2"), ("b", "3")]));
        // Bytes after the map: every field, then one error.
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        let got = read(&trailing);
        assert_eq!(got[..3], pairs(&[("b", "1"), ("a", "2"), ("b", "3")]));
        assert!(got[3].as_ref().unwrap_err().contains("corrupt"), "{got:?}");
        assert_eq!(got.len(), 4);
        // Cut inside the second field: the first, then one error, then nothing.
        let got = read(&bytes[..8]);
        assert_eq!(got[..1], pairs(&[("b", "1")]));
        assert!(got[1].is_err());
        assert_eq!(got.len(), 2);
        // A name that is not UTF-8.
        let got = read(&[b'x', 0x81, 0xa1, 0xff, 0xa0]);
        assert!(got[0].as_ref().unwrap_err().contains("UTF-8"), "{got:?}");
        assert_eq!(got.len(), 1);
        // Not a map at all.
        assert!(fields(&[b'x', 0xa1], 1).is_err());
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
    fn the_maps_cmsgpack_writes_decode_and_corrupt_ones_are_errors() {
        // An empty table, written as an empty array; str8/bin8 strings; map16.
        assert!(decode_fields(&[0x90]).unwrap().is_empty());
        assert_eq!(
            decode_fields(&[0x81, 0xd9, 1, b'k', 0xc4, 2, b'v', b'w']).unwrap(),
            vec![("k".to_owned(), b"vw".to_vec())]
        );
        assert_eq!(
            decode_fields(&[0xde, 0, 1, 0xa1, b'k', 0xa0]).unwrap(),
            vec![("k".to_owned(), Vec::new())]
        );
        for corrupt in [
            &[][..],
            &[0x81, 0xa1, b'k'],
            &[0x81, 0xa1, b'k', 0xa5, b'v'],
            &[0x91, 0xa0],
            &[0x80, 0x00],
            &[0x81, 0xa1, 0xff, 0xa0],
            &[0x81, 0x01, 0xa0],
        ] {
            assert!(decode_fields(corrupt).is_err(), "{corrupt:?}");
        }
    }

    #[test]
    fn field_ranges_are_sorted_and_the_last_of_a_repeated_name_counts() {
        let bytes = [
            b'x', 0x83, 0xa1, b'b', 0xa1, b'1', 0xa1, b'a', 0xa1, b'2', 0xa1, b'b', 0xa1, b'3',
        ];
        let fields = field_ranges(&bytes, 1).unwrap();
        let pairs: Vec<(&[u8], &[u8])> = fields
            .iter()
            .map(|f| (&bytes[f.name.clone()], &bytes[f.value.clone()]))
            .collect();
        assert_eq!(pairs, vec![(&b"a"[..], &b"2"[..]), (b"b", b"3")]);
        // In order already (as the store writes them), and a repeated name that is in order.
        for (bytes, expected) in [
            (
                &[
                    b'x', 0x82, 0xa1, b'a', 0xa1, b'1', 0xa2, b'a', b'b', 0xa1, b'2',
                ][..],
                vec![(&b"a"[..], &b"1"[..]), (b"ab", b"2")],
            ),
            (
                &[b'x', 0x82, 0xa1, b'a', 0xa1, b'1', 0xa1, b'a', 0xa1, b'2'][..],
                vec![(&b"a"[..], &b"2"[..])],
            ),
        ] {
            let fields = field_ranges(bytes, 1).unwrap();
            let pairs: Vec<(&[u8], &[u8])> = fields
                .iter()
                .map(|f| (&bytes[f.name.clone()], &bytes[f.value.clone()]))
                .collect();
            assert_eq!(pairs, expected);
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
