//! What a subscription yields: messages, gaps and undecodable payloads; and the raw form the
//! background task passes on before decoding.

use std::{fmt, time::Duration};

use redis_core::redis::{PushKind, Value};

use crate::value::{bytes, text};

/// What a [`Subscription`](crate::Subscription) yields.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<T> {
    /// A message that decoded into `T`.
    Message(Message<T>),
    /// Messages were not received. Either ([`GapKind::Reconnect`]) the connection was lost and
    /// has been re-established, with every channel and pattern subscribed again: messages
    /// published in between were not received (on a cluster, also when one node connection is
    /// lost or the server drops a sharded subscription because its slot moved: the whole
    /// subscription is connected again, so it follows a promoted replica or the slot's new
    /// owner). Or ([`GapKind::Overflow`]) the
    /// reader fell more than [`max_backlog`](crate::SubscriberBuilder::max_backlog) events behind and
    /// [`Gap::dropped`] messages received after the ones before this event were dropped.
    Gap(Gap),
    /// A message whose payload is not a valid encoding of `T` (another producer, an old schema).
    Undecodable(Undecodable),
}

/// A received message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Message<T> {
    /// The channel it was published on.
    pub channel: String,
    /// The pattern that matched, for pattern subscriptions.
    pub pattern: Option<String>,
    /// Whether it came through a sharded subscription (`SPUBLISH`).
    pub sharded: bool,
    /// The decoded payload.
    pub payload: T,
}

/// What caused a [`Gap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GapKind {
    /// The connection was lost and re-established; how many messages were missed is unknown.
    Reconnect,
    /// The reader fell behind by [`max_backlog`](crate::SubscriberBuilder::max_backlog) events and the
    /// subscription dropped [`Gap::dropped`] messages.
    Overflow,
}

/// A window in which messages may have been missed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gap {
    /// What happened: a reconnect or a full backlog.
    pub kind: GapKind,
    /// Why, in words (server closed the connection, health check failed, backlog full, ...).
    pub reason: String,
    /// For a reconnect: from losing the old connection to being subscribed again on the new one.
    /// For an overflow: from the first dropped message to this event.
    pub duration: Duration,
    /// Connection attempts it took (1 when the first one worked; 0 for an overflow).
    pub attempts: u32,
    /// Messages known to be dropped (an overflow); 0 for a reconnect, where the server does not
    /// say how many were published meanwhile.
    pub dropped: u64,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            GapKind::Overflow => write!(
                f,
                "{} message(s) dropped over {:?} ({})",
                self.dropped, self.duration, self.reason
            ),
            _ => write!(
                f,
                "disconnected for {:?} ({}), resubscribed after {} attempt(s)",
                self.duration, self.reason, self.attempts
            ),
        }
    }
}

/// A message whose payload did not decode.
#[derive(Debug)]
#[non_exhaustive]
pub struct Undecodable {
    /// The channel it was published on.
    pub channel: String,
    /// The raw payload.
    pub payload: Vec<u8>,
    /// The codec's error.
    pub error: redis_core::Error,
}

/// A message as the background task passes it on: not decoded yet, or a gap.
pub(super) enum Raw {
    Message {
        channel: String,
        pattern: Option<String>,
        sharded: bool,
        payload: Vec<u8>,
    },
    Gap(Gap),
}

/// The message in a push (`message`, `pmessage`, `smessage`); `None` for any other push or a
/// truncated one.
pub(super) fn to_raw(kind: &PushKind, data: Vec<Value>) -> Option<Raw> {
    let mut data = data.into_iter();
    let (pattern, sharded) = match kind {
        PushKind::Message => (None, false),
        PushKind::SMessage => (None, true),
        PushKind::PMessage => (Some(text(data.next()?)?), false),
        _ => return None,
    };
    let channel = text(data.next()?)?;
    let payload = bytes(data.next()?)?;
    Some(Raw::Message {
        channel,
        pattern,
        sharded,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_become_messages() {
        let raw = to_raw(
            &PushKind::PMessage,
            vec![
                Value::BulkString(b"a.*".to_vec()),
                Value::BulkString(b"a.b".to_vec()),
                Value::BulkString(b"1".to_vec()),
            ],
        );
        match raw {
            Some(Raw::Message {
                channel,
                pattern,
                sharded,
                payload,
            }) => {
                assert_eq!(channel, "a.b");
                assert_eq!(pattern.as_deref(), Some("a.*"));
                assert!(!sharded);
                assert_eq!(payload, b"1");
            }
            _ => panic!("not a message"),
        }
        assert!(to_raw(&PushKind::Subscribe, vec![]).is_none());
        // A truncated push is ignored, not a panic.
        assert!(to_raw(&PushKind::Message, vec![Value::Nil]).is_none());
        assert!(matches!(
            to_raw(
                &PushKind::SMessage,
                vec![
                    Value::BulkString(b"c".to_vec()),
                    Value::BulkString(b"2".to_vec())
                ]
            ),
            Some(Raw::Message { sharded: true, .. })
        ));
    }
}
