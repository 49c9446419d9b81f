//! Connecting to RabbitMQ, over TLS for `amqps://` nodes.

use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use lapin::tcp::{AMQPUriTcpExt, OwnedTLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties};

use crate::config::AmqpConfig;

/// Longest one attempt at connecting and declaring may take before it is
/// abandoned and retried (a healthy one takes milliseconds).
pub const SETUP_ATTEMPT: Duration = Duration::from_secs(5);

/// The nodes `url` names: one AMQP URL, or several separated by commas (a
/// cluster's nodes). Each must parse; the heartbeat default is applied.
pub fn nodes(url: &str) -> Result<Vec<AMQPUri>, String> {
    let nodes = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            let mut uri: AMQPUri = u.parse()?;
            // RabbitMQ proposes 60 s, after which a runner that vanished
            // keeps its deliveries for up to two minutes. With 5 s the broker
            // gives them to another runner about 10 s after the last sign of
            // life. A URL's own `?heartbeat=` wins.
            uri.query.heartbeat.get_or_insert(DEFAULT_HEARTBEAT_SECS);
            Ok(uri)
        })
        .collect::<Result<Vec<_>, String>>()?;
    if nodes.is_empty() {
        return Err("no AMQP URL given".into());
    }
    Ok(nodes)
}

/// Whether `node` is reached over TLS (`amqps://`).
pub fn is_tls(node: &AMQPUri) -> bool {
    node.scheme == AMQPScheme::AMQPS
}

/// Counts connects in this process, so that each goes to the next node.
static TURN: AtomicUsize = AtomicUsize::new(0);

/// Connects once. Callers that must wait for a broker still starting wrap
/// this, together with their declarations, in a bounded retry.
///
/// The connection does not recover by itself: when it is lost, its owner
/// connects again and builds what used it anew (see [`crate::Link`]).
///
/// With several nodes in `url`, each call connects to the next node in
/// turn, starting at one picked by the process id so that a fleet spreads
/// over the cluster: a node that died is left for the next
/// one at the first refused connect. User, password, vhost and options are
/// the first URL's; the others contribute host and port.
///
/// An `amqps://` node is reached over TLS as [`crate::tls`] sets it up from
/// `config` (its files are read again at each call, so renewed
/// certificates are picked up); an `amqp://` node in plain TCP as before.
pub async fn connect(config: &AmqpConfig, name: &str) -> Result<Connection, lapin::Error> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let nodes = nodes(&config.url).map_err(|e| invalid(format!("amqp.url: {e}")))?;
    let tls = if nodes.iter().any(is_tls) {
        let connector = crate::tls::connector(config)
            .map_err(|(setting, e)| invalid(format!("{setting}: {e}")))?;
        Some(connector)
    } else {
        None
    };
    // lapin's own retries stay off (its default without recovery): the
    // caller's retry loop paces the attempts and bounds each one.
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let first = nodes[0].clone();
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connector(
        first,
        runtime,
        async move |_, runtime| {
            let turn = std::process::id() as usize + TURN.fetch_add(1, Ordering::Relaxed);
            let node = &nodes[turn % nodes.len()];
            tracing::debug!(host = %node.authority.host, port = node.authority.port, tls = is_tls(node), "connecting to a broker node");
            let stream = match (is_tls(node), &tls) {
                (true, Some(tls)) => {
                    // TCP as for amqp://, then the handshake with Sluice's
                    // own rustls configuration, for the node's host name.
                    let tcp = AMQPUri { scheme: AMQPScheme::AMQP, ..node.clone() };
                    AMQPUriTcpExt::connect_with_config_async(&tcp, OwnedTLSConfig::default().as_ref(), &runtime)
                        .await?
                        .into_rustls(tls, &node.authority.host)
                        .await
                }
                _ => AMQPUriTcpExt::connect_with_config_async(node, OwnedTLSConfig::default().as_ref(), &runtime).await,
            };
            stream.map_err(lapin::Error::from)
        },
        props,
    )
    .await
}

/// The AMQP heartbeat asked for when the URL names none, in seconds.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 5;

/// Longest [`close`] waits for the broker's answer.
pub const CLOSE_PATIENCE: Duration = Duration::from_secs(2);

/// Closes `conn` (reply code 200, `reason`), waiting at most
/// [`CLOSE_PATIENCE`]: lapin's close was seen, now and then, never to
/// return after a channel close that raced it, which held a stopping
/// runner forever. The socket goes with the connection either way.
pub async fn close(conn: &Connection, reason: &str) {
    match tokio::time::timeout(CLOSE_PATIENCE, conn.close(200, reason.into())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "closing the broker connection failed"),
        Err(_) => tracing::warn!("the broker did not answer the connection close in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_nodes_parses_with_the_heartbeat_default_unless_a_url_names_one() {
        let parsed =
            nodes("amqp://u:p@127.0.0.1:25690/%2f, amqp://u:p@127.0.0.1:25692/%2f?heartbeat=30")
                .unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].authority.port, 25690);
        assert_eq!(parsed[0].query.heartbeat, Some(DEFAULT_HEARTBEAT_SECS));
        assert_eq!(parsed[1].query.heartbeat, Some(30));
        assert!(nodes(" , ").is_err());
        assert!(nodes("amqp://ok:ok@127.0.0.1/%2f,http://not-amqp").is_err());
    }
}
