//! The kinds this gateway admits: what the runners of its AMQP prefix
//! announced (`sluice_store::kinds`), read again every second, each with
//! its args schema compiled once. Submissions over WebSocket and HTTP are
//! checked here before anything is recorded; `GET /v1/kinds` lists the
//! same snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use serde_json::value::RawValue;
use sluice_proto::{KindName, KindSpec};

/// How often the snapshot is read again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// A kind missing from the snapshot waits for a reading that began after
/// the request arrived, so a kind announced a moment before is admitted;
/// such readings start at most this often (a flood of unknown kinds costs
/// 20 queries a second, and each waits at most this long plus a query).
const FRESH_READ_SPACING: Duration = Duration::from_millis(50);

/// Args larger than this are validated on the blocking pool, off the
/// worker threads that carry every session's pongs.
const INLINE_ARGS_BYTES: usize = 64 * 1024;

/// Why a submission's kind or args were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No live runner of this gateway's prefix serves the kind.
    #[error(
        "unknown job kind `{0}`: nothing in this deployment serves it (GET /v1/kinds lists what does)"
    )]
    UnknownKind(String),
    /// The args do not validate against the kind's schema; the message
    /// names the field, with values masked.
    #[error("{0}")]
    BadArgs(String),
    /// The kinds have not been read yet (the database has not answered
    /// since start).
    #[error("the served kinds are not known yet: {0}")]
    NotLoaded(String),
}

/// A served kind with its compiled schema.
struct Served {
    spec: KindSpec,
    validator: Arc<jsonschema::Validator>,
}

/// One reading of `runner_kinds`.
struct Snapshot {
    kinds: BTreeMap<KindName, Served>,
    /// When the query that made it was sent: it reflects every
    /// announcement committed before then.
    read_at: Instant,
}

/// The admitted kinds, shared by every session and request. One writer:
/// [`Kinds::refresh`].
pub struct Kinds {
    amqp_prefix: String,
    grace: Duration,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// Serializes reads, so a burst of unknown kinds costs one query.
    reading: tokio::sync::Mutex<()>,
}

