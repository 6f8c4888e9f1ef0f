//! Serde codecs: how typed values become bytes in Redis and back.
//!
//! [`Json`] is the default everywhere. With the `msgpack` feature, `MsgPack` is a compact binary
//! alternative. Bytes that do not decode (corrupt, truncated, written by another program or an older
//! schema) give [`Error::Decode`], never a panic.
//!
//! ```
//! use redis_core::codec::{Codec, Json};
//!
//! let bytes = Json.encode(&vec![1, 2, 3])?;
//! let back: Vec<u32> = Json.decode(&bytes)?;
//! assert_eq!(back, [1, 2, 3]);
//! assert!(Json.decode::<Vec<u32>>(b"{not json").unwrap_err().is_decode_error());
//! # Ok::<(), redis_core::Error>(())
//! ```

use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};

/// Turns values into bytes and back.
///
/// Object safe: no (its methods are generic); pattern types take the codec as a type parameter
/// defaulting to [`Json`].
pub trait Codec: Send + Sync + Clone + std::fmt::Debug + 'static {
    /// Serializes `value`.
    ///
    /// # Errors
    /// [`Error::Encode`] when the value cannot be represented (for example a map with non-string keys in JSON).
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>>;

    /// Deserializes `bytes`.
    ///
    /// # Errors
    /// [`Error::Decode`] when the bytes are not a valid encoding of `T`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T>;
}

/// JSON through `serde_json`: readable in `redis-cli`, the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

impl Codec for Json {
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(|e| Error::Encode(Box::new(e)))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| Error::Decode(Box::new(e)))
    }
}

/// MessagePack through `rmp-serde`, with struct fields as maps so that adding a field stays
/// compatible with values already in Redis.
#[cfg(feature = "msgpack")]
#[cfg_attr(docsrs, doc(cfg(feature = "msgpack")))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MsgPack;

#[cfg(feature = "msgpack")]
impl Codec for MsgPack {
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>> {
        rmp_serde::to_vec_named(value).map_err(|e| Error::Encode(Box::new(e)))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        rmp_serde::from_slice(bytes).map_err(|e| Error::Decode(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Product {
        id: u64,
        name: String,
        tags: Vec<String>,
    }

    fn round_trip<C: Codec>(codec: C) {
        let p = Product {
            id: 7,
            name: "lamp".into(),
            tags: vec!["home".into()],
        };
        let bytes = codec.encode(&p).unwrap();
        assert_eq!(codec.decode::<Product>(&bytes).unwrap(), p);
        // Truncated and garbage payloads are decode errors.
        assert!(
            codec
                .decode::<Product>(&bytes[..bytes.len() / 2])
                .unwrap_err()
                .is_decode_error()
        );
        assert!(
            codec
                .decode::<Product>(&[0xc1, 0xff, 0x00])
                .unwrap_err()
                .is_decode_error()
        );
    }

    #[test]
    fn json_round_trips_and_rejects_garbage() {
        round_trip(Json);
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn msgpack_round_trips_and_rejects_garbage() {
        round_trip(MsgPack);
    }
}
