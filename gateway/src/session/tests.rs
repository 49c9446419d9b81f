//! The session loop driven over an in-memory socket, with an in-memory
//! event log and job commands, on tokio's paused clock: timers fire when
//! every task waits, so timeouts are exact and take no real time.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use sluice_proto::job::SleepArgs;
use sluice_proto::{
    ErrorCode, EventFrame, EventHead, EventStatus, JobRequest, KindName, OutgoingFrame, Resume,
    ServerFrame,
};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::{EventLog, EventReader, GAP_WAIT, JobCommands, SessionEnv};
use crate::auth::{self, Verifier};
use crate::config::{AuthConfig, GatewayConfig};
use crate::jobs::{Cancelled, CommandError};
use crate::registry::{Delivery, MailboxLimits, Registry};
use crate::state::PerFrameMetrics;

const USER: &str = "alice";
const HELLO_TIMEOUT: Duration = Duration::from_millis(1_000);
const BEAT: Duration = Duration::from_secs(60);
const MAX_BAD_FRAMES: u32 = 3;
const QUEUE_FRAMES: usize = 8;

/// Stored events by seq, shared by the fake and its readers.
type Log = Arc<Mutex<BTreeMap<u64, String>>>;

/// A gateway environment held in memory.
struct Fake {
    gateway: GatewayConfig,
    auth: AuthConfig,
    verifier: Verifier,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    reconnects: tokio::sync::watch::Sender<u64>,
    per_frame: PerFrameMetrics,
    tasks: TaskTracker,
    submit_quota: crate::quota::SubmitQuota,
    /// The user's stored events.
    log: Log,
    /// Ids of the jobs submitted, in order.
    submitted: Mutex<Vec<Uuid>>,
    /// One permit answers one submission `accepted`; without, it waits.
    submit_answers: Semaphore,
}

impl Fake {
    fn new(gateway: GatewayConfig) -> Arc<Self> {
        Self::answering(gateway, Semaphore::MAX_PERMITS)
    }

    /// A fake that answers only `submits` submissions until given more
    /// permits.
    fn answering(gateway: GatewayConfig, submits: usize) -> Arc<Self> {
        let auth = AuthConfig::default();
        let (rate, burst) = (
            gateway.submits_per_user_per_sec,
            gateway.submit_burst_per_user,
        );
        Arc::new(Self {
            verifier: Verifier::new(&auth).expect("the default keys"),
            auth,
            registry: Arc::new(Registry::new(
                MailboxLimits {
                    frames: gateway.outbound_queue,
                    bytes: gateway.outbound_queue_bytes,
                },
                gateway.max_sessions_per_user,
            )),
            gateway,
            shutdown: CancellationToken::new(),
            reconnects: tokio::sync::watch::Sender::new(0),
            per_frame: PerFrameMetrics::new(),
            tasks: TaskTracker::new(),
            submit_quota: crate::quota::SubmitQuota::new(rate, burst),
            log: Log::default(),
            submitted: Mutex::default(),
            submit_answers: Semaphore::new(submits),
        })
    }

    fn store(&self, seq: u64, job_id: Uuid, status: EventStatus) {
        self.log
            .lock()
            .unwrap()
            .insert(seq, event(seq, job_id, status).to_string());
    }

    /// Hands a live event to the user's sessions, as the broker consumer does.
    fn deliver(&self, seq: u64, job_id: Uuid, status: EventStatus) -> usize {
        let frame = event(seq, job_id, status);
        let delivery = Delivery {
            head: EventHead::decode(frame.as_bytes()).unwrap(),
            frame,
            published_ms: 0,
        };
        self.registry.deliver(USER, &delivery)
    }

    fn token(&self) -> String {
        auth::mint(&self.auth, USER, 3600).unwrap()
    }
}

fn config() -> GatewayConfig {
    GatewayConfig {
        hello_timeout_ms: HELLO_TIMEOUT.as_millis() as u64,
        heartbeat_ms: BEAT.as_millis() as u64,
        max_bad_frames: MAX_BAD_FRAMES,
        outbound_queue: QUEUE_FRAMES,
        ..GatewayConfig::default()
    }
}

fn event(seq: u64, job_id: Uuid, status: EventStatus) -> Utf8Bytes {
    ServerFrame::Event(EventFrame {
        seq,
        job_id,
        status,
        progress: None,
        result: None,
        error: None,
    })
    .encode()
    .into()
}

struct Reader(Log);

