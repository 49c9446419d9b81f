//! A load-test session: connect, authenticate, then send and read frames.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use sluice_proto::{OutgoingFrame, Resume, ServerFrame};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Where and as whom sessions connect.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub(crate) struct Target {
    /// WebSocket URL of the gateway (or of nginx in front of it).
    #[arg(long, default_value = "ws://127.0.0.1:8080/v1/ws")]
    pub(crate) url: String,
    /// HS256 secret to mint tokens with (the gateway's `auth.jwt_secret`).
    #[arg(
        long,
        env = "SLUICE_AUTH__JWT_SECRET",
        default_value = "sluice-development-secret-change-me"
    )]
    #[serde(skip)]
    pub(crate) secret: String,
}

/// One connected, authenticated session.
pub(crate) struct Session {
    ws: WebSocketStream<TcpStream>,
}

/// Small buffers: a load generator holds many idle sessions.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

impl Target {
    /// A token for `user`, valid for a day.
    pub(crate) fn token(&self, user: &str) -> anyhow::Result<String> {
        Ok(sluice_proto::mint(
            self.secret.as_bytes(),
            user,
            86_400,
            None,
        )?)
    }

    /// Connects and completes `hello` as `user`.
    pub(crate) async fn connect(&self, user: &str) -> anyhow::Result<Session> {
        self.connect_from(user, None).await
    }

    /// Connects from `source` (a local address to bind before connecting,
    /// so that each source address has its own ephemeral port range) and
    /// completes `hello` as `user`.
    pub(crate) async fn connect_from(
        &self,
        user: &str,
        source: Option<IpAddr>,
    ) -> anyhow::Result<Session> {
        Ok(self.hello_as(user, source, None).await?.0)
    }

    /// Connects and sends `hello` as `user`, resuming after `resume` when
    /// given; returns the session and its `welcome`.
    pub(crate) async fn hello_as(
        &self,
        user: &str,
        source: Option<IpAddr>,
        resume: Option<u64>,
    ) -> anyhow::Result<(Session, ServerFrame)> {
        let ws = tokio::time::timeout(Duration::from_secs(10), self.open(source))
            .await
            .context("connect timed out")??;
        let mut session = Session { ws };
        let hello = OutgoingFrame::Hello {
            token: Some(self.token(user)?),
            resume: resume.map(|after| Resume {
                session: Some("loadtest".into()),
                after,
            }),
        };
        session.send(&hello).await?;
        match session.next(Duration::from_secs(10)).await? {
            welcome @ ServerFrame::Welcome { .. } => Ok((session, welcome)),
            other => bail!("expected welcome, got {other:?}"),
        }
    }
}

impl Target {
    async fn open(&self, source: Option<IpAddr>) -> anyhow::Result<WebSocketStream<TcpStream>> {
        let rest = self
            .url
            .strip_prefix("ws://")
            .context("only ws:// URLs are supported")?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let addr = tokio::net::lookup_host(authority)
            .await
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to nothing"))?;
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        if let Some(ip) = source {
            socket
                .bind(&SocketAddr::new(ip, 0).into())
                .with_context(|| format!("binding source address {ip}"))?;
        }
        let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
        let stream = socket.connect(addr).await?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            self.url.as_str(),
            stream,
            Some(ws_config()),
        )
        .await?;
        Ok(ws)
    }
}

impl Session {
    /// Sends one JSON frame.
    pub(crate) async fn send(&mut self, frame: &OutgoingFrame) -> anyhow::Result<()> {
        self.send_text(frame.encode()).await
    }

    /// Sends one text frame as it is.
    pub(crate) async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next server frame, or `None` if nothing came within `patience`.
    pub(crate) async fn try_next(
        &mut self,
        patience: Duration,
    ) -> anyhow::Result<Option<ServerFrame>> {
        match tokio::time::timeout(patience, self.next(Duration::from_secs(3600))).await {
            Ok(frame) => frame.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The next server frame within `patience`.
    pub(crate) async fn next(&mut self, patience: Duration) -> anyhow::Result<ServerFrame> {
        loop {
            let message = tokio::time::timeout(patience, self.ws.next())
                .await
                .context("no frame in time")?
                .context("connection closed")??;
            match message {
                Message::Text(text) => return Ok(ServerFrame::decode(&text)?),
                Message::Close(frame) => bail!("closed by server: {frame:?}"),
                _ => continue,
            }
        }
    }
}
