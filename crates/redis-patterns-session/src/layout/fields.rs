//! The fields of a stored value: a MessagePack map of names to values, as `cmsgpack` writes it
//! (the whole value is described in [`super`]). Read as ranges of the stored bytes, so that a
//! value is decoded from where it lies.

use std::ops::Range;

use super::ValueWriter;
use crate::error::Error;

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
        let field = field?.range;
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

/// One field as [`Fields`] reads it: its name, checked to be UTF-8, and where it lies.
#[derive(Debug)]
pub(crate) struct Field<'a> {
    #[cfg_attr(not(feature = "tower-sessions"), allow(dead_code))]
    pub(crate) name: &'a str,
    pub(crate) range: FieldRange,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, Error>;

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

impl<'a> Fields<'a> {
    /// The fields not read yet.
    pub(crate) fn left(&self) -> usize {
        self.left
    }

    fn field(&mut self) -> Result<Field<'a>, Error> {
        let name = self.reader.str().ok_or_else(corrupt_fields)?;
        let value = self.reader.str().ok_or_else(corrupt_fields)?;
        let bytes: &'a [u8] = self.reader.bytes;
        let text = std::str::from_utf8(&bytes[name.clone()])
            .map_err(|_| Error::unexpected_reply("non-UTF-8 field name"))?;
        Ok(Field {
            name: text,
            range: FieldRange { name, value },
        })
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

#[cfg(test)]
mod tests {
    use super::*;

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
                    f.map(|f| {
                        assert_eq!(f.name.as_bytes(), &bytes[f.range.name.clone()]);
                        (bytes[f.range.name].to_vec(), bytes[f.range.value].to_vec())
                    })
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
}
