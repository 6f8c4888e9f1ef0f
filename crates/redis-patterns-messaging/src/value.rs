//! Reading the bulk strings out of replies and pushes.

use redis_core::redis::Value;

/// The bytes of a bulk or simple string; `None` for anything else.
pub(crate) fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

/// A bulk or simple string as text (invalid UTF-8 replaced); `None` for anything else.
pub(crate) fn text(value: Value) -> Option<String> {
    bytes(value).map(|b| String::from_utf8_lossy(&b).into_owned())
}
