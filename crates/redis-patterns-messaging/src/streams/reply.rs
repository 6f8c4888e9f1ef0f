//! Entries as they come from Redis, before decoding: from `XREADGROUP` and from the claim script.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis_core::redis::{Value, streams::StreamReadReply};

use super::PAYLOAD_FIELD;
use crate::{
    error::{Error, Result},
    value::{bytes, text},
};

/// An entry fetched from Redis, before decoding.
pub(super) struct Fetched {
    pub(super) id: String,
    pub(super) attempt: u64,
    pub(super) payload: Option<Vec<u8>>,
    /// When it was first delivered (see `Delivery::first_delivered`).
    pub(super) first: SystemTime,
    /// The job id of a scheduled entry (field `j`).
    pub(super) job: Option<String>,
}

/// The field of a moved delayed entry that holds its job id.
const JOB_FIELD: &str = "j";

/// The new entries of an `XREADGROUP .. >` reply (first deliveries, read at `now`).
pub(super) fn read_entries(reply: Option<StreamReadReply>, now: SystemTime) -> Vec<Fetched> {
    reply
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .map(|entry| {
            let mut map = entry.map;
            Fetched {
                id: entry.id,
                attempt: 1,
                payload: map.remove(PAYLOAD_FIELD).and_then(bytes),
                first: now,
                job: map.remove(JOB_FIELD).and_then(text),
            }
        })
        .collect()
}

/// The time in an entry id (`<ms>-<seq>`); the epoch for an id without one.
pub(super) fn id_time(id: &str) -> SystemTime {
    let ms = id.split('-').next().and_then(|ms| ms.parse().ok());
    UNIX_EPOCH + Duration::from_millis(ms.unwrap_or(0))
}

/// A claim pass's reply: the next cursor, the entries claimed, how many were dead-lettered.
pub(super) struct Claimed {
    pub(super) cursor: String,
    pub(super) entries: Vec<Fetched>,
    pub(super) dead: u64,
}

fn unexpected(what: &str) -> Error {
    Error::unexpected_reply(format!("claim script: {what}"))
}

/// Parses the reply of `claim.lua` (see its contract in `scripts/mod.rs`).
pub(super) fn parse_claim(reply: Value) -> Result<Claimed> {
    let Value::Array(parts) = reply else {
        return Err(unexpected("not an array"));
    };
    let mut parts = parts.into_iter();
    let cursor = parts
        .next()
        .and_then(text)
        .ok_or_else(|| unexpected("no cursor"))?;
    let Some(Value::Array(entries)) = parts.next() else {
        return Err(unexpected("no entries"));
    };
    let dead = match parts.next() {
        Some(Value::Int(n)) => u64::try_from(n).unwrap_or(0),
        _ => 0,
    };
    let entries = entries
        .into_iter()
        .map(parse_claimed_entry)
        .collect::<Result<_>>()?;
    Ok(Claimed {
        cursor,
        entries,
        dead,
    })
}

fn parse_claimed_entry(entry: Value) -> Result<Fetched> {
    let Value::Array(fields) = entry else {
        return Err(unexpected("entry is not an array"));
    };
    let mut fields = fields.into_iter();
    let id = fields
        .next()
        .and_then(text)
        .ok_or_else(|| unexpected("entry without id"))?;
    let attempt = match fields.next() {
        Some(Value::Int(n)) => u64::try_from(n).unwrap_or(1),
        _ => 1,
    };
    let mut payload = None;
    let mut job = None;
    if let Some(Value::Array(kv)) = fields.next() {
        let mut map: HashMap<String, Value> = HashMap::new();
        let mut kv = kv.into_iter();
        while let (Some(k), Some(v)) = (kv.next(), kv.next()) {
            if let Some(k) = text(k) {
                map.insert(k, v);
            }
        }
        payload = map.remove(PAYLOAD_FIELD).and_then(bytes);
        job = map.remove(JOB_FIELD).and_then(text);
    }
    Ok(Fetched {
        first: id_time(&id),
        id,
        attempt,
        payload,
        job,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_replies_parse() {
        let reply = Value::Array(vec![
            Value::BulkString(b"0-0".to_vec()),
            Value::Array(vec![Value::Array(vec![
                Value::BulkString(b"1-1".to_vec()),
                Value::Int(3),
                Value::Array(vec![
                    Value::BulkString(b"p".to_vec()),
                    Value::BulkString(b"42".to_vec()),
                ]),
            ])]),
            Value::Int(2),
            Value::Int(0),
        ]);
        let Claimed {
            cursor,
            entries,
            dead,
        } = parse_claim(reply).unwrap();
        assert_eq!(cursor, "0-0");
        assert_eq!(dead, 2);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].id, "1-1");
        assert_eq!(entries[0].attempt, 3);
        assert_eq!(entries[0].first, UNIX_EPOCH + Duration::from_millis(1));
        assert_eq!(entries[0].payload.as_deref(), Some(&b"42"[..]));
        assert!(parse_claim(Value::Nil).is_err());
    }

    #[test]
    fn a_malformed_claimed_entry_is_an_unexpected_reply() {
        let reply = Value::Array(vec![
            Value::BulkString(b"0-0".to_vec()),
            Value::Array(vec![Value::Int(1)]),
        ]);
        assert!(matches!(
            parse_claim(reply),
            Err(Error::Core(redis_core::Error::UnexpectedReply(_)))
        ));
    }

    #[test]
    fn read_replies_become_first_deliveries() {
        use redis_core::redis::streams::{StreamId, StreamKey};

        let now = SystemTime::now();
        assert!(read_entries(None, now).is_empty());
        let entry = |id: &str, fields: &[(&str, &[u8])]| StreamId {
            id: id.into(),
            map: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.to_vec())))
                .collect(),
            ..StreamId::default()
        };
        let reply = StreamReadReply {
            keys: vec![StreamKey {
                key: "s".into(),
                ids: vec![
                    entry("1-0", &[("p", b"7")]),
                    entry("2-0", &[("other", b"x"), ("j", b"job-1")]),
                ],
            }],
        };
        let entries = read_entries(Some(reply), now);
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].id.as_str(), entries[0].attempt), ("1-0", 1));
        assert_eq!(entries[0].payload.as_deref(), Some(&b"7"[..]));
        // No payload field: handed on as `None`, to be dead-lettered as undecodable.
        assert_eq!(entries[1].payload, None);
        assert_eq!(entries[1].job.as_deref(), Some("job-1"));
        assert_eq!(entries[0].first, now);
    }

    #[test]
    fn an_id_carries_its_time() {
        assert_eq!(
            id_time("1700000000123-4"),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
        assert_eq!(id_time("junk"), UNIX_EPOCH);
    }
}
