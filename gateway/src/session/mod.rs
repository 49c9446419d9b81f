//! One WebSocket session, top to bottom: `hello` and authentication,
//! `welcome` and replay, then one loop that selects on the client's next
//! frame, the session's event mailbox, finished background work (broker
//! confirms, gap reads), the heartbeat, and shutdown.
//!
//! The loop only moves frames. Publishing a job and reading the database
//! happen in spawned tasks whose results come back through `tasks`, so a
//! `ping` is answered at once whatever else this session has running.
//! Generic over the socket and over its environment ([`SessionEnv`]: the
//! event log, the job commands, the shared in-memory parts), so unit tests
//! drive it over an in-memory socket with fakes.

pub mod budget;
mod env;
mod hello;
pub mod sequencer;
#[cfg(test)]
mod tests;

pub use env::{EventLog, EventReader, JobCommands, SessionEnv};

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics as m;
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use sluice_proto::CloseCode;
use sluice_proto::{ClientFrame, ErrorCode, EventHead, ServerFrame, Submit};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WireCloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::{AuthError, Claims};
use crate::jobs::{self, Cancelled, CommandError};
use crate::registry::{Delivery, Mailbox};
use sequencer::{Gap, Sequencer};

/// How long a gap in the seqs may last before it is read from the database.
const GAP_WAIT: Duration = Duration::from_millis(300);

