//! A load-test session: connect, authenticate, then send and read frames.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use sluice_proto::ServerFrame;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Where and as whom sessions connect.
#[derive(Debug, Clone, clap::Args)]
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
    pub(crate) secret: String,
}

/// One connected, authenticated session.
pub(crate) struct Session {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Target {
    /// A token for `user`, valid for a day.
    pub(crate) fn token(&self, user: &str) -> anyhow::Result<String> {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            + 86_400;
        Ok(jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({ "sub": user, "exp": exp }),
            &jsonwebtoken::EncodingKey::from_secret(self.secret.as_bytes()),
        )?)
    }

    /// Connects and completes `hello` as `user`.
    pub(crate) async fn connect(&self, user: &str) -> anyhow::Result<Session> {
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(self.url.as_str()),
        )
        .await
        .context("connect timed out")??;
        let mut session = Session { ws };
        session
            .send(&serde_json::json!({ "type": "hello", "token": self.token(user)? }))
            .await?;
        match session.next(Duration::from_secs(10)).await? {
            ServerFrame::Welcome { .. } => Ok(session),
            other => bail!("expected welcome, got {other:?}"),
        }
    }
}

impl Session {
    /// Sends one JSON frame.
    pub(crate) async fn send(&mut self, frame: &serde_json::Value) -> anyhow::Result<()> {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await?;
        Ok(())
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
