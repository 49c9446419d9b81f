//! Telling the gateways what this runner serves: its kinds are written to
//! `runner_kinds` at start and kept alive by a heartbeat (see
//! `sluice_store::kinds`). A gateway refuses a kind no live runner of its
//! AMQP prefix announced, and validates args against the announced schema.

use std::time::Duration;

use deadpool_postgres::Pool;
use sluice_proto::KindSpec;
use sluice_store::kinds::{self, Announcer};
use tokio_util::sync::CancellationToken;

/// Rows of runners silent this long are deleted (a gateway has long
/// stopped counting them).
const FORGET_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a runner's kinds cannot be announced as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindsError {
    /// A kind's `args_schema` is not a JSON Schema a gateway could use.
    #[error("kind `{kind}`: args_schema is not a valid JSON Schema: {reason}")]
    BadSchema {
        /// The kind.
        kind: String,
        /// The validator's complaint.
        reason: String,
    },
    /// A declared SQL kind is refused as written.
    #[error(transparent)]
    Declaration(#[from] crate::sql_kinds::DeclarationError),
    /// `runner.kind_timeouts_ms` names a kind no handler serves.
    #[error("runner.kind_timeouts_ms: `{0}` is not a kind this runner serves")]
    UnservedTimeout(String),
}

/// Checks what will be announced: every schema compiles (as a gateway will
/// compile it), every configured time limit names a served kind.
pub fn check(
    specs: &[KindSpec],
    timeouts: &std::collections::BTreeMap<String, u64>,
) -> Result<(), KindsError> {
    for spec in specs {
        if let Err(e) = jsonschema::validator_for(&spec.args_schema) {
            return Err(KindsError::BadSchema {
                kind: spec.name.to_string(),
                reason: sluice_proto::bounded_message(e.to_string()),
            });
        }
    }
    for kind in timeouts.keys() {
        if !specs.iter().any(|s| s.name.as_str() == kind) {
            return Err(KindsError::UnservedTimeout(kind.clone()));
        }
    }
    Ok(())
}

/// Announces once; the caller treats a failure as a failed start.
pub async fn announce(
    pool: &Pool,
    who: &Announcer,
    specs: &[KindSpec],
) -> Result<(), sluice_store::StoreError> {
    let client = pool.get().await?;
    kinds::announce(&**client, who, specs).await?;
    Ok(())
}

/// Refreshes the announcement every heartbeat until `shutdown`; announces
/// again if the rows are gone (pruned after a long outage, or a restored
/// database). A failed beat is logged and retried at the next one; the
/// gateways' grace outlasts many.
pub async fn keep_alive(
    pool: Pool,
    who: Announcer,
    specs: Vec<KindSpec>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(who.heartbeat) => {}
            _ = shutdown.cancelled() => return,
        }
        let beat = async {
            let client = pool.get().await?;
            if kinds::heartbeat(&**client, &who).await? == 0 {
                tracing::info!(runner = %who.runner_id, "kind rows gone; announcing again");
                kinds::announce(&**client, &who, &specs).await?;
            }
            kinds::prune(&**client, FORGET_AFTER).await?;
            Ok::<_, sluice_store::StoreError>(())
        };
        if let Err(e) = beat.await {
            tracing::warn!(error = %e, "kinds heartbeat failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunnerConfig;
    use crate::handlers::Handlers;

    #[test]
    fn builtin_kinds_pass_and_bad_declarations_are_named() {
        let settings = RunnerConfig::default();
        let mut specs = Handlers::builtin().specs(&settings);
        assert_eq!(check(&specs, &settings.kind_timeouts_ms), Ok(()));

        let mut timeouts = settings.kind_timeouts_ms.clone();
        timeouts.insert("reindex".into(), 1_000);
        assert_eq!(
            check(&specs, &timeouts),
            Err(KindsError::UnservedTimeout("reindex".into()))
        );

        specs[0].args_schema = serde_json::json!({"type": "no such type"});
        match check(&specs, &settings.kind_timeouts_ms) {
            Err(KindsError::BadSchema { kind, .. }) => assert_eq!(kind, "batch_upsert"),
            other => panic!("{other:?}"),
        }
    }
}