impl EventLog for Fake {
    type Reader = Reader;

    async fn reader(&self) -> Result<Reader, String> {
        Ok(Reader(self.log.clone()))
    }
}

impl EventReader for Reader {
    async fn last_seq(&self, _user: &str) -> Result<u64, String> {
        Ok(self.0.lock().unwrap().keys().last().copied().unwrap_or(0))
    }

    async fn oldest_seq(&self, _user: &str) -> Result<Option<u64>, String> {
        Ok(self.0.lock().unwrap().keys().next().copied())
    }

    async fn read_range(
        &self,
        _user: &str,
        after: u64,
        upto: u64,
        limit: i64,
    ) -> Result<Vec<(u64, String)>, String> {
        let log = self.0.lock().unwrap();
        Ok(log
            .range(after + 1..=upto)
            .take(limit as usize)
            .map(|(seq, frame)| (*seq, frame.clone()))
            .collect())
    }
}

impl JobCommands for Fake {
    async fn submit(
        &self,
        job_id: Uuid,
        _user: &str,
        _kind: &KindName,
        _args: &RawValue,
    ) -> Result<(), CommandError> {
        self.submitted.lock().unwrap().push(job_id);
        self.submit_answers.acquire().await.unwrap().forget();
        Ok(())
    }

    async fn cancel(&self, _user: &str, _job_id: Uuid) -> Result<Cancelled, CommandError> {
        Err(CommandError::NotFound)
    }
}

impl SessionEnv for Fake {
    fn gateway(&self) -> &GatewayConfig {
        &self.gateway
    }
    fn verifier(&self) -> &Verifier {
        &self.verifier
    }
    fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
    fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
    fn broker_reconnects(&self) -> &tokio::sync::watch::Sender<u64> {
        &self.reconnects
    }
    fn per_frame(&self) -> &PerFrameMetrics {
        &self.per_frame
    }
    fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }
    fn submit_quota(&self) -> &crate::quota::SubmitQuota {
        &self.submit_quota
    }
}

/// The client's end of a session's socket.
struct Client {
    ws: WebSocketStream<ClientIo>,
    /// Set, the client's writes are dropped: its Pongs stop reaching the server.
    muted: Arc<AtomicBool>,
    session: JoinHandle<()>,
}

/// The client's side of the in-memory socket, whose writes can be dropped.
struct ClientIo {
    io: DuplexStream,
    muted: Arc<AtomicBool>,
}

impl AsyncRead for ClientIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.muted.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.muted.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What the client read next.
#[derive(Debug)]
enum Read {
    Frame(ServerFrame),
    Close(Option<CloseFrame>),
    Ended,
}

impl Client {
    /// Opens a session on an in-memory socket; sends nothing yet.
    async fn open(fake: &Arc<Fake>) -> Self {
        Self::open_with_budget(fake, None).await
    }

    /// [`Client::open`] with a pre-hello read budget of `hello_bytes`.
    async fn open_with_budget(fake: &Arc<Fake>, hello_bytes: Option<usize>) -> Self {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let server_config = WebSocketConfig::default().write_buffer_size(0);
        let budget = hello_bytes.map(super::budget::ReadBudget::new);
        let server_io = super::budget::Budgeted::new(
            server_io,
            budget.clone().unwrap_or_else(|| {
                let unlimited = super::budget::ReadBudget::new(0);
                unlimited.lift();
                unlimited
            }),
        );
        let server =
            WebSocketStream::from_raw_socket(server_io, Role::Server, Some(server_config)).await;
        let muted = Arc::new(AtomicBool::new(false));
        let client_io = ClientIo {
            io: client_io,
            muted: muted.clone(),
        };
        let ws = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let pre_hello = budget.map(|budget| super::budget::PreHello { budget, slot: None });
        let session = tokio::spawn(super::run(server, fake.clone(), None, "test", pre_hello));
        Self { ws, muted, session }
    }

    /// Opens a session and says `hello` with a valid token; returns the
    /// client and the `welcome`.
    async fn hello(fake: &Arc<Fake>, resume: Option<Resume>) -> (Self, ServerFrame) {
        let mut client = Self::open(fake).await;
        client
            .send(&OutgoingFrame::Hello {
                token: Some(fake.token()),
                resume,
            })
            .await;
        let welcome = client.frame().await;
        assert!(
            matches!(welcome, ServerFrame::Welcome { .. }),
            "{welcome:?}"
        );
        (client, welcome)
    }

