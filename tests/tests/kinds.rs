//! Open kinds (PROTOCOL.md section 4): runners announce the kinds they
//! serve, `GET /v1/kinds` lists them with their args schemas, and both
//! front doors refuse a kind nothing serves (`unknown_kind`) and args that
//! do not fit the schema (`bad_args`, naming the field) before anything
//! is recorded.

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_jobs::error::JobFailure;
use sluice_jobs::handlers::{Handler, HandlerSpec, Handlers, JobContext};
use sluice_proto::{ErrorCode, EventStatus, KindName, ServerFrame};
use sluice_tests::data::jobs_of;
use sluice_tests::{Client, System, SystemOptions, token, unique_user};

/// A kind of the application's own: adds two integers.
struct AddNumbers;

impl Handler for AddNumbers {
    fn spec(&self) -> HandlerSpec {
        HandlerSpec {
            name: KindName::parse("add_numbers").unwrap(),
            description: "Adds a and b.".into(),
            args_schema: json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
                "additionalProperties": false
            }),
            timeout: Some(Duration::from_secs(7)),
            max_attempts: None,
        }
    }

    fn run<'a>(&'a self, ctx: JobContext<'a, '_>) -> BoxFuture<'a, Result<Value, JobFailure>> {
        Box::pin(async move {
            let args: Value = serde_json::from_str(ctx.job.args.get())
                .map_err(|e| JobFailure::bad_args(e.to_string()))?;
            let sum = args["a"].as_i64().unwrap_or(0) + args["b"].as_i64().unwrap_or(0);
            Ok(json!({ "sum": sum }))
        })
    }
}