impl Kinds {
    /// Kinds announced on `amqp_prefix` by runners heard from within `grace`.
    pub fn new(amqp_prefix: &str, grace: Duration) -> Self {
        Self {
            amqp_prefix: amqp_prefix.to_owned(),
            grace,
            snapshot: RwLock::new(None),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Reads the announced kinds again. On failure the last snapshot stays.
    pub async fn refresh(&self, pool: &Pool) -> Result<(), String> {
        let _reading = self.reading.lock().await;
        self.read(pool).await
    }

    /// A snapshot whose reading began after `since`: the current one if it
    /// is, else one read now (one reading at a time, spaced by
    /// [`FRESH_READ_SPACING`]). On failure, the last snapshot.
    async fn fresh_since(&self, pool: &Pool, since: Instant) -> Option<Arc<Snapshot>> {
        let _reading = self.reading.lock().await;
        if let Some(s) = self.current()
            && s.read_at >= since
        {
            return Some(s);
        }
        if let Some(s) = self.current() {
            let next = s.read_at + FRESH_READ_SPACING;
            tokio::time::sleep_until(next.into()).await;
        }
        if let Err(e) = self.read(pool).await {
            tracing::debug!(error = %e, "reading the served kinds failed; using the last reading");
        }
        self.current()
    }

    async fn read(&self, pool: &Pool) -> Result<(), String> {
        let started = Instant::now();
        let specs = {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            sluice_store::kinds::served(&**client, &self.amqp_prefix, self.grace)
                .await
                .map_err(|e| e.to_string())?
        };
        self.install_read_at(specs, started);
        Ok(())
    }

    /// Makes `specs` the snapshot, reusing the compiled schemas that did
    /// not change. A schema that does not compile leaves its kind out.
    pub fn install(&self, specs: Vec<KindSpec>) {
        self.install_read_at(specs, Instant::now());
    }

    fn install_read_at(&self, specs: Vec<KindSpec>, read_at: Instant) {
        let previous = self.current();
        let mut kinds = BTreeMap::new();
        for spec in specs {
            let kept = previous
                .as_ref()
                .and_then(|p| p.kinds.get(&spec.name))
                .filter(|old| old.spec.args_schema == spec.args_schema)
                .map(|old| old.validator.clone());
            let validator = match kept {
                Some(v) => v,
                None => match jsonschema::validator_for(&spec.args_schema) {
                    Ok(v) => Arc::new(v),
                    Err(e) => {
                        tracing::warn!(kind = %spec.name, error = %e,
                            "a runner announced a kind whose args_schema does not compile; refusing it");
                        continue;
                    }
                },
            };
            kinds.insert(spec.name.clone(), Served { spec, validator });
        }
        let snapshot = Arc::new(Snapshot { kinds, read_at });
        if let Ok(mut slot) = self.snapshot.write() {
            *slot = Some(snapshot);
        }
    }

    /// The kinds admitted now, by name, from a reading that began after
    /// this call (see [`FRESH_READ_SPACING`]); `None` while the database
    /// has never answered.
    pub async fn list_fresh(&self, pool: &Pool) -> Option<Vec<KindSpec>> {
        self.fresh_since(pool, Instant::now())
            .await
            .map(|s| s.kinds.values().map(|k| k.spec.clone()).collect())
    }

    /// The kinds admitted now, by name; `None` before the first reading.
    pub fn list(&self) -> Option<Vec<KindSpec>> {
        self.current()
            .map(|s| s.kinds.values().map(|k| k.spec.clone()).collect())
    }

    /// Checks `kind` and `args`; a kind missing from the snapshot is looked
    /// up again in a reading that began after this call.
    pub async fn admit(
        &self,
        pool: &Pool,
        kind: &KindName,
        args: &RawValue,
    ) -> Result<(), Refusal> {
        let arrived = Instant::now();
        let snapshot = match self.current() {
            Some(s) if s.kinds.contains_key(kind) => s,
            _ => self
                .fresh_since(pool, arrived)
                .await
                .ok_or_else(|| Refusal::NotLoaded("the database has not answered".into()))?,
        };
        let Some(served) = snapshot.kinds.get(kind) else {
            return Err(Refusal::UnknownKind(kind.to_string()));
        };
        let validator = served.validator.clone();
        if args.get().len() <= INLINE_ARGS_BYTES {
            validate(&validator, args.get())
        } else {
            let text = args.get().to_owned();
            tokio::task::spawn_blocking(move || validate(&validator, &text))
                .await
                .unwrap_or_else(|e| Err(Refusal::BadArgs(format!("validating args failed: {e}"))))
        }
    }
}

/// Validates `args` (JSON text) against `validator`; the refusal names the
/// first offending field by JSON pointer, with the value masked so the
/// message never echoes the client's input beyond the field's name.
pub fn validate(validator: &jsonschema::Validator, args: &str) -> Result<(), Refusal> {
    let value: serde_json::Value = serde_json::from_str(args)
        .map_err(|e| Refusal::BadArgs(format!("args are not JSON: {e}")))?;
    match validator.validate(&value) {
        Ok(()) => Ok(()),
        Err(e) => {
            let path = e.instance_path().to_string();
            let field = if path.is_empty() {
                "args".to_owned()
            } else {
                format!("args{path}")
            };
            Err(Refusal::BadArgs(sluice_proto::bounded_message(format!(
                "`{field}`: {}",
                e.masked()
            ))))
        }
    }
}

/// Reads the kinds every [`REFRESH_EVERY`] until `shutdown`.
pub async fn keep_fresh(
    kinds: Arc<Kinds>,
    pool: Pool,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        if let Err(e) = kinds.refresh(&pool).await {
            tracing::debug!(error = %e, "reading the served kinds failed; keeping the last reading");
        }
        tokio::select! {
            _ = tokio::time::sleep(REFRESH_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sleep_spec() -> KindSpec {
        KindSpec {
            name: KindName::parse("sleep").unwrap(),
            description: "sleeps".into(),
            args_schema: serde_json::to_value(schemars::schema_for!(sluice_proto::job::SleepArgs))
                .unwrap(),
            timeout_ms: 1_000,
        }
    }

    fn refusal(kinds: &Kinds, args: &str) -> Option<Refusal> {
        let snapshot = kinds.current().unwrap();
        let served = snapshot.kinds.get("sleep").unwrap();
        validate(&served.validator, args).err()
    }

    #[test]
    fn args_are_checked_against_the_schema_and_the_field_is_named() {
        let kinds = Kinds::new("p", Duration::from_secs(1));
        kinds.install(vec![sleep_spec()]);
        assert_eq!(refusal(&kinds, r#"{"ms": 5}"#), None);
        let too_long = refusal(&kinds, r#"{"ms": 86400001}"#).unwrap().to_string();
        assert!(too_long.starts_with("`args/ms`:"), "{too_long}");
        assert!(
            !too_long.contains("86400001"),
            "values are masked: {too_long}"
        );
        let missing = refusal(&kinds, r#"{}"#).unwrap().to_string();
        assert!(missing.contains("ms"), "{missing}");
        let wrong = refusal(&kinds, r#"{"ms": "x"}"#).unwrap().to_string();
        assert!(wrong.starts_with("`args/ms`:"), "{wrong}");
        assert!(refusal(&kinds, "[").is_some());
    }

    #[test]
    fn refusals_stay_short_whatever_the_input() {
        let kinds = Kinds::new("p", Duration::from_secs(1));
        let mut spec = sleep_spec();
        spec.args_schema = json!({"type": "object", "additionalProperties": false});
        kinds.install(vec![spec]);
        let key = "k".repeat(100_000);
        let message = refusal(&kinds, &format!(r#"{{"{key}": 1}}"#))
            .unwrap()
            .to_string();
        assert!(
            message.len() <= sluice_proto::MAX_ERROR_MESSAGE_BYTES + 8,
            "{}",
            message.len()
        );
    }

    #[test]
    fn a_schema_that_does_not_compile_leaves_its_kind_out() {
        let kinds = Kinds::new("p", Duration::from_secs(1));
        let mut bad = sleep_spec();
        bad.name = KindName::parse("broken").unwrap();
        bad.args_schema = json!({"type": 12});
        kinds.install(vec![sleep_spec(), bad]);
        let names: Vec<String> = kinds
            .list()
            .unwrap()
            .into_iter()
            .map(|k| k.name.to_string())
            .collect();
        assert_eq!(names, ["sleep"]);
    }

    #[test]
    fn an_unchanged_schema_keeps_its_compiled_validator() {
        let kinds = Kinds::new("p", Duration::from_secs(1));
        kinds.install(vec![sleep_spec()]);
        let first = kinds.current().unwrap().kinds["sleep"].validator.clone();
        kinds.install(vec![sleep_spec()]);
        let second = kinds.current().unwrap().kinds["sleep"].validator.clone();
        assert!(Arc::ptr_eq(&first, &second));
    }
}