    async fn connect(fake: &Arc<Fake>) -> Self {
        Self::hello(fake, None).await.0
    }

    async fn send(&mut self, frame: &OutgoingFrame) {
        self.send_text(&frame.encode()).await;
    }

    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn ping(&mut self, id: u64) {
        self.send(&OutgoingFrame::Ping { id }).await;
    }

    /// The next frame or close; Pings are answered by tungstenite and
    /// skipped. Waiting an hour of (paused) time fails the test instead of
    /// hanging it.
    async fn read(&mut self) -> Read {
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("nothing read within an hour");
            return match next {
                Some(Ok(Message::Text(text))) => Read::Frame(ServerFrame::decode(&text).unwrap()),
                Some(Ok(Message::Close(close))) => Read::Close(close),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected message {other:?}"),
                Some(Err(_)) | None => Read::Ended,
            };
        }
    }

    async fn frame(&mut self) -> ServerFrame {
        match self.read().await {
            Read::Frame(frame) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Reads the close frame, and checks that the session task then ended.
    async fn closed(mut self) -> CloseFrame {
        let close = match self.read().await {
            Read::Close(Some(close)) => close,
            other => panic!("expected a close frame, got {other:?}"),
        };
        tokio::time::timeout(Duration::from_secs(5), self.session)
            .await
            .expect("the session ends after closing")
            .unwrap();
        close
    }

    /// Reads `n` frames and expects them to be events; returns their seqs.
    async fn event_seqs(&mut self, n: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        for _ in 0..n {
            match self.frame().await {
                ServerFrame::Event(event) => seqs.push(event.seq),
                other => panic!("expected an event, got {other:?}"),
            }
        }
        seqs
    }
}

fn is_bad_request(frame: &ServerFrame) -> bool {
    matches!(
        frame,
        ServerFrame::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    )
}

fn sleep_job(reference: &str) -> OutgoingFrame {
    OutgoingFrame::Submit {
        reference: reference.into(),
        job: JobRequest::Sleep(SleepArgs { ms: 10 }),
    }
}

/// Frames the session counts as bad: not JSON, an unknown type, and a
/// second `hello` on an authenticated session.
fn bad_frames(fake: &Fake) -> [String; 3] {
    [
        "not json".to_owned(),
        r#"{"type":"nope"}"#.to_owned(),
        OutgoingFrame::Hello {
            token: Some(fake.token()),
            resume: None,
        }
        .encode(),
    ]
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_nothing_is_closed_after_the_hello_timeout() {
    let fake = Fake::new(config());
    let client = Client::open(&fake).await;
    let opened = Instant::now();
    let close = client.closed().await;
    let waited = opened.elapsed();
    assert_eq!(close.code, CloseCode::Policy, "{close:?}");
    assert!(
        waited >= HELLO_TIMEOUT && waited < HELLO_TIMEOUT + Duration::from_millis(5),
        "closed after {waited:?}, the hello timeout is {HELLO_TIMEOUT:?}"
    );
    assert_eq!(fake.registry.session_count(), 0, "never registered");
}

#[tokio::test(start_paused = true)]
async fn a_hello_within_the_timeout_is_welcomed() {
    let fake = Fake::new(config());
    let mut client = Client::open(&fake).await;
    tokio::time::sleep(HELLO_TIMEOUT - Duration::from_millis(10)).await;
    client
        .send(&OutgoingFrame::Hello {
            token: Some(fake.token()),
            resume: None,
        })
        .await;
    match client.frame().await {
        ServerFrame::Welcome {
            user,
            resumed,
            last_seq,
            ..
        } => {
            assert_eq!(user, USER);
            assert!(!resumed);
            assert_eq!(last_seq, 0);
        }
        other => panic!("expected welcome, got {other:?}"),
    }
    // Well past the hello timeout, the session is still up.
    tokio::time::sleep(HELLO_TIMEOUT * 3).await;
    client.ping(1).await;
    assert_eq!(client.frame().await, ServerFrame::Pong { id: 1 });
}

#[tokio::test(start_paused = true)]
async fn a_hello_over_its_budget_closes_with_1009_before_its_token_is_read() {
    let fake = Fake::new(config());
    let mut client = Client::open_with_budget(&fake, Some(8 * 1024)).await;
    let token = format!("{}{}", fake.token(), "x".repeat(16 * 1024));
    client
        .send(&OutgoingFrame::Hello {
            token: Some(token),
            resume: None,
        })
        .await;
    let close = client.closed().await;
    assert_eq!(close.code, CloseCode::Size);
    assert_eq!(close.reason.as_str(), "hello too big");
}

#[tokio::test(start_paused = true)]
async fn after_hello_the_budget_is_lifted() {
    let fake = Fake::new(config());
    let mut client = Client::open_with_budget(&fake, Some(1024)).await;
    client
        .send(&OutgoingFrame::Hello {
            token: Some(fake.token()),
            resume: None,
        })
        .await;
    assert!(matches!(client.frame().await, ServerFrame::Welcome { .. }));
    // 20 KiB, twenty times the budget: an ordinary bad frame now, answered.
    client
        .send_text(&format!(
            "{{\"type\":\"ping\",\"id\":\"{}\"}}",
            "9".repeat(20 * 1024)
        ))
        .await;
    assert!(matches!(client.frame().await, ServerFrame::Error { .. }));
    client.ping(7).await;
    assert_eq!(client.frame().await, ServerFrame::Pong { id: 7 });
}

#[tokio::test(start_paused = true)]
async fn a_bad_token_in_hello_closes_with_1008() {
    let fake = Fake::new(config());
    let mut client = Client::open(&fake).await;
    client
        .send(&OutgoingFrame::Hello {
            token: Some("not-a-jwt".into()),
            resume: None,
        })
        .await;
    let close = client.closed().await;
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(close.reason.as_str(), "invalid token");
}

#[tokio::test(start_paused = true)]
async fn bad_frames_are_answered_until_one_past_max_bad_frames_closes_with_1008() {
    let fake = Fake::new(config());
    let mut client = Client::connect(&fake).await;
    // `max_bad_frames` bad frames in a row are each answered with an error...
    for bad in bad_frames(&fake) {
        client.send_text(&bad).await;
        let answer = client.frame().await;
        assert!(is_bad_request(&answer), "{bad}: {answer:?}");
    }
    assert_eq!(bad_frames(&fake).len(), MAX_BAD_FRAMES as usize);
    // ...and the next one in a row closes the session.
    client.send_text("still not json").await;
    let close = client.closed().await;
    assert_eq!(close.code, CloseCode::Policy, "{close:?}");
    assert_eq!(close.reason.as_str(), "too many bad frames");
}

#[tokio::test(start_paused = true)]
async fn a_good_frame_resets_the_bad_frame_count() {
    let fake = Fake::new(config());
    let mut client = Client::connect(&fake).await;
    for round in 1..=3 {
        for bad in bad_frames(&fake) {
            client.send_text(&bad).await;
            let answer = client.frame().await;
            assert!(is_bad_request(&answer), "round {round}: {answer:?}");
        }
        client.ping(round).await;
        assert_eq!(client.frame().await, ServerFrame::Pong { id: round });
    }
    // The count restarts at the last ping: this many more in a row close.
    for bad in bad_frames(&fake) {
        client.send_text(&bad).await;
        assert!(is_bad_request(&client.frame().await));
    }
    client.send_text("not json").await;
    assert_eq!(client.closed().await.code, CloseCode::Policy);
}

#[tokio::test(start_paused = true)]
async fn a_ping_is_answered_while_the_mailbox_is_full() {
    let fake = Fake::new(config());
    let mut client = Client::connect(&fake).await;
    let job = Uuid::now_v7();
    let mut expected = Vec::new();
    for round in 0..3u64 {
        // Fill the mailbox to its bound while the client reads nothing, and
        // ping behind it.
        for i in 1..=QUEUE_FRAMES as u64 {
            let seq = round * QUEUE_FRAMES as u64 + i;
            assert_eq!(fake.deliver(seq, job, EventStatus::Running), 1, "seq {seq}");
            expected.push(seq);
        }
        client.ping(round).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Everything arrives: every pong, every event in order, nobody evicted.
    let mut seqs = Vec::new();
    let mut pongs = Vec::new();
    while seqs.len() < expected.len() || pongs.len() < 3 {
        match client.frame().await {
            ServerFrame::Event(event) => seqs.push(event.seq),
            ServerFrame::Pong { id } => pongs.push(id),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seqs, expected);
    assert_eq!(pongs, [0, 1, 2]);
    assert_eq!(fake.registry.evicted_count(), 0);
    assert_eq!(fake.registry.session_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_mailbox_past_its_bound_closes_the_session_with_1013() {
    let fake = Fake::new(config());
    let mut client = Client::connect(&fake).await;
    let job = Uuid::now_v7();
    for seq in 1..=QUEUE_FRAMES as u64 {
        assert_eq!(fake.deliver(seq, job, EventStatus::Running), 1);
    }
    let overflow = QUEUE_FRAMES as u64 + 1;
    assert_eq!(fake.deliver(overflow, job, EventStatus::Done), 0, "evicted");
    // What was queued before the eviction still goes out, then the close.
    let seqs = client.event_seqs(QUEUE_FRAMES).await;
    assert_eq!(seqs, (1..=QUEUE_FRAMES as u64).collect::<Vec<_>>());
    let close = client.closed().await;
    assert_eq!(close.code, CloseCode::Again, "{close:?}");
    assert_eq!(fake.registry.session_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_pending_submit_holds_its_events_but_not_pings() {
    let fake = Fake::answering(config(), 0);
    let mut client = Client::connect(&fake).await;
    client.send(&sleep_job("r1")).await;
    // The runner can be faster than the broker's confirm: the job's first
    // event arrives before the submission is answered.
    let job_id = loop {
        if let Some(id) = fake.submitted.lock().unwrap().first() {
            break *id;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    assert_eq!(fake.deliver(1, job_id, EventStatus::Running), 1);
    client.ping(7).await;
    assert_eq!(
        client.frame().await,
        ServerFrame::Pong { id: 7 },
        "the loop serves pings while the submission waits, and holds the event"
    );
    fake.submit_answers.add_permits(1);
    assert_eq!(
        client.frame().await,
        ServerFrame::Accepted {
            reference: "r1".into(),
            job_id
        }
    );
    assert_eq!(client.event_seqs(1).await, [1]);
}

#[tokio::test(start_paused = true)]
async fn a_resume_replays_the_stored_events_after_the_clients_seq() {
    let fake = Fake::new(config());
    let job = Uuid::now_v7();
    for seq in 1..=5 {
        fake.store(seq, job, EventStatus::Running);
    }
    let resume = Resume {
        session: None,
        after: 2,
    };
    let (mut client, welcome) = Client::hello(&fake, Some(resume)).await;
    match welcome {
        ServerFrame::Welcome {
            resumed, last_seq, ..
        } => {
            assert!(resumed);
            assert_eq!(last_seq, 5);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.event_seqs(3).await, [3, 4, 5]);
    // A live duplicate of a replayed event is dropped; a new one goes out.
    fake.deliver(5, job, EventStatus::Running);
    fake.deliver(6, job, EventStatus::Done);
    assert_eq!(client.event_seqs(1).await, [6]);
}

#[tokio::test(start_paused = true)]
async fn a_missing_seq_is_read_from_the_log_after_the_gap_wait() {
    let fake = Fake::new(config());
    let mut client = Client::connect(&fake).await;
    let job = Uuid::now_v7();
    // Seqs 1 and 2 commit; only 2's message reaches this gateway.
    fake.store(1, job, EventStatus::Running);
    fake.store(2, job, EventStatus::Done);
    let delivered = Instant::now();
    assert_eq!(fake.deliver(2, job, EventStatus::Done), 1);
    assert_eq!(client.event_seqs(2).await, [1, 2]);
    assert!(delivered.elapsed() >= GAP_WAIT, "{:?}", delivered.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_answering_pings_is_closed_after_two_heartbeats() {
    let fake = Fake::new(config());
    let mut client = Client::connect(&fake).await;
    let heard = Instant::now();
    client.muted.store(true, Ordering::Relaxed);
    let mut pings = 0;
    let close = loop {
        match client.ws.next().await {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(frame))) => break frame.unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(close.code, CloseCode::Away, "{close:?}");
    assert_eq!(pings, 1, "one unanswered Ping, then the close");
    let silent = heard.elapsed();
    assert!(
        silent >= BEAT * 2 && silent < BEAT * 2 + Duration::from_millis(5),
        "closed after {silent:?} of silence"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_answers_pings_stays_open() {
    let fake = Fake::new(config());
    let mut client = Client::connect(&fake).await;
    // Reading, the client answers each Ping with a Pong (tungstenite does).
    let quiet = tokio::time::timeout(BEAT * 10, client.read()).await;
    assert!(quiet.is_err(), "nothing but Pings for ten beats: {quiet:?}");
    client.ping(3).await;
    assert_eq!(client.frame().await, ServerFrame::Pong { id: 3 });
}

#[test]
fn an_idle_session_future_stays_small() {
    type Ws =
        WebSocketStream<super::budget::Budgeted<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>>;
    fn output_size<F, A, B, C, D, R>(_: F) -> usize
    where
        F: FnOnce(A, B, C, &'static str, D) -> R,
    {
        std::mem::size_of::<R>()
    }
    // The production session's task future (1704 bytes when measured):
    // every idle session holds one, so it should not grow unnoticed.
    let size = output_size(super::run::<Ws, crate::state::AppState>);
    assert!(size <= 2048, "the session future is {size} bytes");
}

/// Opens a session whose `hello` token lives `ttl_secs`.
async fn session_with_token_for(fake: &Arc<Fake>, ttl_secs: u64) -> Client {
    let mut client = Client::open(fake).await;
    client
        .send(&OutgoingFrame::Hello {
            token: Some(auth::mint(&fake.auth, USER, ttl_secs).unwrap()),
            resume: None,
        })
        .await;
    assert!(matches!(client.frame().await, ServerFrame::Welcome { .. }));
    client
}

#[tokio::test(start_paused = true)]
async fn a_session_is_closed_with_4001_when_its_token_expires() {
    let fake = Fake::new(config());
    let mut client = session_with_token_for(&fake, 20).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    client.ping(1).await;
    assert_eq!(client.frame().await, ServerFrame::Pong { id: 1 });
    let started = Instant::now();
    let close = client.closed().await;
    assert_eq!(u16::from(close.code), 4001);
    assert_eq!(close.reason.as_str(), "token expired");
    let waited = started.elapsed();
    assert!(
        waited <= Duration::from_secs(6),
        "closed {waited:?} after 15 s of a 20 s token"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refresh_keeps_the_session_past_its_first_token() {
    let fake = Fake::new(config());
    let mut client = session_with_token_for(&fake, 20).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let fresh = auth::mint(&fake.auth, USER, 120).unwrap();
    client.send(&OutgoingFrame::Refresh { token: fresh }).await;
    match client.frame().await {
        ServerFrame::Refreshed { exp } => {
            let now = sluice_proto::now_ms() / 1000;
            assert!(
                (now + 100..=now + 121).contains(&exp),
                "exp {exp}, now {now}"
            );
        }
        other => panic!("expected refreshed, got {other:?}"),
    }
    // Well past the first token's expiry.
    tokio::time::sleep(Duration::from_secs(60)).await;
    client.ping(2).await;
    assert_eq!(client.frame().await, ServerFrame::Pong { id: 2 });
    let close = client.closed().await;
    assert_eq!(u16::from(close.code), 4001);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_for_another_user_or_a_bad_token_closes_with_1008() {
    let fake = Fake::new(config());
    let mut client = session_with_token_for(&fake, 600).await;
    let other = auth::mint(&fake.auth, "mallory", 600).unwrap();
    client.send(&OutgoingFrame::Refresh { token: other }).await;
    let close = client.closed().await;
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(close.reason.as_str(), "refresh token names another user");

    let mut client = session_with_token_for(&fake, 600).await;
    client
        .send(&OutgoingFrame::Refresh {
            token: "not-a-jwt".into(),
        })
        .await;
    assert_eq!(client.closed().await.code, CloseCode::Policy);
}

#[tokio::test(start_paused = true)]
async fn a_submit_past_the_users_quota_is_answered_rate_limited_and_not_run() {
    let fake = Fake::new(GatewayConfig {
        submits_per_user_per_sec: 1,
        submit_burst_per_user: 2,
        ..config()
    });
    let mut client = Client::connect(&fake).await;
    let submit = |reference: &str| OutgoingFrame::Submit {
        reference: reference.into(),
        job: JobRequest::Sleep(SleepArgs { ms: 1 }),
    };
    for reference in ["a", "b", "c"] {
        client.send(&submit(reference)).await;
    }
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(client.frame().await);
    }
    let limited: Vec<_> = answers
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::Error {
                reference,
                code,
                retry_after_ms,
                ..
            } => Some((reference.clone(), *code, retry_after_ms.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(
        limited,
        [(Some("c".to_owned()), ErrorCode::RateLimited, true)],
        "{answers:?}"
    );
    assert_eq!(
        fake.submitted.lock().unwrap().len(),
        2,
        "the third never ran"
    );
}