fn with_add_numbers() -> Handlers {
    let mut handlers = Handlers::builtin();
    handlers.register(Box::new(AddNumbers));
    handlers
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn names(list: &Value) -> Vec<String> {
    list["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Sends a submit and returns the `error` it is answered with.
async fn refused(client: &mut Client, kind: &str, args: Value) -> (ErrorCode, String) {
    client
        .send(json!({"type": "submit", "ref": "r", "job": {"kind": kind, "args": args}}))
        .await;
    match client.next_frame().await {
        ServerFrame::Error {
            reference,
            code,
            message,
            ..
        } => {
            assert_eq!(reference.as_deref(), Some("r"));
            (code, message)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_kinds_are_listed_run_and_checked_against_their_schemas() {
    let system = System::start(SystemOptions::default().handlers(with_add_numbers)).await;
    let user = unique_user("kinds");

    // Listed, with the schema and the time limit the runner settled on.
    let list = system.kinds(&user).await;
    assert_eq!(names(&list), ["add_numbers", "batch_upsert", "sleep"]);
    let add = &list["kinds"][0];
    assert_eq!(add["description"], "Adds a and b.");
    assert_eq!(add["timeout_ms"], 7_000);
    assert_eq!(add["args_schema"]["required"], json!(["a", "b"]));
    let sleep = &list["kinds"][2];
    assert_eq!(
        sleep["args_schema"]["properties"]["ms"]["maximum"],
        86_400_000
    );
    let anonymous = http()
        .get(system.http_url("/v1/kinds"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // The application's own kind runs end to end.
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&user)).await;
    let job = client
        .submit("a", "add_numbers", json!({"a": 2, "b": 40}))
        .await;
    let events = client.events_until_terminal(job).await;
    let done = events.last().unwrap();
    assert_eq!(done.status, EventStatus::Done);
    assert_eq!(done.result, Some(json!({"sum": 42})));

    // Args checked against the schema, the field named, the value not echoed.
    let secret = "s3cr3t-value";
    let (code, message) = refused(&mut client, "add_numbers", json!({"a": secret, "b": 1})).await;
    assert_eq!(code, ErrorCode::BadArgs);
    assert!(message.contains("args/a"), "{message}");
    assert!(!message.contains(secret), "{message}");
    let (code, message) = refused(&mut client, "add_numbers", json!({"a": 1})).await;
    assert_eq!(code, ErrorCode::BadArgs);
    assert!(message.contains('b'), "{message}");
    let (code, message) = refused(&mut client, "sleep", json!({"ms": 86_400_001u64})).await;
    assert_eq!(code, ErrorCode::BadArgs);
    assert!(message.contains("args/ms"), "{message}");

    // A well-named kind nothing serves, and a name that is no kind.
    let (code, message) = refused(&mut client, "reindex_everything", json!({})).await;
    assert_eq!(code, ErrorCode::UnknownKind);
    assert!(message.contains("reindex_everything"), "{message}");
    let (code, _) = refused(&mut client, "Not A Kind", json!({})).await;
    assert_eq!(code, ErrorCode::UnknownKind);

    // The same over HTTP, for both `run: true` and `run: false`.
    let bearer = format!("Bearer {}", token(&user));
    for run in [true, false] {
        for (body, code, mentions) in [
            (
                json!({"kind": "add_numbers", "args": {"a": 1, "b": "x"}}),
                "bad_args",
                "args/b",
            ),
            (
                json!({"kind": "add_numbers", "args": {"a": 1, "b": 2, "c": 3}}),
                "bad_args",
                "args",
            ),
            (
                json!({"kind": "reindex_everything", "args": {}}),
                "unknown_kind",
                "reindex_everything",
            ),
        ] {
            let mut body = body;
            body["run"] = json!(run);
            let response = http()
                .post(system.http_url("/v1/jobs"))
                .header("authorization", &bearer)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
            let answer: Value = response.json().await.unwrap();
            assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains(mentions), "{body}: {message}");
        }
    }
    let created = http()
        .post(system.http_url("/v1/jobs"))
        .header("authorization", &bearer)
        .json(&json!({"kind": "add_numbers", "args": {"a": 1, "b": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    // Only the two good submissions were recorded.
    assert_eq!(jobs_of(&user).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_admits_only_the_kinds_of_its_own_runners() {
    let custom = System::start(SystemOptions::default().handlers(with_add_numbers)).await;
    let plain = System::start(SystemOptions::default()).await;
    let user = unique_user("kinds-prefix");
    assert!(names(&custom.kinds(&user).await).contains(&"add_numbers".to_owned()));
    assert_eq!(names(&plain.kinds(&user).await), ["batch_upsert", "sleep"]);
    let (mut client, _) = Client::hello(&plain.ws_url(), &token(&user)).await;
    let (code, _) = refused(&mut client, "add_numbers", json!({"a": 1, "b": 2})).await;
    assert_eq!(code, ErrorCode::UnknownKind);
    assert_eq!(jobs_of(&user).await, 0);

    // A kind announced a moment ago is admitted at once: the gateway reads
    // the announcements again rather than refusing from its last reading.
    let spec = with_add_numbers()
        .specs(&Default::default())
        .into_iter()
        .find(|s| s.name.as_str() == "add_numbers")
        .unwrap();
    plain.announce_kinds(&[spec]).await;
    client
        .submit("now", "add_numbers", json!({"a": 1, "b": 2}))
        .await;
    assert_eq!(jobs_of(&user).await, 1);
}

/// A killed runner's kinds stay admitted for `gateway.kind_grace_secs`
/// (jobs wait in the queue for its restart), then are refused until a
/// runner announces them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_runners_kinds_are_refused_after_the_grace_and_back_with_a_new_runner() {
    let grace = Duration::from_secs(3);
    let mut system = System::start(
        SystemOptions::default()
            .processes()
            .gateway("SLUICE_GATEWAY__KIND_GRACE_SECS", grace.as_secs())
            .runner("SLUICE_RUNNER__KINDS_HEARTBEAT_MS", 500),
    )
    .await;
    let user = unique_user("kinds-grace");
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&user)).await;

    system.kill_runner();
    let killed = Instant::now();
    // Within the grace: admitted, and it waits in the queue.
    let waiting = client.submit("w", "sleep", json!({"ms": 1})).await;
    assert!(killed.elapsed() < grace, "the submit took the whole grace");

    // Past it: refused, and no longer listed. Until then each try is
    // admitted (and waits in the queue too).
    loop {
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "sleep never refused"
        );
        client
            .send(
                json!({"type": "submit", "ref": "t", "job": {"kind": "sleep", "args": {"ms": 1}}}),
            )
            .await;
        match client.next_frame().await {
            ServerFrame::Accepted { .. } => tokio::time::sleep(Duration::from_millis(250)).await,
            ServerFrame::Error { code, .. } => {
                assert_eq!(code, ErrorCode::UnknownKind);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        killed.elapsed() >= grace,
        "refused before the grace ran out"
    );
    assert_eq!(names(&system.kinds(&user).await), Vec::<String>::new());

    // A new runner announces them again and runs what waited.
    system.start_runner();
    let events = client.events_until_terminal(waiting).await;
    assert_eq!(events.last().unwrap().status, EventStatus::Done);
    // (Events of the jobs admitted while waiting for the refusal may
    // arrive before the answer.)
    client
        .send(
            json!({"type": "submit", "ref": "again", "job": {"kind": "sleep", "args": {"ms": 1}}}),
        )
        .await;
    let again = loop {
        match client.next_frame().await {
            ServerFrame::Accepted { job_id, .. } => break job_id,
            ServerFrame::Event(_) => {}
            other => panic!("{other:?}"),
        }
    };
    let events = client.events_until_terminal(again).await;
    assert_eq!(events.last().unwrap().status, EventStatus::Done);
}