/// Why a session ends.
#[derive(Debug)]
pub(crate) enum End {
    /// Send a close frame with this code and reason.
    Close(CloseCode, Cow<'static, str>),
    /// The client sent a close frame: complete the closing handshake.
    ClientClosed,
    /// The peer is gone (reset, vanished); nothing left to send.
    Gone,
}

impl End {
    fn close(code: CloseCode, reason: impl Into<Cow<'static, str>>) -> Self {
        End::Close(code, reason.into())
    }
}

/// Results of work a session spawned, delivered back to its loop.
enum TaskDone {
    Submitted {
        reference: String,
        job_id: Uuid,
        result: Result<(), CommandError>,
    },
    CancelDone {
        job_id: Uuid,
        result: Result<Cancelled, CommandError>,
    },
    GapRead {
        gap: Gap,
        rows: Result<Vec<(u64, String)>, String>,
    },
    /// Stored events after the last one sent, read after a broker reconnect.
    CatchUp {
        rows: Result<Vec<(u64, String)>, String>,
    },
}

/// The upgrade's outcome as far as authentication goes: the claims from an
/// `Authorization` header, if one was sent.
pub type HeaderAuth = Option<Result<Claims, AuthError>>;

/// A session on an upgraded socket: the future runs it until it ends, then
/// closes it. Built outside the future, so that the task holding it keeps
/// only the session and its span (an idle session's memory is mostly this
/// future).
///
/// `pre_hello`, when given, is the read budget of the socket under `ws`
/// and its unauthenticated slot (see [`budget`]), both released once
/// `hello` is accepted.
pub fn run<S, E>(
    ws: S,
    state: Arc<E>,
    header_auth: HeaderAuth,
    peer: &str,
    pre_hello: Option<budget::PreHello>,
) -> impl Future<Output = ()> + use<S, E>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
    E: SessionEnv,
{
    let mut session = Session {
        ws,
        pre_hello,
        expires_at: Instant::now(),
        state,
        user: Arc::from(""),
        id: Uuid::new_v4(),
        seq: Sequencer::default(),
        bad_frames: 0,
        last_heard: Instant::now(),
        inflight: 0,
        tasks: FuturesUnordered::new(),
        gap_since: None,
        gap_reading: false,
        out: Vec::new(),
    };
    let span =
        tracing::info_span!("session", session = %session.id, %peer, user = tracing::field::Empty);
    async move {
        let end = session.lifecycle(header_auth).await;
        tracing::debug!(?end, "session ended");
        let code = match &end {
            End::Close(code, _) => code.code().to_string(),
            End::ClientClosed => "client".to_owned(),
            End::Gone => "gone".to_owned(),
        };
        metrics::counter!(m::SESSIONS_CLOSED, "code" => code).increment(1);
        session.close(end).await;
    }
    .instrument(span)
}

pub(crate) struct Session<S, E> {
    /// The socket's pre-hello budget and slot, released after `hello`.
    pre_hello: Option<budget::PreHello>,
    /// When the session's token expires (moved on by each `refresh`): the
    /// session is closed with 4001 then.
    expires_at: Instant,
    ws: S,
    state: Arc<E>,
    user: Arc<str>,
    id: Uuid,
    seq: Sequencer,
    /// Bad frames in a row; past `max_bad_frames` the session is closed.
    bad_frames: u32,
    /// When the client last sent anything (frame, Ping or Pong).
    last_heard: Instant,
    /// Submits and cancels under way (awaiting the broker or the database).
    inflight: usize,
    /// Background work under way (publishes, cancels, reads), whose
    /// results the loop takes in whatever order they finish. Allocates
    /// only while something runs.
    tasks: FuturesUnordered<JoinHandle<TaskDone>>,
    /// Since when the first held event has been waiting on a missing seq.
    gap_since: Option<Instant>,
    /// A gap read is under way.
    gap_reading: bool,
    /// Scratch list of deliveries the sequencer released.
    out: Vec<Delivery>,
}

impl<S, E> Session<S, E>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
    E: SessionEnv,
{
    async fn lifecycle(&mut self, header_auth: HeaderAuth) -> End {
        let (claims, resume) = match self.hello(header_auth).await {
            Ok(hello) => hello,
            Err(end) => return end,
        };
        self.user = Arc::from(claims.sub.as_str());
        self.expires_at = expiry(claims.exp, self.state.verifier().leeway_secs());
        tracing::Span::current().record("user", claims.sub.as_str());
        // Register before reading the database, so that no event committed
        // in between is missed: it is either read back or waiting in the inbox.
        let Ok((_registration, inbox)) = self.state.registry().register(self.user.clone()) else {
            return End::close(CloseCode::Policy, "too many sessions for this user");
        };
        // Boxed: the database reads make its future large, and an idle
        // session should not carry that space for its whole life.
        match Box::pin(self.welcome(resume)).await {
            Ok(seq) => self.seq = seq,
            Err(end) => return end,
        }
        metrics::counter!(m::SESSIONS_OPENED).increment(1);
        self.serve(inbox).await
    }

    async fn serve(&mut self, mut inbox: Mailbox) -> End {
        let beat = Duration::from_millis(self.state.gateway().heartbeat_ms);
        let mut heartbeat = tokio::time::interval_at(Instant::now() + beat, beat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.state.shutdown().clone();
        let mut reconnects = self.state.broker_reconnects().subscribe();
        // When draining, the moment this session closes with 1012: a random
        // point in the spread, and not before its own submits are answered.
        let mut drain_at: Option<Instant> = None;
        // Boxed: an idle session should not carry a timer's space inline.
        let mut token_expiry = Box::pin(tokio::time::sleep_until(self.expires_at));
        let mut armed_for = self.expires_at;
        loop {
            if self.expires_at != armed_for {
                token_expiry.as_mut().reset(self.expires_at);
                armed_for = self.expires_at;
            }
            let gap_due = self
                .gap_since
                .filter(|_| !self.gap_reading)
                .map(|t| t + GAP_WAIT);
            let close_due = drain_at.filter(|_| self.inflight == 0);
            let step = tokio::select! {
                _ = shutdown.cancelled(), if drain_at.is_none() => {
                    let spread = self.state.gateway().drain_spread_ms;
                    let delay = Duration::from_millis((rand::random::<f64>() * spread as f64) as u64);
                    drain_at = Some(Instant::now() + delay);
                    Ok(())
                }
                _ = sleep_until(close_due) => Err(End::close(CloseCode::Restarting, "server restarting")),
                _ = &mut token_expiry => Err(End::close(CloseCode::TokenExpired, "token expired")),
                Ok(()) = reconnects.changed() => {
                    self.catch_up();
                    Ok(())
                }
                // Handlers are boxed: their futures are far larger than the
                // loop's own state, and an idle session would carry that
                // space for its whole life; one allocation per frame is cheap.
                frame = self.ws.next() => Box::pin(self.on_frame(frame)).await,
                delivery = inbox.recv() => match delivery {
                    Some(delivery) => {
                        let mut out = std::mem::take(&mut self.out);
                        self.seq.push(delivery, &mut out);
                        self.send_released(out).await
                    }
                    None => Err(End::close(CloseCode::TryAgainLater, "too slow: event queue overflowed")),
                },
                Some(done) = self.tasks.next(), if !self.tasks.is_empty() => match done {
                    Ok(done) => Box::pin(self.on_task(done)).await,
                    Err(e) => {
                        tracing::error!(error = %e, "session task failed");
                        Err(End::close(CloseCode::Internal, "internal error"))
                    }
                },
                _ = heartbeat.tick() => self.on_heartbeat(beat).await,
                _ = sleep_until(gap_due) => {
                    self.read_gap();
                    Ok(())
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) -> Result<(), End> {
        let message = match frame {
            None => return Err(End::Gone),
            Some(Err(e)) => return Err(read_error(e)),
            Some(Ok(message)) => message,
        };
        self.last_heard = Instant::now();
        match message {
            Message::Text(text) => self.on_text(&text).await,
            Message::Binary(_) => Err(End::close(
                CloseCode::Unsupported,
                "binary frames are not accepted",
            )),
            Message::Close(_) => Err(End::ClientClosed),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        self.state.per_frame().frames_in.increment(1);
        let frame = match ClientFrame::decode(text) {
            Ok(frame) => frame,
            Err(e) => {
                if e.reference().is_some() {
                    jobs::count_rejected(e.code().as_str());
                }
                return self
                    .refuse(e.reference().map(str::to_owned), e.code(), e.to_string())
                    .await;
            }
        };
        match frame {
            ClientFrame::Ping { id } => {
                self.bad_frames = 0;
                self.send_frame(&ServerFrame::Pong { id }).await
            }
            ClientFrame::Submit(submit) => {
                self.bad_frames = 0;
                self.submit(submit).await
            }
            ClientFrame::Hello(_) => {
                self.refuse(None, ErrorCode::BadRequest, "already authenticated".into())
                    .await
            }
            ClientFrame::Cancel { job_id } => {
                self.bad_frames = 0;
                self.cancel(&job_id).await
            }
            ClientFrame::Refresh { token } => self.refresh(&token).await,
        }
    }

    /// A fresh token for this session's user moves its expiry on; any
    /// other (bad, expired, another user's) closes with 1008.
    async fn refresh(&mut self, token: &str) -> Result<(), End> {
        let claims = self
            .state
            .verifier()
            .verify(token)
            .map_err(|e| End::close(CloseCode::Policy, e.to_string()))?;
        if claims.sub != *self.user {
            return Err(End::close(
                CloseCode::Policy,
                "refresh token names another user",
            ));
        }
        self.bad_frames = 0;
        self.expires_at = expiry(claims.exp, self.state.verifier().leeway_secs());
        self.send_frame(&ServerFrame::Refreshed { exp: claims.exp })
            .await
    }

    /// Answers a bad frame with an `error`, or closes after too many in a row.
    async fn refuse(
        &mut self,
        reference: Option<String>,
        code: ErrorCode,
        message: String,
    ) -> Result<(), End> {
        self.bad_frames += 1;
        if self.bad_frames > self.state.gateway().max_bad_frames {
            return Err(End::close(CloseCode::Policy, "too many bad frames"));
        }
        self.send_frame(&ServerFrame::error(
            reference,
            code,
            // Decoder messages can quote the frame.
            sluice_proto::bounded_message(message),
        ))
        .await
    }

    async fn submit(&mut self, submit: Submit<'_>) -> Result<(), End> {
        if self.inflight >= self.state.gateway().max_inflight_submits {
            jobs::count_rejected("overloaded");
            return self
                .send_frame(&ServerFrame::error(
                    Some(submit.reference),
                    ErrorCode::Overloaded,
                    "too many submissions awaiting the broker",
                ))
                .await;
        }
        if let Err(wait) = self.state.submit_quota().check(&self.user) {
            jobs::count_rejected("rate_limited");
            let retry_after_ms = crate::quota::retry_after_ms(wait);
            return self
                .send_frame(&ServerFrame::Error {
                    reference: Some(submit.reference),
                    code: ErrorCode::RateLimited,
                    message: format!("too many submissions; retry in {retry_after_ms} ms"),
                    retry_after_ms: Some(retry_after_ms),
                })
                .await;
        }
        let job_id = Uuid::now_v7();
        let args = submit.args.to_owned();
        self.seq.begin_submit(job_id);
        self.inflight += 1;
        let state = self.state.clone();
        let user = self.user.clone();
        let reference = submit.reference;
        let kind = submit.kind;
        // Tracked, so a draining gateway finishes in-flight publishes.
        let task = self.state.tasks().spawn(
            async move {
                let result = state.submit(job_id, &user, &kind, &args).await;
                TaskDone::Submitted {
                    reference,
                    job_id,
                    result,
                }
            }
            .in_current_span(),
        );
        self.tasks.push(task);
        Ok(())
    }

    /// Cancels one of the user's jobs in the background; the `cancelled`
    /// event arrives like any other event.
    async fn cancel(&mut self, job_id: &str) -> Result<(), End> {
        let Ok(job_id) = Uuid::parse_str(job_id) else {
            return self
                .send_frame(&ServerFrame::error(
                    None,
                    ErrorCode::NotFound,
                    "no such job",
                ))
                .await;
        };
        // Each cancel is a database transaction: like submits, a session
        // may have only so many under way, or a flood of cancels would
        // spawn tasks and hold pooled connections without bound.
        if self.inflight >= self.state.gateway().max_inflight_submits {
            return self
                .send_frame(&ServerFrame::error(
                    None,
                    ErrorCode::Overloaded,
                    "too many commands under way",
                ))
                .await;
        }
        self.inflight += 1;
        let state = self.state.clone();
        let user = self.user.clone();
        self.tasks.push(tokio::spawn(
            async move {
                let result = state.cancel(&user, job_id).await;
                TaskDone::CancelDone { job_id, result }
            }
            .in_current_span(),
        ));
        Ok(())
    }

    async fn on_task(&mut self, done: TaskDone) -> Result<(), End> {
        let mut out = std::mem::take(&mut self.out);
        match done {
            TaskDone::Submitted {
                reference,
                job_id,
                result,
            } => {
                self.inflight -= 1;
                let frame = match result {
                    Ok(()) => ServerFrame::Accepted { reference, job_id },
                    Err(CommandError::OverQuota(refusal)) => ServerFrame::Error {
                        reference: Some(reference),
                        code: ErrorCode::RateLimited,
                        message: CommandError::OverQuota(refusal).to_string(),
                        retry_after_ms: Some(jobs::quota_retry_after_ms(refusal)),
                    },
                    Err(CommandError::Refused(refusal)) => ServerFrame::error(
                        Some(reference),
                        jobs::refusal_code(&refusal),
                        refusal.to_string(),
                    ),
                    Err(e) => {
                        tracing::warn!(%job_id, error = %e, "job not queued");
                        ServerFrame::error(
                            Some(reference),
                            ErrorCode::Unavailable,
                            format!("job not queued: {e}"),
                        )
                    }
                };
                self.send_frame(&frame).await?;
                self.seq.end_submit(job_id, &mut out);
            }
            TaskDone::CancelDone { job_id, result } => {
                self.inflight -= 1;
                let refusal = match result {
                    Ok(Cancelled::Requested(_)) => None,
                    Ok(Cancelled::AlreadyEnded(status)) => Some((
                        ErrorCode::BadRequest,
                        format!("job {job_id} already ended ({status})"),
                    )),
                    Err(CommandError::NotFound | CommandError::Conflict(_)) => {
                        Some((ErrorCode::NotFound, "no such job".to_owned()))
                    }
                    Err(e) => Some((ErrorCode::Unavailable, format!("cancel failed: {e}"))),
                };
                if let Some((code, message)) = refusal {
                    self.send_frame(&ServerFrame::error(None, code, message))
                        .await?;
                }
            }
            TaskDone::CatchUp { rows } => match rows {
                Ok(rows) => {
                    if !rows.is_empty() {
                        tracing::info!(events = rows.len(), "caught up after a broker reconnect");
                    }
                    self.push_stored(rows, &mut out);
                }
                Err(e) => tracing::warn!(error = %e, "catch-up read failed"),
            },
            TaskDone::GapRead { gap, rows } => {
                self.gap_reading = false;
                match rows {
                    Ok(rows) => {
                        self.push_stored(rows, &mut out);
                        if self.seq.gap().is_some_and(|g| g.after == gap.after) {
                            tracing::warn!(?gap, "events missing from the log; skipping ahead");
                            self.seq.skip_to(gap.upto + 1, &mut out);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "gap read failed; will retry");
                        self.gap_since = Some(Instant::now());
                    }
                }
            }
        }
        self.send_released(out).await
    }

    /// Feeds events read back from the log to the sequencer.
    fn push_stored(&mut self, rows: Vec<(u64, String)>, out: &mut Vec<Delivery>) {
        for (seq, frame) in rows {
            match EventHead::decode(frame.as_bytes()) {
                Ok(head) => self.seq.push(
                    Delivery {
                        head,
                        frame: Utf8Bytes::from(frame),
                        published_ms: 0,
                    },
                    out,
                ),
                Err(e) => tracing::error!(seq, error = %e, "stored event does not decode"),
            }
        }
    }

    /// Reads, in the background and after a random pause (so not every
    /// session hits the database at once), the user's stored events after
    /// the last one sent. Events published while this gateway's queue was
    /// being re-declared after a broker restart were confirmed by the broker
    /// but reached no one; this is how open sessions still get them.
    fn catch_up(&mut self) {
        let log = self.state.clone();
        let user = self.user.clone();
        let after = self.seq.last_sent();
        self.tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 1000)).await;
            let rows = async {
                let reader = log.reader().await?;
                reader
                    .read_range(&user, after, i64::MAX as u64, 10_000)
                    .await
            }
            .await;
            TaskDone::CatchUp { rows }
        }));
    }

    /// Writes what the sequencer released and re-arms the gap timer.
    async fn send_released(&mut self, mut out: Vec<Delivery>) -> Result<(), End> {
        let mut result = Ok(());
        for delivery in out.drain(..) {
            if result.is_ok() {
                result = self.send(Message::Text(delivery.frame)).await;
                if result.is_ok() && delivery.published_ms > 0 {
                    let ms = sluice_proto::now_ms().saturating_sub(delivery.published_ms);
                    self.state
                        .per_frame()
                        .event_delivery
                        .record(ms as f64 / 1000.0);
                }
            }
        }
        self.out = out;
        match self.seq.gap() {
            None => self.gap_since = None,
            Some(_) if self.gap_since.is_none() => self.gap_since = Some(Instant::now()),
            Some(_) => {}
        }
        result
    }

    /// Reads a missing seq range from the event log in the background.
    fn read_gap(&mut self) {
        let Some(gap) = self.seq.gap() else {
            self.gap_since = None;
            return;
        };
        self.gap_reading = true;
        let log = self.state.clone();
        let user = self.user.clone();
        self.tasks.push(tokio::spawn(async move {
            let rows = async {
                let reader = log.reader().await?;
                let limit = (gap.upto - gap.after) as i64;
                reader.read_range(&user, gap.after, gap.upto, limit).await
            }
            .await;
            TaskDone::GapRead { gap, rows }
        }));
    }

    async fn on_heartbeat(&mut self, beat: Duration) -> Result<(), End> {
        if self.last_heard.elapsed() >= beat * 2 {
            return Err(End::close(CloseCode::GoingAway, "heartbeat timeout"));
        }
        self.send(Message::Ping(Bytes::new())).await
    }

    async fn send_frame(&mut self, frame: &ServerFrame) -> Result<(), End> {
        self.send(Message::Text(frame.encode().into())).await
    }

    /// Writes one message; a client too slow to take it within the write
    /// timeout is closed with 1013.
    async fn send(&mut self, message: Message) -> Result<(), End> {
        if matches!(message, Message::Text(_)) {
            self.state.per_frame().frames_out.increment(1);
        }
        let limit = Duration::from_millis(self.state.gateway().write_timeout_ms);
        match tokio::time::timeout(limit, self.ws.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::close(
                CloseCode::TryAgainLater,
                "too slow: socket write timed out",
            )),
        }
    }

