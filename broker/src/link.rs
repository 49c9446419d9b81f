//! The broker connection a long-lived process publishes on, replaceable.

use std::sync::{Arc, RwLock};

use lapin::Connection;

/// The connection in use, which its owner replaces after losing it.
///
/// Publishers ([`crate::ConfirmChannel`]) hold a link rather than a
/// connection, so they follow a replacement without being rebuilt: the
/// gateway's sessions and HTTP handlers keep their publishers across a
/// broker restart while the gateway builds a new connection and swaps it in
/// here. (lapin's own automatic recovery was seen to stall for good after a
/// RabbitMQ restart, every publish failing with "invalid channel state:
/// Reconnecting", so no process relies on it.)
#[derive(Clone)]
pub struct Link(Arc<RwLock<Current>>);

struct Current {
    /// Bumped by every [`Link::replace`], so a channel can tell which
    /// connection it was opened on.
    generation: u64,
    conn: Arc<Connection>,
}

impl Link {
    /// A link on `conn`.
    pub fn new(conn: Arc<Connection>) -> Self {
        Self(Arc::new(RwLock::new(Current {
            generation: 0,
            conn,
        })))
    }

    /// The connection in use and its generation.
    pub fn current(&self) -> (u64, Arc<Connection>) {
        let current = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (current.generation, current.conn.clone())
    }

    /// The connection in use.
    pub fn connection(&self) -> Arc<Connection> {
        self.current().1
    }

    /// Whether the connection in use is open (publishing can be expected to
    /// work).
    pub fn connected(&self) -> bool {
        self.connection().status().connected()
    }

    /// Puts `conn` in use and returns the one it replaces, for the caller
    /// to close.
    pub fn replace(&self, conn: Arc<Connection>) -> Arc<Connection> {
        let mut current = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        current.generation += 1;
        std::mem::replace(&mut current.conn, conn)
    }
}

impl From<Arc<Connection>> for Link {
    fn from(conn: Arc<Connection>) -> Self {
        Self::new(conn)
    }
}
