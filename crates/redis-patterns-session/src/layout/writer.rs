//! Writing a stored value in one buffer: the header, then the map of fields, each value encoded
//! straight into place (no buffer per value, no second copy of the map behind the header).

use super::{HEAD, push_header};

/// Builds a stored value (or, from [`ValueWriter::fields`], a bare map of fields).
#[derive(Debug)]
pub(crate) struct ValueWriter {
    out: Vec<u8>,
}

impl ValueWriter {
    /// A value marked `mark`: the header for `created`, `seen` and `owner`, then a map of `fields`
    /// entries, written with [`field`](Self::field). `capacity`: the bytes expected after the
    /// header.
    #[cfg_attr(not(feature = "tower-sessions"), allow(dead_code))]
    pub(crate) fn value(
        mark: &[u8; 2],
        created: u64,
        seen: u64,
        owner: &str,
        fields: usize,
        capacity: usize,
    ) -> Self {
        let mut out = Vec::with_capacity(HEAD + owner.len() + capacity + 5);
        push_header(&mut out, mark, created, seen, owner);
        push_map_len(&mut out, fields);
        Self { out }
    }

    /// A map of `fields` entries alone (what the scripts take). `capacity`: the bytes expected.
    pub(crate) fn fields(fields: usize, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity + 5);
        push_map_len(&mut out, fields);
        Self { out }
    }

    /// Adds a field whose value `write` appends to the buffer it is given.
    ///
    /// # Errors
    /// What `write` returns; the writer is then dropped by the caller.
    #[cfg_attr(not(feature = "tower-sessions"), allow(dead_code))]
    pub(crate) fn field<E>(
        &mut self,
        name: &[u8],
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        push_str(&mut self.out, name);
        // A one-byte header, right for values under 32 bytes; longer ones get theirs after.
        let at = self.out.len();
        self.out.push(0xa0);
        write(&mut self.out)?;
        let n = self.out.len() - at - 1;
        if n < 32 {
            self.out[at] = 0xa0 | n as u8;
        } else {
            let (header, len) = str_header(n);
            self.out.splice(at..=at, header[..len].iter().copied());
        }
        Ok(())
    }

    /// Adds a field whose value is `value`.
    pub(crate) fn field_bytes(&mut self, name: &[u8], value: &[u8]) {
        push_str(&mut self.out, name);
        push_str(&mut self.out, value);
    }

    /// The bytes written.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// A MessagePack map header for `n` entries.
fn push_map_len(out: &mut Vec<u8>, n: usize) {
    match u32::try_from(n) {
        Ok(n) if n < 16 => out.push(0x80 | n as u8),
        Ok(n) if n <= u32::from(u16::MAX) => {
            out.push(0xde);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdf);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
}

/// A MessagePack string: its header, then `bytes`.
fn push_str(out: &mut Vec<u8>, bytes: &[u8]) {
    push_str_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A MessagePack string header for `n` bytes, in its shortest form.
fn push_str_len(out: &mut Vec<u8>, n: usize) {
    let (header, len) = str_header(n);
    out.extend_from_slice(&header[..len]);
}

/// The shortest MessagePack string header for `n` bytes: its bytes and how many are used.
fn str_header(n: usize) -> ([u8; 5], usize) {
    if n < 32 {
        ([0xa0 | n as u8, 0, 0, 0, 0], 1)
    } else if n <= 0xff {
        ([0xd9, n as u8, 0, 0, 0], 2)
    } else if n <= 0xffff {
        let [a, b] = (n as u16).to_be_bytes();
        ([0xda, a, b, 0, 0], 3)
    } else {
        let [a, b, c, d] = (n as u32).to_be_bytes();
        ([0xdb, a, b, c, d], 5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{SESSION, encode, encode_fields, field_ranges, parse};

    /// Values written in place, short and long, are what the two-step encoding gives.
    #[test]
    fn fields_written_in_place_match_the_encoded_map() {
        let long = vec![b'x'; 300];
        let huge = vec![b'y'; 70_000];
        let pairs: [(&[u8], &[u8]); 4] = [
            (b"a", b"1"),
            (b"b", &long),
            (b"c", &huge),
            (b"d", &[7u8; 31]),
        ];
        let mut writer = ValueWriter::value(SESSION, 5, 6, "ann", pairs.len(), 0);
        let mut bare = ValueWriter::fields(pairs.len(), 0);
        for (name, value) in pairs {
            writer
                .field(name, |out| {
                    out.extend_from_slice(value);
                    Ok::<(), ()>(())
                })
                .unwrap();
            bare.field_bytes(name, value);
        }
        let map = encode_fields(pairs.into_iter());
        assert_eq!(bare.finish(), map);
        let value = writer.finish();
        assert_eq!(value, encode(SESSION, 5, 6, "ann", &map));
        let stored = parse(&value, SESSION).unwrap();
        let ranges = field_ranges(stored.fields, 0).unwrap();
        let read: Vec<_> = ranges
            .iter()
            .map(|f| {
                (
                    &stored.fields[f.name.clone()],
                    &stored.fields[f.value.clone()],
                )
            })
            .collect();
        assert_eq!(read, pairs);
    }

    /// A value that fails to encode stops the write with its error.
    #[test]
    fn a_failing_value_returns_its_error() {
        let mut writer = ValueWriter::fields(1, 0);
        assert_eq!(writer.field(b"a", |_| Err("bad")), Err("bad"));
    }
}
