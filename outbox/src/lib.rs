//! The one path from a database commit to the broker. Whatever the store
//! commits for the broker (events today) is published right after the
//! commit by [`Publisher`], and marked published once the broker confirmed
//! it; the [`relay`] publishes whatever a crash or an outage left behind,
//! through the same publisher, and the [`messages`] relay sends the
//! messages backends publish as soon as they commit. Sessions drop the rare duplicate by `seq`.

pub mod messages;
pub mod publisher;
pub mod relay;

pub use publisher::Publisher;
