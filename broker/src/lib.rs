//! RabbitMQ as Sluice uses it: the connection settings, the name and shape
//! of every exchange and queue, connecting, publishing with a confirm, the
//! queues each process listens on, and the control messages runners hear.
//!
//! What travels in the messages is defined in `sluice-proto`; what must be
//! published after a database commit is the `sluice-outbox` crate's job.

pub mod config;
pub mod connect;
pub mod control;
pub mod headers;
pub mod link;
pub mod listen;
pub mod publish;
pub mod tls;
pub mod topology;

pub use config::AmqpConfig;
pub use connect::{CLOSE_PATIENCE, SETUP_ATTEMPT, close, connect};
pub use control::ControlPublisher;
pub use headers::{
    ATTEMPTS_HEADER, DEFERRALS_HEADER, LAST_ERROR_HEADER, PUBLISHED_MS_HEADER, RETRIES_HEADER,
    header_count, header_int, header_str, last_death, published_ms,
};
pub use link::Link;
pub use listen::listen;
pub use publish::{
    ConfirmChannel, Durability, Extras, PublishError, confirm_channel, publish_confirmed,
    publish_confirmed_with,
};
pub use topology::{DELIVERY_LIMIT, Topology};
