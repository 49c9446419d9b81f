//! A WebSocket client speaking the Sluice protocol, for tests.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sluice_proto::{EventStatus, OutgoingFrame, Resume, ServerFrame};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// How long a test waits for any one expected frame.
pub const FRAME_PATIENCE: Duration = Duration::from_secs(30);

/// One client connection.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Events of other jobs that [`Client::submit`] read while waiting for
    /// its `accepted`; handed out first by the next reads.
    held: std::collections::VecDeque<ServerFrame>,
}

/// What the server did instead of sending the expected frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A decoded server frame.
    Frame(ServerFrame),
    /// The connection closed, with its close code if a close frame came.
    Closed(Option<u16>),
}

impl Client {
    /// Connects with optional extra headers (e.g. `Authorization`, `Origin`).
    pub async fn connect_with(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            let name: tokio_tungstenite::tungstenite::http::HeaderName =
                name.parse().expect("header name");
            request
                .headers_mut()
                .insert(name, HeaderValue::from_str(value).expect("header value"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client {
            ws,
            held: Default::default(),
        })
    }

    /// Connects to a `wss://` URL, trusting only the certificates of
    /// `roots` (a test's own certificate, say).
    pub async fn connect_tls(
        url: &str,
        roots: rustls::RootCertStore,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("rustls protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(
                config,
            ))),
        )
        .await?;
        Ok(Client {
            ws,
            held: Default::default(),
        })
    }

    /// Connects without extra headers.
    pub async fn connect(url: &str) -> Client {
        Self::connect_with(url, &[])
            .await
            .expect("WebSocket connect")
    }

    /// Connects and completes `hello`; returns the client and its `welcome`.
    pub async fn hello(url: &str, token: &str) -> (Client, ServerFrame) {
        Self::hello_with(url, hello(token, None)).await
    }

    /// Connects and sends `hello` with `resume.after`; returns the `welcome`.
    pub async fn connect_and_resume(url: &str, token: &str, after: u64) -> (Client, ServerFrame) {
        Self::hello_with(url, hello(token, Some(after))).await
    }

    /// Connects, sends `hello`, and expects a `welcome` back.
    async fn hello_with(url: &str, hello: OutgoingFrame) -> (Client, ServerFrame) {
        let mut client = Self::connect(url).await;
        client.send_frame(&hello).await;
        let welcome = client.next_frame().await;
        assert!(
            matches!(welcome, ServerFrame::Welcome { .. }),
            "expected welcome, got {welcome:?}"
        );
        (client, welcome)
    }

    /// Sends a frame built from the protocol's own types.
    pub async fn send_frame(&mut self, frame: &OutgoingFrame) {
        self.send_text(frame.encode()).await;
    }

    /// Sends `cancel` for `job_id`.
    pub async fn cancel(&mut self, job_id: Uuid) {
        self.send_frame(&OutgoingFrame::Cancel {
            job_id: job_id.to_string(),
        })
        .await;
    }

    /// Sends a JSON value as a text frame (for frames the protocol's types
    /// cannot express: unknown kinds, malformed or hostile input).
    pub async fn send(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: String) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// Sends a raw message (binary, etc.).
    pub async fn send_message(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next frame or close, within `patience`.
    pub async fn receive(&mut self, patience: Duration) -> Received {
        if let Some(frame) = self.held.pop_front() {
            return Received::Frame(frame);
        }
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no frame within {patience:?}"));
            match next {
                None => return Received::Closed(None),
                Some(Err(_)) => return Received::Closed(None),
                Some(Ok(Message::Text(text))) => {
                    let frame = ServerFrame::decode(&text)
                        .unwrap_or_else(|e| panic!("server sent an undecodable frame {text}: {e}"));
                    return Received::Frame(frame);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Received::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next frame or close, or `None` if nothing came within `patience`.
    pub async fn try_receive(&mut self, patience: Duration) -> Option<Received> {
        if let Some(frame) = self.held.pop_front() {
            return Some(Received::Frame(frame));
        }
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            return Some(match next {
                None | Some(Err(_)) => Received::Closed(None),
                Some(Ok(Message::Text(text))) => Received::Frame(
                    ServerFrame::decode(&text)
                        .unwrap_or_else(|e| panic!("undecodable frame {text}: {e}")),
                ),
                Some(Ok(Message::Close(frame))) => {
                    Received::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
            });
        }
    }

    /// The next frame; panics on close or timeout.
    pub async fn next_frame(&mut self) -> ServerFrame {
        match self.receive(FRAME_PATIENCE).await {
            Received::Frame(frame) => frame,
            Received::Closed(code) => {
                panic!("connection closed ({code:?}) while waiting for a frame")
            }
        }
    }

    /// Waits for the close and returns its code; panics if a frame comes first.
    pub async fn expect_close(&mut self) -> Option<u16> {
        match self.receive(FRAME_PATIENCE).await {
            Received::Closed(code) => code,
            Received::Frame(frame) => panic!("expected a close, got {frame:?}"),
        }
    }

    /// Waits for the close and returns its code and reason (`None` and an
    /// empty reason when the connection ended without a close frame);
    /// panics if a frame comes first.
    pub async fn expect_close_with_reason(&mut self) -> (Option<u16>, String) {
        let deadline = tokio::time::Instant::now() + FRAME_PATIENCE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no close within {FRAME_PATIENCE:?}"));
            match next {
                None | Some(Err(_)) => return (None, String::new()),
                Some(Ok(Message::Close(frame))) => {
                    return frame
                        .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                        .unwrap_or((None, String::new()));
                }
                Some(Ok(Message::Text(text))) => panic!("expected a close, got {text}"),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Sends `ping` and waits for its `pong` (skipping other frames);
    /// returns the round trip.
    pub async fn ping(&mut self, id: u64) -> Duration {
        let start = tokio::time::Instant::now();
        self.send_frame(&OutgoingFrame::Ping { id }).await;
        loop {
            if let ServerFrame::Pong { id: got } = self.next_frame().await {
                assert_eq!(got, id, "pong id");
                return start.elapsed();
            }
        }
    }

    /// Submits a job and returns its id once `accepted` arrives. Panics on
    /// an `error` for this ref. Events (of the user's other jobs: this
    /// job's own wait for its `accepted`) and messages that arrive first
    /// are kept for the next reads.
    pub async fn submit(&mut self, reference: &str, kind: &str, args: Value) -> Uuid {
        self.send(
            json!({ "type": "submit", "ref": reference, "job": { "kind": kind, "args": args } }),
        )
        .await;
        // Frames held earlier come out first and go back in, in order.
        let mut early = Vec::new();
        let job_id = loop {
            match self.next_frame().await {
                ServerFrame::Accepted {
                    reference: r,
                    job_id,
                } if r == reference => break job_id,
                ServerFrame::Error {
                    reference: Some(r),
                    code,
                    message,
                    ..
                } if r == reference => {
                    panic!("submit {reference} refused: {code:?} {message}")
                }
                ServerFrame::Pong { .. } => {}
                frame @ (ServerFrame::Event(_) | ServerFrame::Message { .. }) => early.push(frame),
                other => panic!("unexpected frame before accepted: {other:?}"),
            }
        };
        self.held.extend(early);
        job_id
    }

    /// Collects this job's events until its terminal one; other frames are
    /// skipped. Returns the events in arrival order.
    pub async fn events_until_terminal(&mut self, job_id: Uuid) -> Vec<sluice_proto::EventFrame> {
        let mut events = Vec::new();
        loop {
            if let ServerFrame::Event(event) = self.next_frame().await {
                if event.job_id != job_id {
                    continue;
                }
                let terminal = event.status.is_terminal();
                events.push(event);
                if terminal {
                    return events;
                }
            }
        }
    }

    /// The stored (non-progress) statuses of `events`.
    pub fn statuses(events: &[sluice_proto::EventFrame]) -> Vec<EventStatus> {
        events
            .iter()
            .filter(|e| e.status != EventStatus::Progress)
            .map(|e| e.status)
            .collect()
    }
}

/// A `hello` with `token`, resuming after `after` when given.
pub fn hello(token: &str, after: Option<u64>) -> OutgoingFrame {
    OutgoingFrame::Hello {
        token: Some(token.to_owned()),
        resume: after.map(|after| Resume {
            session: Some("s".into()),
            after,
        }),
    }
}
