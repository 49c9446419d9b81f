//! Consuming a queue of this process's own.

use lapin::Channel;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

/// Declares a queue of this process's own (exclusive: gone with the
/// connection), binds it to `exchange` with `routing_key`, and consumes it
/// without acknowledgements. Used for what each process must hear but need
/// not keep: a gateway's events, a runner's cancel requests. The name is
/// ours, so lapin may re-declare it after a broker restart.
pub async fn listen(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<lapin::Consumer, lapin::Error> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .basic_consume(
            queue.into(),
            queue.into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}