    async fn close(&mut self, end: End) {
        let (code, reason) = match end {
            End::Close(code, reason) => (code, reason),
            End::ClientClosed => {
                // tungstenite queued the close reply; flushing sends it.
                let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close()).await;
                return;
            }
            End::Gone => return,
        };
        let mut reason = reason.into_owned();
        reason.truncate(120);
        let frame = CloseFrame {
            code: WireCloseCode::from(code.code()),
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.ws.send(Message::Close(Some(frame))),
        )
        .await;
    }
}

/// Maps a read error to how the session ends.
fn read_error(e: WsError) -> End {
    match e {
        WsError::Capacity(_) => End::close(CloseCode::TooBig, "message too big"),
        WsError::Io(e) if budget::ReadBudget::is_spent(&e) => {
            End::close(CloseCode::TooBig, "hello too big")
        }
        WsError::Utf8(_) => End::close(CloseCode::InvalidData, "invalid utf-8"),
        WsError::Protocol(_) => End::close(CloseCode::ProtocolError, "protocol error"),
        _ => End::Gone,
    }
}

/// The moment a token with this `exp` (seconds since the epoch) expires,
/// on the session's clock, `leeway_secs` late as its verification allowed.
/// One far in the future is capped at a year, so no deadline can overflow:
/// a session lives at most a year on one token.
fn expiry(exp: u64, leeway_secs: u64) -> Instant {
    let left = exp
        .saturating_add(leeway_secs)
        .saturating_sub(sluice_proto::now_ms() / 1000);
    let left = Duration::from_secs(left.min(365 * 24 * 3600));
    let now = Instant::now();
    now.checked_add(left).unwrap_or(now)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
