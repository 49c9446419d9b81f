//! The opening of a session: `hello` within the timeout, token check,
//! `welcome`, and on resume the replay of every stored event the client
//! missed.

use std::time::Duration;

use futures_util::{Sink, Stream, StreamExt};
use sluice_proto::{ClientFrame, Resume, ServerFrame};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use sluice_proto::CloseCode;

use super::{End, EventReader, HeaderAuth, Session, SessionEnv, read_error};
use crate::auth::{AuthError, Claims};
use crate::session::sequencer::Sequencer;

/// Events read from the log per query while replaying.
const REPLAY_PAGE: i64 = 1000;

impl<S, E> Session<S, E>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
    E: SessionEnv,
{
    /// Waits for `hello` and authenticates it (its token, else the upgrade's
    /// `Authorization` header). Anything else first closes with 1008.
    pub(super) async fn hello(
        &mut self,
        header_auth: HeaderAuth,
    ) -> Result<(Claims, Option<Resume>), End> {
        let limit = Duration::from_millis(self.state.gateway().hello_timeout_ms);
        let deadline = Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| End::close(CloseCode::Policy, "no hello in time"))?;
            let text = match next {
                None => return Err(End::Gone),
                Some(Err(e)) => return Err(read_error(e)),
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Binary(_))) => {
                    return Err(End::close(
                        CloseCode::Unsupported,
                        "binary frames are not accepted",
                    ));
                }
                Some(Ok(Message::Close(_))) => return Err(End::ClientClosed),
                Some(Ok(_)) => continue, // control frames before hello
            };
            let hello = match ClientFrame::decode(&text) {
                Ok(ClientFrame::Hello(hello)) => hello,
                _ => return Err(End::close(CloseCode::Policy, "first frame must be hello")),
            };
            let claims = match (hello.token, header_auth) {
                (Some(token), _) => self.state.verifier().verify(&token),
                (None, Some(from_header)) => from_header,
                (None, None) => Err(AuthError::Missing),
            }
            .map_err(|e| End::close(CloseCode::Policy, e.to_string()))?;
            if let Some(pre_hello) = self.pre_hello.take() {
                pre_hello.accepted();
            }
            return Ok((claims, hello.resume));
        }
    }

    /// Sends `welcome` (and the replay, on resume) and returns the
    /// sequencer positioned after the newest stored event.
    pub(super) async fn welcome(&mut self, resume: Option<Resume>) -> Result<Sequencer, End> {
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "database unavailable at hello");
            End::close(
                CloseCode::TryAgainLater,
                "database unavailable, try again later",
            )
        };
        let user = self.user.clone();
        // Each read takes a pooled connection and gives it back before
        // anything is written to the client: a slow client must not hold
        // one of the few connections every hello and HTTP request needs.
        let (last_seq, replay_after) = {
            let client = self.state.reader().await.map_err(|e| unavailable(&e))?;
            let last_seq = client.last_seq(&user).await.map_err(|e| unavailable(&e))?;
            let replay_after = match resume {
                None => None,
                Some(Resume { after, .. }) if after == last_seq => Some(after),
                Some(Resume { after, .. }) if after > last_seq => None,
                Some(Resume { after, .. }) => {
                    let oldest = client
                        .oldest_seq(&user)
                        .await
                        .map_err(|e| unavailable(&e))?;
                    oldest.filter(|oldest| *oldest <= after + 1).map(|_| after)
                }
            };
            (last_seq, replay_after)
        };
        self.send_frame(&ServerFrame::Welcome {
            session: self.id.to_string(),
            user: user.to_string(),
            heartbeat_ms: self.state.gateway().heartbeat_ms,
            resumed: replay_after.is_some(),
            last_seq,
        })
        .await?;
        if let Some(mut cursor) = replay_after {
            while cursor < last_seq {
                let page = {
                    let client = self.state.reader().await.map_err(|e| unavailable(&e))?;
                    client
                        .read_range(&user, cursor, last_seq, REPLAY_PAGE)
                        .await
                        .map_err(|e| unavailable(&e))?
                };
                let Some(&(newest, _)) = page.last() else {
                    break;
                };
                for (_, frame) in page {
                    self.send(Message::Text(Utf8Bytes::from(frame))).await?;
                }
                cursor = newest;
            }
        }
        Ok(Sequencer::new(last_seq))
    }
}
