//! Several gateways behind nginx: a user's sessions on different gateways
//! all get the user's events, and a rolling restart of every gateway while
//! clients run jobs loses nothing and repeats nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_proto::{EventStatus, ServerFrame};
use sluice_tests::client::Received;
use sluice_tests::{Client, System, SystemOptions, token, unique_user};
use uuid::Uuid;

fn two_gateways() -> SystemOptions {
    SystemOptions {
        gateways: 2,
        nginx: true,
        ..Default::default()
    }
    .gateway("SLUICE_GATEWAY__DRAIN_SPREAD_MS", 1000)
    .gateway("SLUICE_GATEWAY__DRAIN_GRACE_MS", 5000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_sessions_on_different_gateways_all_get_the_events() {
    let system = System::start(two_gateways()).await;
    let alice = unique_user("alice");
    let (mut on_a, _) = Client::hello(&system.gateway_ws_url(0), &token(&alice)).await;
    let (mut on_b, _) = Client::hello(&system.gateway_ws_url(1), &token(&alice)).await;
    let (mut via_nginx, _) = Client::hello(&system.nginx_ws_url(), &token(&alice)).await;
    let (mut bob, _) = Client::hello(&system.gateway_ws_url(1), &token(&unique_user("bob"))).await;

    // The operations endpoints are not served through the public entry;
    // the API and /healthz are, and each gateway still serves /metrics and
    // /readyz on its own port.
    let status = |port: u16, path: &'static str| async move {
        sluice_tests::system::http_status_at(port, path).await
    };
    let nginx = system.nginx_port();
    assert_eq!(status(nginx, "/metrics").await, Some(404));
    assert_eq!(status(nginx, "/readyz").await, Some(404));
    assert_eq!(status(nginx, "/healthz").await, Some(200));
    assert_eq!(status(system.port, "/readyz").await, Some(200));
    assert_eq!(status(system.port, "/metrics").await, Some(200));

    let job = via_nginx.submit("n", "sleep", json!({ "ms": 20 })).await;
    let seen = via_nginx.events_until_terminal(job).await;
    assert_eq!(
        Client::statuses(&seen),
        [EventStatus::Running, EventStatus::Done]
    );
    assert_eq!(
        on_a.events_until_terminal(job).await,
        seen,
        "gateway A session"
    );
    assert_eq!(
        on_b.events_until_terminal(job).await,
        seen,
        "gateway B session"
    );
    // And a job started on gateway B reaches the session on gateway A.
    let job_b = on_b.submit("b", "sleep", json!({ "ms": 20 })).await;
    let seen_b = on_b.events_until_terminal(job_b).await;
    assert_eq!(on_a.events_until_terminal(job_b).await, seen_b);
    if let Some(received) = bob.try_receive(Duration::from_millis(500)).await {
        panic!("another user received {received:?}");
    }
}

/// A client that reconnects through nginx and resumes, as a real one would.
struct Resuming {
    url: String,
    token: String,
    client: Client,
    last_seq: u64,
    seqs: Vec<u64>,
    terminal: HashMap<Uuid, Vec<EventStatus>>,
    reconnects: u32,
}

impl Resuming {
    async fn connect(url: String, token: String) -> Self {
        let (client, _) = Client::hello(&url, &token).await;
        Self {
            url,
            token,
            client,
            last_seq: 0,
            seqs: Vec::new(),
            terminal: HashMap::new(),
            reconnects: 0,
        }
    }

    /// Submits, riding out a reconnect if the gateway drains meanwhile.
    async fn submit(&mut self, reference: &str, ms: u64) -> Uuid {
        loop {
            self.client
                .send(json!({ "type": "submit", "ref": reference, "job": { "kind": "sleep", "args": { "ms": ms } } }))
                .await;
            loop {
                match self.client.receive(Duration::from_secs(30)).await {
                    Received::Frame(ServerFrame::Accepted {
                        reference: r,
                        job_id,
                    }) if r == reference => return job_id,
                    Received::Frame(frame) => self.record(frame),
                    Received::Closed(_) => {
                        self.reconnect().await;
                        break; // not accepted: submit again on the new connection
                    }
                }
            }
        }
    }

    fn record(&mut self, frame: ServerFrame) {
        match frame {
            ServerFrame::Event(e) if e.seq > 0 => {
                self.seqs.push(e.seq);
                self.last_seq = e.seq;
                if e.status.is_terminal() {
                    self.terminal.entry(e.job_id).or_default().push(e.status);
                }
            }
            ServerFrame::Event(_) | ServerFrame::Pong { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn reconnect(&mut self) {
        self.reconnects += 1;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut client) = Client::connect_with(&self.url, &[]).await {
                client
                    .send(json!({ "type": "hello", "token": self.token, "resume": { "session": "s", "after": self.last_seq } }))
                    .await;
                if let Received::Frame(ServerFrame::Welcome { resumed, .. }) =
                    client.receive(Duration::from_secs(10)).await
                {
                    assert!(resumed, "history must reach back across a restart");
                    self.client = client;
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "could not reconnect through nginx"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads until every job in `jobs` has ended, reconnecting as needed.
    async fn until_all_ended(&mut self, jobs: &[Uuid]) {
        while !jobs.iter().all(|j| self.terminal.contains_key(j)) {
            match self.client.receive(Duration::from_secs(60)).await {
                Received::Frame(frame) => self.record(frame),
                Received::Closed(_) => self.reconnect().await,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_nginx_loses_and_repeats_nothing() {
    // Restarts gateway processes with SIGTERM.
    let mut system = System::start(two_gateways().processes()).await;
    let url = system.nginx_ws_url();
    let mut tasks = Vec::new();
    for c in 0..20u64 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Resuming::connect(url, token(&unique_user(&format!("roll{c}")))).await;
            let mut jobs = Vec::new();
            // 5 jobs per client, 100 in all, spread over the restart window.
            for j in 0..5u64 {
                jobs.push(
                    client
                        .submit(&format!("c{c}j{j}"), 300 + (c * 7 + j * 13) % 900)
                        .await,
                );
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            client.until_all_ended(&jobs).await;
            (jobs, client)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    system.restart_gateway(0).await;
    system.restart_gateway(1).await;
    let restart = started.elapsed();

    let mut reconnects = 0;
    let mut lost = 0;
    for task in tasks {
        let (jobs, client) = task.await.unwrap();
        reconnects += client.reconnects;
        assert!(
            client.seqs.windows(2).all(|w| w[0] < w[1]),
            "seqs repeat or go back: {:?}",
            client.seqs
        );
        for job in &jobs {
            match client.terminal.get(job).map(Vec::as_slice) {
                Some([EventStatus::Done]) => {}
                Some(other) => panic!("job {job} ended {other:?}"),
                None => lost += 1,
            }
        }
    }
    eprintln!(
        "rolling restart of 2 gateways took {restart:?}; {reconnects} reconnects; {lost} events lost"
    );
    assert_eq!(lost, 0);
    assert!(
        reconnects >= 10,
        "the restart should have moved most clients: {reconnects}"
    );
}
