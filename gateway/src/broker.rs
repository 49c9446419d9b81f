//! The gateway's broker side: connecting and declaring, consuming this
//! instance's event queue, and building it all again when the connection is
//! lost. (Jobs and events the gateway commits are published by
//! `sluice_outbox::Publisher`, cancel requests by
//! `sluice_broker::ControlPublisher`; both follow [`AppState::amqp`].)

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::Connection;
use sluice_broker::{self as amqp, Topology};
use sluice_proto::EventHead;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::config::Config;
use crate::handle::GatewayError;
use crate::registry::{Delivery, Registry};
use crate::state::AppState;

/// Connects and declares what the gateway publishes to; one attempt.
pub async fn connect(
    config: &Config,
    topology: &Topology,
) -> Result<Arc<Connection>, GatewayError> {
    let conn = Arc::new(amqp::connect(&config.amqp, "sluice-gateway").await?);
    let declared = async {
        let declare = conn.create_channel().await?;
        topology.declare_jobs(&declare).await?;
        topology.declare_events(&declare).await?;
        topology.declare_control(&declare).await?;
        let _ = declare.close(200, "declared".into()).await;
        Ok::<_, lapin::Error>(())
    };
    match declared.await {
        Ok(()) => Ok(conn),
        Err(e) => {
            amqp::close(&conn, "setup failed").await;
            Err(e.into())
        }
    }
}

/// [`connect`], bounded to [`amqp::SETUP_ATTEMPT`]: an operation on a
/// connection the broker closed with a hard error can wait forever.
pub async fn connect_bounded(
    config: &Config,
    topology: &Topology,
) -> Result<Arc<Connection>, GatewayError> {
    tokio::time::timeout(amqp::SETUP_ATTEMPT, connect(config, topology))
        .await
        .map_err(|_| GatewayError::BrokerSetupTimeout(amqp::SETUP_ATTEMPT))?
}

/// Waits between two attempts at building the broker side again: soon at
/// first, then once a second for as long as it takes.
const REBUILD_PAUSES: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

/// Keeps events flowing until the task is dropped: consumes this instance's
/// event queue and, whenever that ends (the connection was lost, the broker
/// restarted, the queue was deleted), closes the connection, connects again,
/// swaps the new connection into [`AppState::amqp`] (the publishers follow
/// it), subscribes again, and bumps [`AppState::broker_reconnects`] so that
/// every session catches up on the events published while nobody listened.
/// The queue is bound before the bump, so an event is either in the queue
/// or already in the store when a session catches up.
pub async fn keep_events_flowing(state: Arc<AppState>, topology: Topology, instance: String) {
    // Every subscription after the first follows a rebuild.
    let mut rebuilt = false;
    loop {
        let conn = state.amqp.connection();
        let subscribed =
            tokio::time::timeout(amqp::SETUP_ATTEMPT, subscribe(&conn, &topology, &instance)).await;
        match subscribed {
            Ok(Ok(consumer)) => {
                if rebuilt {
                    tracing::info!(
                        "broker connection is back; sessions will catch up on missed events"
                    );
                    state.broker_reconnects.send_modify(|n| *n += 1);
                }
                let reason = deliver(consumer, &state.registry).await;
                tracing::warn!(%reason, "event consumer ended; rebuilding the broker side");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not consume events"),
            Err(_) => tracing::warn!("consuming events did not start in time"),
        }
        rebuilt = true;
        amqp::close(&conn, "rebuilding").await;
        let mut attempt = 0usize;
        let fresh = loop {
            tokio::time::sleep(REBUILD_PAUSES[attempt.min(REBUILD_PAUSES.len() - 1)]).await;
            match connect_bounded(&state.config, &topology).await {
                Ok(fresh) => break fresh,
                Err(e) => {
                    if attempt.is_multiple_of(10) {
                        tracing::warn!(error = %e, attempt, "broker still unreachable");
                    }
                    attempt += 1;
                }
            }
        };
        state.amqp.replace(fresh);
    }
}

/// Declares this instance's event queue (exclusive, gone with the
/// connection) and binds it to every user's events.
async fn subscribe(
    conn: &Connection,
    topology: &Topology,
    instance: &str,
) -> Result<lapin::Consumer, lapin::Error> {
    let channel = conn.create_channel().await?;
    topology.declare_events(&channel).await?;
    let queue = format!("{}.{instance}", topology.events_exchange);
    let consumer = amqp::listen(&channel, &queue, &topology.events_exchange, "#").await?;
    tracing::info!(%queue, "consuming events");
    Ok(consumer)
}

/// Delivers each event to the registry until the consumer ends; says why
/// it ended.
async fn deliver(mut consumer: lapin::Consumer, registry: &Registry) -> String {
    while let Some(next) = consumer.next().await {
        let message = match next {
            Ok(message) => message,
            Err(e) => return e.to_string(),
        };
        let user = message.routing_key.as_str();
        let published_ms = amqp::published_ms(&message.properties).unwrap_or(0);
        match decode_event(message.data, published_ms) {
            Ok(delivery) => {
                registry.deliver(user, &delivery);
            }
            Err(reason) => tracing::warn!(%reason, "dropping undecodable event message"),
        }
    }
    "the broker ended the consumer".into()
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
