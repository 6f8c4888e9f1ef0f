//! Typed pub/sub: a [`Publisher`] and a [`Subscriber`] whose [`Subscription`] reconnects by
//! itself, resubscribes everything and reports the outage as an [`Event::Gap`].
//!
//! Pub/sub is fire-and-forget: a message published while a subscriber is disconnected is gone.
//! The subscription cannot bring it back, but it can say that it may have happened, which is what
//! the gap event is for. Use [Streams](crate::Consumer) when every message matters.
//!
//! Inside: the builder connects ([`worker::connect`]) and starts the background [`worker`], which
//! reads the connection's pushes into the bounded [`outbox`]; the [`Subscription`] reads the other
//! end and decodes.

mod event;
mod outbox;
mod publisher;
mod subscriber;
mod subscription;
mod worker;

pub use event::{Event, Gap, GapKind, Message, Undecodable};
pub use publisher::Publisher;
pub use subscriber::{Subscriber, SubscriberBuilder};
pub use subscription::Subscription;
