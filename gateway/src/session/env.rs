//! What a session needs from its gateway, as small traits: the event log
//! it reads, the job commands it starts, and the in-memory parts it shares
//! with every other session. [`AppState`] implements them with the code
//! the session called directly before; unit tests implement them with
//! in-memory fakes, so the session loop runs without PostgreSQL or RabbitMQ.
//!
//! The session is generic over its environment and holds it as an `Arc`,
//! so in production it monomorphises to the same layout as before: the
//! per-session task future does not grow.

use std::sync::Arc;

use deadpool_postgres::Object;
use serde_json::value::RawValue;
use sluice_proto::KindName;
use sluice_store::events;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::auth::Verifier;
use crate::config::GatewayConfig;
use crate::jobs::{self, Cancelled, CommandError};
use crate::registry::Registry;
use crate::state::{AppState, PerFrameMetrics};

/// Reads of the user's stored events: the welcome's newest seq, the replay
/// on resume, gap reads and the catch-up after a broker reconnect. A
/// seam so the session's reads can be served from memory in unit tests.
pub trait EventLog: Send + Sync + 'static {
    /// One connection to the log, held for a run of reads and given back
    /// before anything is written to the client (the welcome reads its seqs
    /// on one, then each replay page on one of its own).
    type Reader: EventReader;

    /// A connection to read on; the error says why none could be had.
    fn reader(&self) -> impl Future<Output = Result<Self::Reader, String>> + Send;
}

/// The reads of `sluice_store::events` a session makes, on one connection.
pub trait EventReader: Send + Sync + 'static {
    /// The user's newest stored seq (0 when the user has none).
    fn last_seq(&self, user: &str) -> impl Future<Output = Result<u64, String>> + Send;

    /// The user's oldest retained seq, if any event is retained.
    fn oldest_seq(&self, user: &str) -> impl Future<Output = Result<Option<u64>, String>> + Send;

    /// Stored frames with `after < seq <= upto`, oldest first, at most `limit`.
    fn read_range(
        &self,
        user: &str,
        after: u64,
        upto: u64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(u64, String)>, String>> + Send;
}

/// The job commands a session starts in the background (the ones in
/// [`crate::jobs`]); a seam so unit tests can answer them at will.
pub trait JobCommands: Send + Sync + 'static {
    /// Records and publishes a job; `Ok` once it is sure to run.
    fn submit(
        &self,
        job_id: Uuid,
        user: &str,
        kind: &KindName,
        args: &RawValue,
    ) -> impl Future<Output = Result<(), CommandError>> + Send;

    /// Cancels one of the user's jobs (without hiding it).
    fn cancel(
        &self,
        user: &str,
        job_id: Uuid,
    ) -> impl Future<Output = Result<Cancelled, CommandError>> + Send;
}

/// Everything a session uses: the two I/O seams, and the in-memory parts
/// every session of the gateway shares.
pub trait SessionEnv: EventLog + JobCommands {
    /// The session limits and timers.
    fn gateway(&self) -> &GatewayConfig;
    /// Checks the `hello` token.
    fn verifier(&self) -> &Verifier;
    /// Where the session registers for its user's events.
    fn registry(&self) -> &Arc<Registry>;
    /// Cancelled when the gateway drains; sessions close with 1012.
    fn shutdown(&self) -> &CancellationToken;
    /// Bumped after the broker connection comes back: time to catch up.
    fn broker_reconnects(&self) -> &tokio::sync::watch::Sender<u64>;
    /// Metric handles touched per frame.
    fn per_frame(&self) -> &PerFrameMetrics;
    /// Tracks submissions, so a draining gateway finishes their publishes.
    fn tasks(&self) -> &TaskTracker;
    /// The per-user submission rate.
    fn submit_quota(&self) -> &crate::quota::SubmitQuota;
}

impl EventLog for AppState {
    type Reader = Object;

    async fn reader(&self) -> Result<Object, String> {
        self.pool.get().await.map_err(|e| e.to_string())
    }
}

impl EventReader for Object {
    async fn last_seq(&self, user: &str) -> Result<u64, String> {
        events::last_seq(&***self, user)
            .await
            .map_err(|e| e.to_string())
    }

    async fn oldest_seq(&self, user: &str) -> Result<Option<u64>, String> {
        events::oldest_seq(&***self, user)
            .await
            .map_err(|e| e.to_string())
    }

    async fn read_range(
        &self,
        user: &str,
        after: u64,
        upto: u64,
        limit: i64,
    ) -> Result<Vec<(u64, String)>, String> {
        events::read_range(&***self, user, after, upto, limit)
            .await
            .map_err(|e| e.to_string())
    }
}

impl JobCommands for AppState {
    async fn submit(
        &self,
        job_id: Uuid,
        user: &str,
        kind: &KindName,
        args: &RawValue,
    ) -> Result<(), CommandError> {
        jobs::submit(self, job_id, user, kind, args, None)
            .await
            .map(|_| ())
    }

    async fn cancel(&self, user: &str, job_id: Uuid) -> Result<Cancelled, CommandError> {
        jobs::cancel(self, user, job_id, false).await
    }
}

impl SessionEnv for AppState {
    fn gateway(&self) -> &GatewayConfig {
        &self.config.gateway
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
        &self.broker_reconnects
    }
    fn per_frame(&self) -> &PerFrameMetrics {
        &self.per_frame
    }
    fn tasks(&self) -> &TaskTracker {
        &self.sessions
    }
    fn submit_quota(&self) -> &crate::quota::SubmitQuota {
        &self.submit_quota
    }
}
