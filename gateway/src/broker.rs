//! Consuming this instance's event queue. (Jobs and events the gateway
//! commits are published by `sluice_outbox::Publisher`, cancel requests by
//! `sluice_broker::ControlPublisher`.)

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::Connection;
use sluice_broker::{self as amqp, Topology};
use sluice_proto::EventHead;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::registry::{Delivery, Registry};

/// Declares this instance's event queue (exclusive, gone with the
/// connection), binds it to every user's events, and delivers each event to
/// the registry until the consumer ends.
pub async fn consume_events(
    conn: &Connection,
    topology: &Topology,
    instance: &str,
    registry: Arc<Registry>,
) -> Result<(), lapin::Error> {
    let channel = conn.create_channel().await?;
    topology.declare_events(&channel).await?;
    let queue = format!("{}.{instance}", topology.events_exchange);
    let mut consumer = amqp::listen(&channel, &queue, &topology.events_exchange, "#").await?;
    tracing::info!(%queue, "consuming events");
    while let Some(next) = consumer.next().await {
        let message = next?;
        let user = message.routing_key.as_str();
        let published_ms = amqp::published_ms(&message.properties).unwrap_or(0);
        match decode_event(message.data, published_ms) {
            Ok(delivery) => {
                registry.deliver(user, &delivery);
            }
            Err(reason) => tracing::warn!(%reason, "dropping undecodable event message"),
        }
    }
    Ok(())
}

/// Turns an event message body into a delivery without re-encoding it.
pub fn decode_event(body: Vec<u8>, published_ms: u64) -> Result<Delivery, String> {
    let head = EventHead::decode(&body).map_err(|e| e.to_string())?;
    let frame = Utf8Bytes::try_from(Bytes::from(body)).map_err(|e| e.to_string())?;
    Ok(Delivery {
        head,
        frame,
        published_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_bodies_decode_or_are_refused() {
        let ok = br#"{"type":"event","seq":3,"job_id":"00000000-0000-0000-0000-000000000001","status":"running"}"#;
        let d = decode_event(ok.to_vec(), 7).unwrap();
        assert_eq!(d.published_ms, 7);
        assert_eq!(d.head.seq, 3);
        assert_eq!(d.frame.as_str().as_bytes(), ok);
        assert!(decode_event(b"garbage".to_vec(), 0).is_err());
        assert!(decode_event(vec![0xff, 0xfe], 0).is_err());
    }
}
