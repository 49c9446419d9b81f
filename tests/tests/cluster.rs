//! A three-node RabbitMQ cluster (`deploy/cluster.sh`, quorum queues
//! replicated over the three): the gateway and the runner are given all
//! three nodes in `amqp.url`. With a session submitting and pinging, the
//! node that leads the jobs queue is SIGKILLed and later started again:
//! no accepted job is lost or run twice, the sessions stay open, and
//! submissions succeed again within 10 s of the kill.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_proto::{EventStatus, ServerFrame};
use sluice_tests::client::Received;
use sluice_tests::counting::Executions;
use sluice_tests::system::db;
use sluice_tests::{Client, System, SystemOptions, token, unique_user};
use uuid::Uuid;

/// Runs `deploy/cluster.sh ARGS` and returns its standard output.
fn cluster(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/cluster.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .expect("running deploy/cluster.sh");
    assert!(
        out.status.success(),
        "cluster.sh {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The cluster, started for the test and stopped when it ends (pass or
/// fail), so the rest of the suite does not share the machine with it.
struct Cluster;

impl Cluster {
    /// Starts three nodes from nothing: a cluster brought back from an
    /// earlier run's state was seen to leave a node unable to start
    /// (RabbitMQ wants the node that stopped last to start first).
    fn start() -> Cluster {
        let _ = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/cluster.sh"))
            .arg("stop")
            .status();
        let state = std::env::var("SLUICE_STATE_DIR").unwrap_or_else(|_| "/var/tmp/sluice".into());
        let _ = std::fs::remove_dir_all(std::path::Path::new(&state).join("rabbit-cluster"));
        cluster(&["start"]);
        Cluster
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/cluster.sh"))
            .arg("stop")
            .status();
    }
}

/// What one submit got.
enum Answer {
    Accepted(Uuid),
    Refused,
}

/// Sends a submit and waits for its answer, keeping every event that
/// arrives meanwhile.
async fn submit(
    client: &mut Client,
    reference: &str,
    events: &mut HashMap<Uuid, Vec<EventStatus>>,
) -> Answer {
    client
        .send(json!({ "type": "submit", "ref": reference, "job": { "kind": "sleep", "args": { "ms": 100 } } }))
        .await;
    loop {
        match client.receive(Duration::from_secs(15)).await {
            Received::Frame(ServerFrame::Accepted {
                reference: r,
                job_id,
            }) if r == reference => return Answer::Accepted(job_id),
            Received::Frame(ServerFrame::Error {
                reference: Some(r), ..
            }) if r == reference => return Answer::Refused,
            Received::Frame(ServerFrame::Event(e)) => {
                if e.status != EventStatus::Progress {
                    events.entry(e.job_id).or_default().push(e.status);
                }
            }
            Received::Frame(_) => {}
            Received::Closed(code) => panic!("the session closed ({code:?})"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_jobs_queue_leader_loses_and_duplicates_nothing() {
    let _cluster = Cluster::start();
    let urls = cluster(&["urls"]).trim().to_owned();
    let executions = Executions::new().await;
    let handlers = executions.clone();
    let system = System::start(
        SystemOptions::default()
            .handlers(move || handlers.handlers())
            .gateway("SLUICE_AMQP__URL", &urls)
            .runner("SLUICE_AMQP__URL", &urls)
            .gateway("SLUICE_AMQP__PUBLISH_TIMEOUT_MS", 2000),
    )
    .await;
    let user = unique_user("cluster");
    let (mut client, _) = Client::hello(&system.ws_url(), &token(&user)).await;
    let (mut watcher, _) = Client::hello(&system.ws_url(), &token(&unique_user("watch"))).await;
    let mut events: HashMap<Uuid, Vec<EventStatus>> = HashMap::new();
    // Queues that have existed a while, with their replicas in place.
    let Answer::Accepted(warm) = submit(&mut client, "warm", &mut events).await else {
        panic!("the warm-up job was refused");
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let leader = cluster(&["leader", &format!("{}.jobs", system.prefix)]);
    let node = leader
        .trim()
        .strip_prefix("sluice-c")
        .and_then(|rest| rest.chars().next())
        .filter(|n| ('1'..='3').contains(n))
        .unwrap_or_else(|| panic!("leader: {leader}"))
        .to_string();

    let mut accepted = vec![warm];
    let mut refused = 0;
    let started = Instant::now();
    let mut killed_at: Option<Instant> = None;
    let mut back_after_kill: Option<Duration> = None;
    let mut restart: Option<tokio::task::JoinHandle<String>> = None;
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(40) {
        if killed_at.is_none() && started.elapsed() >= Duration::from_secs(5) {
            cluster(&["kill-node", &node]);
            killed_at = Some(Instant::now());
        }
        if restart.is_none() && killed_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(15)) {
            let node = node.clone();
            restart = Some(tokio::task::spawn_blocking(move || {
                cluster(&["start-node", &node])
            }));
        }
        i += 1;
        match submit(&mut client, &format!("j{i}"), &mut events).await {
            Answer::Accepted(job) => {
                accepted.push(job);
                if let (Some(t), None) = (killed_at, back_after_kill) {
                    back_after_kill = Some(t.elapsed());
                }
            }
            Answer::Refused => refused += 1,
        }
        watcher.ping(i).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The other user's session lived through the kill. (Checked here: left
    // unread through the waits below, it would be closed for silence after
    // two heartbeats, as it should.)
    watcher.ping(0).await;
    drop(watcher);
    if let Some(restart) = restart {
        restart.await.expect("restarting the node");
    }
    let back = back_after_kill.expect("no submission succeeded after the kill");
    assert!(
        back < Duration::from_secs(10),
        "submissions back after {back:?}"
    );

    // Every accepted job ends once, done, executed once.
    let deadline = Instant::now() + Duration::from_secs(90);
    while accepted.iter().any(|job| {
        !events
            .get(job)
            .is_some_and(|s| s.iter().any(|s| s.is_terminal()))
    }) {
        assert!(Instant::now() < deadline, "jobs without a terminal event");
        match client.receive(Duration::from_secs(90)).await {
            Received::Frame(ServerFrame::Event(e)) if e.status != EventStatus::Progress => {
                events.entry(e.job_id).or_default().push(e.status);
            }
            Received::Frame(_) => {}
            Received::Closed(code) => panic!("the session closed ({code:?})"),
        }
    }
    // Anything late, a second terminal event included, arrives now or never.
    while let Some(Received::Frame(frame)) = client.try_receive(Duration::from_secs(5)).await {
        if let ServerFrame::Event(e) = frame
            && e.status != EventStatus::Progress
        {
            events.entry(e.job_id).or_default().push(e.status);
        }
    }
    let db = db().await;
    for job in &accepted {
        let terminal: Vec<EventStatus> = events[job]
            .iter()
            .copied()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [EventStatus::Done],
            "job {job}: {:?}",
            events[job]
        );
        assert_eq!(executions.started(*job), 1, "job {job} executions begun");
        assert_eq!(executions.committed(*job).await, 1, "job {job} effects");
        let row = db
            .query_one(
                "SELECT status, (SELECT count(*) FROM events e
                                 WHERE e.job_id = j.id AND e.status = 'done')
                 FROM jobs j WHERE id = $1",
                &[job],
            )
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, String>(0), row.get::<_, i64>(1)),
            ("done".to_owned(), 1),
            "job {job}"
        );
    }
    eprintln!(
        "cluster: {} accepted, {refused} refused, submissions back {back:?} after the kill of node {node}",
        accepted.len()
    );
}
