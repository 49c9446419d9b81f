//! Starting and stopping the system under test: gateways and a runner,
//! in-process (the default) or as processes of the real binaries, and
//! nginx in front of them when asked.

use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sluice_gateway::{GatewayError, GatewayHandle};
use sluice_jobs::{RunError, RunnerHandle};
use tokio_postgres::NoTls;

use crate::TEST_SECRET;

/// Settings a test may change; everything else is the binaries' default.
#[derive(Debug, Clone, Default)]
pub struct SystemOptions {
    /// Extra `SLUICE_*` settings for the gateways (name, value).
    pub gateway_env: Vec<(String, String)>,
    /// Extra `SLUICE_*` settings for the runner.
    pub runner_env: Vec<(String, String)>,
    /// Start without a runner (jobs wait in the queue).
    pub no_runner: bool,
    /// The runner binary for `processes` (default `sluice-jobs`), e.g. a
    /// deployment's own runner such as `sluice-example`.
    pub runner_binary: Option<String>,
    /// A configuration file for the runner (TOML text), e.g. declared
    /// `[kinds.<name>]`; the `SLUICE_*` settings still apply over it.
    pub runner_file: Option<String>,
    /// Gateway instances (default 1).
    pub gateways: usize,
    /// Put nginx (from `deploy/nginx/nginx.conf.template`) in front of the
    /// gateways, on a plain port and a TLS port with a certificate made for
    /// the test.
    pub nginx: bool,
    /// nginx's per-address API request rate (`limit_req_zone` rate, e.g.
    /// `"2r/s"`); default 1000r/s, which no other test reaches.
    pub nginx_api_rate: Option<String>,
    /// Run the gateways and the runner as processes of the real binaries,
    /// for tests about processes: signals, exit codes, a process's memory
    /// or its own metrics endpoint. Otherwise they run in this process
    /// ([`sluice_gateway::Gateway::start`], [`sluice_jobs::JobRunner::start`]),
    /// each on a runtime of its own as in its binary. `SLUICE_E2E_PROCESSES=1`
    /// sets it for every test (to time the release binaries with
    /// `SLUICE_BIN_DIR`, say).
    pub processes: bool,
    /// Builds the in-process runner's handlers instead of the built-in
    /// ones (each runner start calls it once); not for `processes`.
    pub handlers: Option<HandlerFactory>,
}

/// Builds a runner's handlers: see [`SystemOptions::handlers`].
#[derive(Clone)]
pub struct HandlerFactory(
    pub std::sync::Arc<dyn Fn() -> sluice_jobs::handlers::Handlers + Send + Sync>,
);

impl std::fmt::Debug for HandlerFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandlerFactory")
    }
}

impl SystemOptions {
    /// Adds a gateway setting.
    pub fn gateway(mut self, key: &str, value: impl ToString) -> Self {
        self.gateway_env.push((key.into(), value.to_string()));
        self
    }
    /// Gives the runner this configuration file (TOML text).
    pub fn runner_file(mut self, toml: &str) -> Self {
        self.runner_file = Some(toml.to_owned());
        self
    }
    /// Adds a runner setting.
    pub fn runner(mut self, key: &str, value: impl ToString) -> Self {
        self.runner_env.push((key.into(), value.to_string()));
        self
    }
    /// Runs the in-process runner with the handlers `build` makes (see
    /// [`SystemOptions::handlers`]).
    pub fn handlers(
        mut self,
        build: impl Fn() -> sluice_jobs::handlers::Handlers + Send + Sync + 'static,
    ) -> Self {
        self.handlers = Some(HandlerFactory(std::sync::Arc::new(build)));
        self
    }
    /// Sets nginx's per-address API request rate (see
    /// [`SystemOptions::nginx_api_rate`]).
    pub fn nginx_api_rate(mut self, rate: &str) -> Self {
        self.nginx_api_rate = Some(rate.into());
        self
    }
    /// Runs the gateways and the runner as processes (see
    /// [`SystemOptions::processes`]).
    pub fn processes(mut self) -> Self {
        self.processes = true;
        self
    }
}

/// A gateway or a runner: a process of its binary, or started in-process.
enum Running<H> {
    Process(Child),
    InProcess(InProcess<H>),
}

/// A gateway or runner started in this process, on a runtime of its own
/// (as its binary has one): the test's worker threads, and a clock it may
/// pause, are not the service's, and dropping the runtime ends every task
/// the service spawned.
struct InProcess<H> {
    name: String,
    runtime: tokio::runtime::Runtime,
    handle: H,
}

/// Why an in-process service did not stop cleanly.
#[derive(Debug)]
struct Unclean {
    /// It panicked (which fails the test even from drop).
    panicked: bool,
    /// Which service, and what happened.
    message: String,
}

/// How an in-process service ended.
type Stopped = Result<(), Unclean>;

/// What the harness needs of a gateway or runner handle.
trait Service: Send + 'static {
    /// Begins the graceful stop.
    fn shutdown(&self);
    /// Waits for it to stop.
    fn join(self) -> Pin<Box<dyn Future<Output = Stopped> + Send>>;
}

impl Service for GatewayHandle {
    fn shutdown(&self) {
        GatewayHandle::shutdown(self);
    }
    fn join(self) -> Pin<Box<dyn Future<Output = Stopped> + Send>> {
        Box::pin(async move {
            GatewayHandle::join(self).await.map_err(|e| Unclean {
                panicked: matches!(&e, GatewayError::Task(j) if j.is_panic()),
                message: e.to_string(),
            })
        })
    }
}

impl Service for RunnerHandle {
    fn shutdown(&self) {
        RunnerHandle::shutdown(self);
    }
    fn join(self) -> Pin<Box<dyn Future<Output = Stopped> + Send>> {
        Box::pin(async move {
            RunnerHandle::join(self).await.map_err(|e| Unclean {
                panicked: matches!(&e, RunError::Task(j) if j.is_panic()),
                message: e.to_string(),
            })
        })
    }
}

/// How long [`System`]'s drop waits for an in-process service to stop
/// before it drops its runtime (which ends it as SIGKILL ends a process).
const STOP_PATIENCE: Duration = Duration::from_secs(15);

impl<H: Service> InProcess<H> {
    /// Builds the service's runtime and calls `start` inside it.
    fn start(name: String, worker_threads: usize, start: impl FnOnce() -> H) -> Self {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if worker_threads > 0 {
            builder.worker_threads(worker_threads);
        }
        let runtime = builder
            .thread_name(name.clone())
            .enable_all()
            .build()
            .expect("a runtime for an in-process service");
        let handle = {
            let _inside = runtime.enter();
            start()
        };
        InProcess {
            name,
            runtime,
            handle,
        }
    }

    /// Begins the service's graceful stop and, on a thread of its own (the
    /// caller may be inside the test's runtime, where blocking on another
    /// is not allowed), waits up to `patience` for it to end, then drops its
    /// runtime. Join the thread for the outcome: an error
    /// unless it stopped cleanly in time.
    fn stop(self, patience: Duration) -> std::thread::JoinHandle<Stopped> {
        let InProcess {
            name,
            runtime,
            handle,
        } = self;
        handle.shutdown();
        std::thread::spawn(move || {
            let started = Instant::now();
            let joined =
                runtime.block_on(async { tokio::time::timeout(patience, handle.join()).await });
            runtime.shutdown_timeout(Duration::from_secs(1));
            let outcome = joined.unwrap_or_else(|_| {
                Err(Unclean {
                    panicked: false,
                    message: format!("did not stop within {patience:?}; dropped"),
                })
            });
            outcome
                .map_err(|e| Unclean {
                    message: format!("{name}: {}", e.message),
                    ..e
                })
                .inspect(|()| {
                    let took = started.elapsed();
                    if took > Duration::from_secs(2) {
                        eprintln!("{name} took {took:?} to stop");
                    }
                })
        })
    }
}

/// The outcome when the thread stopping a service itself panicked.
fn stopper_panicked() -> Unclean {
    Unclean {
        panicked: true,
        message: "the thread stopping a service panicked".into(),
    }
}

impl<H> Running<H> {
    /// The child process; panics with `what` if the service runs in-process.
    fn child(&self, what: &str) -> &Child {
        match self {
            Running::Process(child) => child,
            Running::InProcess(_) => needs_processes(what),
        }
    }

    /// The child process; panics with `what` if the service runs in-process.
    fn child_mut(&mut self, what: &str) -> &mut Child {
        match self {
            Running::Process(child) => child,
            Running::InProcess(_) => needs_processes(what),
        }
    }
}

fn needs_processes(what: &str) -> ! {
    panic!(
        "{what} needs the system's services to be processes: \
         start it with SystemOptions::default().processes()"
    )
}

/// One gateway and its port (kept across restarts).
struct Gateway {
    port: u16,
    /// For a gateway process: a socket bound to `port` (with
    /// `SO_REUSEPORT`, as the gateway binds it, and never listening), held
    /// as long as the system lives. No other program can take the port in
    /// the moment between choosing it and the gateway binding it, or while
    /// the gateway restarts; and it never receives a connection.
    _reservation: Option<socket2::Socket>,
    /// For an in-process gateway: its listener, until it is started.
    listener: Option<TcpListener>,
    running: Option<Running<GatewayHandle>>,
    starts: u32,
}

/// Gateways, (optionally) a runner and nginx, on a private AMQP prefix.
/// Everything is stopped when dropped: processes are killed, in-process
/// services shut down and joined, and a panic of an in-process gateway or
/// runner fails the test there.
pub struct System {
    /// The AMQP prefix private to this system (its queues and exchanges).
    pub prefix: String,
    /// The first gateway's port.
    pub port: u16,
    logs: PathBuf,
    options: SystemOptions,
    gateways: Vec<Gateway>,
    runner: Option<Running<RunnerHandle>>,
    runner_starts: u32,
    /// Where a runner process serves `/metrics` (none in-process).
    runner_metrics_port: Option<u16>,
    nginx: Option<Nginx>,
}

/// nginx in front of the gateways.
struct Nginx {
    port: u16,
    tls_port: u16,
    /// The authority (PEM) that signed the certificate of its TLS port.
    ca: PathBuf,
    child: Child,
}

static SYSTEMS: AtomicU32 = AtomicU32::new(0);

impl System {
    /// Starts the gateways, the runner and nginx as asked, and waits until
    /// every gateway is ready.
    pub async fn start(mut options: SystemOptions) -> System {
        // Custom handlers exist only in this process.
        options.processes |= options.handlers.is_none()
            && std::env::var_os("SLUICE_E2E_PROCESSES").is_some_and(|v| v == "1");
        let n = SYSTEMS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!(
            "t{}x{n}x{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let logs = bin_dir()
            .parent()
            .unwrap_or(Path::new("."))
            .join("e2e-logs")
            .join(&prefix);
        std::fs::create_dir_all(&logs).expect("log folder");
        let gateways: Vec<Gateway> = (0..options.gateways.max(1))
            .map(|_| {
                let (port, reservation, listener) = if options.processes {
                    let (port, reservation) = reserve_port();
                    (port, Some(reservation), None)
                } else {
                    let listener = listen_local();
                    let port = listener.local_addr().expect("a bound listener").port();
                    (port, None, Some(listener))
                };
                Gateway {
                    port,
                    _reservation: reservation,
                    listener,
                    running: None,
                    starts: 0,
                }
            })
            .collect();
        // The runner's metrics exporter binds its port itself, without
        // SO_REUSEPORT, so nothing can hold the port for it: the choice
        // races with other programs, as it always did.
        let runner_metrics_port = options.processes.then(free_port);
        let mut system = System {
            prefix,
            port: gateways[0].port,
            logs,
            options,
            gateways,
            runner: None,
            runner_starts: 0,
            runner_metrics_port,
            nginx: None,
        };
        for i in 0..system.gateways.len() {
            system.start_gateway(i);
        }
        if system.options.no_runner {
            // Jobs are to wait in the queue, so their kinds must be
            // admitted without a runner: announce the built-in ones as a
            // runner that is not there yet would.
            let builtin = sluice_jobs::handlers::Handlers::builtin();
            system
                .announce_kinds(&builtin.specs(&Default::default()))
                .await;
        } else {
            system.start_runner();
            system.wait_for_announced_kinds().await;
        }
        for i in 0..system.gateways.len() {
            system.wait_ready(i).await;
        }
        if system.options.nginx {
            system.start_nginx();
            let port = system.nginx_port();
            crate::eventually(Duration::from_secs(10), "nginx to answer", || async move {
                (http_status_at(port, "/healthz").await == Some(200)).then_some(())
            })
            .await;
        }
        system
    }

    /// The settings every service of this system gets, then `extra`.
    fn settings(&self, listen_port: u16, extra: &[(String, String)]) -> Vec<(String, String)> {
        let mut settings: Vec<(String, String)> = [
            ("SLUICE_AMQP__PREFIX", self.prefix.clone()),
            ("SLUICE_AUTH__JWT_SECRET", TEST_SECRET.to_owned()),
            ("SLUICE_GATEWAY__LISTEN", format!("127.0.0.1:{listen_port}")),
            ("SLUICE_LOG__FILTER", "info,sluice_gateway=debug".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        settings.extend_from_slice(extra);
        settings
    }

    fn command(&self, name: &str, log: &str, settings: &[(String, String)]) -> Child {
        let out = File::create(self.logs.join(log)).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(binary(name));
        cmd.env_remove("SLUICE_CONFIG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in settings {
            cmd.env(k, v);
        }
        cmd.spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"))
    }

    fn start_gateway(&mut self, i: usize) {
        let gateway = &self.gateways[i];
        let mut extra = vec![
            ("SLUICE_AMQP__URL".to_owned(), gateway_amqp_url()),
            ("SLUICE_DATABASE__URL".to_owned(), gateway_database_url()),
        ];
        extra.extend(self.options.gateway_env.iter().cloned());
        let settings = self.settings(gateway.port, &extra);
        let running = if self.options.processes {
            let log = format!("gateway{i}-{}.log", gateway.starts + 1);
            Running::Process(self.command("sluice-gateway", &log, &settings))
        } else {
            let config =
                <sluice_gateway::config::Config as sluice_process::config::Settings>::load_with(
                    None, &settings,
                )
                .unwrap_or_else(|e| panic!("gateway {i} settings: {e}"));
            sluice_process::logs::init(&config.log);
            let listener = self.gateways[i]
                .listener
                .take()
                .expect("an in-process gateway starts once");
            let threads = config.gateway.worker_threads;
            Running::InProcess(InProcess::start(format!("gateway{i}"), threads, || {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a listener for tokio");
                sluice_gateway::Gateway::start(config, listener)
                    .unwrap_or_else(|e| panic!("starting gateway {i}: {e}"))
            }))
        };
        let gateway = &mut self.gateways[i];
        gateway.starts += 1;
        gateway.running = Some(running);
    }

    /// `GET /v1/kinds` as `user`: the kinds this system's gateways admit,
    /// each with its args schema. Panics unless it answers 200.
    pub async fn kinds(&self, user: &str) -> serde_json::Value {
        let response = reqwest::Client::new()
            .get(self.http_url("/v1/kinds"))
            .header("authorization", format!("Bearer {}", crate::token(user)))
            .send()
            .await
            .expect("GET /v1/kinds");
        assert_eq!(response.status(), reqwest::StatusCode::OK, "GET /v1/kinds");
        response.json().await.expect("a JSON kind list")
    }

    /// The kind `name` as `GET /v1/kinds` lists it; panics if it is not.
    pub async fn kind(&self, user: &str, name: &str) -> serde_json::Value {
        let list = self.kinds(user).await;
        list["kinds"]
            .as_array()
            .and_then(|kinds| kinds.iter().find(|k| k["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not listed: {list}"))
    }

    /// Waits until a runner of this system announced its kinds, so the
    /// gateways admit them.
    pub async fn wait_for_announced_kinds(&self) {
        let prefix = self.prefix.clone();
        crate::eventually(
            Duration::from_secs(60),
            "the runner to announce its kinds",
            || {
                let prefix = prefix.clone();
                async move {
                    let row = db()
                        .await
                        .query_one(
                            "SELECT count(*) FROM runner_kinds WHERE amqp_prefix = $1",
                            &[&prefix],
                        )
                        .await
                        .ok()?;
                    (row.get::<_, i64>(0) > 0).then_some(())
                }
            },
        )
        .await;
    }

    /// Announces `kinds` on this system's prefix as a runner of its own
    /// (a fresh id each call), as a runner does at start.
    pub async fn announce_kinds(&self, kinds: &[sluice_proto::KindSpec]) {
        let who = sluice_store::kinds::Announcer {
            runner_id: uuid::Uuid::new_v4(),
            amqp_prefix: self.prefix.clone(),
            heartbeat: Duration::from_secs(5),
        };
        sluice_store::kinds::announce(&db().await, &who, kinds)
            .await
            .expect("announcing kinds");
    }

    /// Starts (or restarts) the runner. One still running is stopped first:
    /// killed if a process, shut down and joined if in-process.
    pub fn start_runner(&mut self) {
        match self.runner.take() {
            Some(Running::Process(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(Running::InProcess(runner)) => {
                let stopped = runner.stop(STOP_PATIENCE).join();
                match stopped.unwrap_or_else(|_| Err(stopper_panicked())) {
                    Err(e) if e.panicked => panic!("in-process {}", e.message),
                    Err(e) => eprintln!("in-process {}", e.message),
                    Ok(()) => {}
                }
            }
            None => {}
        }
        self.runner_starts += 1;
        // A runner process serves its metrics on a port private to this
        // system; one in-process shares the process's recorder and serves
        // none (see sluice_process::metrics). The listen address is the
        // gateway's and ignored.
        let metrics_listen = self
            .runner_metrics_port
            .map(|port| format!("127.0.0.1:{port}"))
            .unwrap_or_default();
        let mut extra = vec![
            ("SLUICE_AMQP__URL".to_owned(), runner_amqp_url()),
            ("SLUICE_DATABASE__URL".to_owned(), runner_database_url()),
            ("SLUICE_RUNNER__METRICS_LISTEN".to_owned(), metrics_listen),
        ];
        extra.extend(self.options.runner_env.iter().cloned());
        let settings = self.settings(1, &extra);
        let file = self.options.runner_file.as_ref().map(|toml| {
            let path = self.logs.join("runner.toml");
            std::fs::write(&path, toml).expect("writing the runner's configuration file");
            path
        });
        let running = if self.options.processes {
            assert!(
                self.options.handlers.is_none(),
                "custom handlers run only in-process"
            );
            let log = format!("runner-{}.log", self.runner_starts);
            let mut settings = settings;
            if let Some(path) = &file {
                settings.push(("SLUICE_CONFIG".into(), path.display().to_string()));
            }
            let binary = self
                .options
                .runner_binary
                .as_deref()
                .unwrap_or("sluice-jobs");
            Running::Process(self.command(binary, &log, &settings))
        } else {
            let config =
                <sluice_jobs::config::Config as sluice_process::config::Settings>::load_with(
                    file.as_deref(),
                    &settings,
                )
                .unwrap_or_else(|e| panic!("runner settings: {e}"));
            sluice_process::logs::init(&config.log);
            let handlers = match &self.options.handlers {
                Some(build) => (build.0)(),
                None => sluice_jobs::handlers::Handlers::builtin(),
            };
            Running::InProcess(InProcess::start("runner".into(), 0, || {
                sluice_jobs::JobRunner::start_with(config, handlers)
                    .unwrap_or_else(|e| panic!("starting the runner: {e}"))
            }))
        };
        self.runner = Some(running);
    }

    /// Kills the runner with SIGKILL: no cleanup, no acks, no goodbye.
    pub fn kill_runner(&mut self) {
        if let Some(mut running) = self.runner.take() {
            let child = running.child_mut("kill_runner");
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM to the first gateway (graceful drain).
    pub fn terminate_gateway(&self) {
        let gateway = self.gateways[0].running.as_ref();
        terminate(gateway.map(|g| g.child("terminate_gateway")));
    }

    /// Sends SIGTERM to the runner (finish or hand back, then exit).
    pub fn terminate_runner(&self) {
        let runner = self.runner.as_ref();
        terminate(runner.map(|r| r.child("terminate_runner")));
    }

    /// Waits up to `patience` for the first gateway to exit; its exit code.
    pub async fn gateway_exit(&mut self, patience: Duration) -> Option<i32> {
        wait_exit(&mut self.gateways[0].running, patience).await
    }

    /// The process id of gateway `i`.
    pub fn gateway_pid(&self, i: usize) -> u32 {
        self.gateways[i]
            .running
            .as_ref()
            .map(|g| g.child("gateway_pid").id())
            .expect("gateway is running")
    }

    /// Sends `signal` (a name `kill` knows: `HUP`, `TERM`, ...) to gateway
    /// `i`'s process; panics if the gateway runs in-process.
    pub fn signal_gateway(&self, i: usize, signal: &str) {
        let pid = self.gateway_pid(i);
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }

    /// Kills gateway `i` with SIGKILL: no drain, no goodbye.
    pub fn kill_gateway(&mut self, i: usize) {
        if let Some(mut running) = self.gateways[i].running.take() {
            let child = running.child_mut("kill_gateway");
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts gateway `i` again on its port (after [`System::kill_gateway`])
    /// and waits until it is ready.
    pub async fn start_gateway_again(&mut self, i: usize) {
        if !self.options.processes {
            needs_processes("start_gateway_again");
        }
        self.start_gateway(i);
        self.wait_ready(i).await;
    }

    /// Waits up to `patience` for the runner to exit; its exit code.
    pub async fn runner_exit(&mut self, patience: Duration) -> Option<i32> {
        wait_exit(&mut self.runner, patience).await
    }

    /// Restarts gateway `i` the way an operator would: SIGTERM, wait for its
    /// drain to finish (it must exit 0), start it again on the same port,
    /// wait until it is ready.
    pub async fn restart_gateway(&mut self, i: usize) {
        let gateway = self.gateways[i].running.as_ref();
        terminate(gateway.map(|g| g.child("restart_gateway")));
        let code = wait_exit(&mut self.gateways[i].running, Duration::from_secs(30)).await;
        assert_eq!(code, Some(0), "gateway {i} did not drain and exit 0");
        self.start_gateway(i);
        self.wait_ready(i).await;
    }

    /// Waits until gateway `i` answers `/readyz` with 200.
    pub async fn wait_ready(&mut self, i: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let port = self.gateways[i].port;
        loop {
            match self.gateways[i].running.as_mut() {
                Some(Running::Process(child)) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "gateway {i} exited with {status} before becoming ready; see {}",
                            self.logs.display()
                        );
                    }
                }
                Some(Running::InProcess(gateway)) if gateway.handle.is_finished() => {
                    let Some(Running::InProcess(gateway)) = self.gateways[i].running.take() else {
                        unreachable!()
                    };
                    let stopped = gateway.stop(STOP_PATIENCE).join();
                    let why = match stopped.unwrap_or_else(|_| Err(stopper_panicked())) {
                        Ok(()) => "it stopped without an error".to_owned(),
                        Err(e) => e.message,
                    };
                    panic!("gateway {i} stopped before becoming ready: {why}");
                }
                _ => {}
            }
            if http_status_at(port, "/readyz").await == Some(200) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway {i} not ready after 60 s; see {} or the test's output",
                self.logs.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn start_nginx(&mut self) {
        let template = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/nginx/nginx.conf.template"
        );
        let template = std::fs::read_to_string(template).expect("nginx template");
        let dir = self.logs.join("nginx");
        std::fs::create_dir_all(&dir).expect("nginx folder");
        // nginx workers run as nobody and write temp files here.
        let _ = Command::new("chmod")
            .args(["-R", "777"])
            .arg(&self.logs)
            .status();
        // nginx binds its port itself (without SO_REUSEPORT), so nothing
        // can hold it for nginx: the choice races with other programs.
        let port = free_port();
        let tls_port = free_port();
        let certificates = TestCertificates::make(&dir);
        let upstreams: String = self
            .gateways
            .iter()
            .map(|g| format!("server 127.0.0.1:{} max_fails=1 fail_timeout=1s;\n", g.port))
            .collect();
        let snippets = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nginx");
        let snippets = std::fs::canonicalize(snippets).expect("deploy/nginx");
        let conf = template
            .replace("@PREFIX@", &dir.display().to_string())
            .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
            .replace("@TLS_LISTEN@", &format!("127.0.0.1:{tls_port}"))
            .replace("@TLS_CERT@", &certificates.cert.display().to_string())
            .replace("@TLS_KEY@", &certificates.key.display().to_string())
            .replace("@SNIPPETS@", &snippets.display().to_string())
            .replace(
                "@API_RATE@",
                self.options.nginx_api_rate.as_deref().unwrap_or("1000r/s"),
            )
            .replace("@UPSTREAM_SERVERS@", &upstreams);
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let out = File::create(dir.join("stdout.log")).expect("log file");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("starting nginx (deploy/provision.sh installs it)");
        self.nginx = Some(Nginx {
            port,
            tls_port,
            ca: certificates.ca,
            child,
        });
    }

    /// nginx's plain-HTTP port; panics if the system has no nginx.
    pub fn nginx_port(&self) -> u16 {
        self.nginx().port
    }

    /// nginx's TLS port; panics if the system has no nginx.
    pub fn nginx_tls_port(&self) -> u16 {
        self.nginx().tls_port
    }

    /// The authority (PEM file) that signed the certificate of nginx's
    /// TLS port: the root a client trusts.
    pub fn nginx_ca(&self) -> &Path {
        &self.nginx().ca
    }

    fn nginx(&self) -> &Nginx {
        self.nginx.as_ref().expect("this system has no nginx")
    }

    /// `ws://` URL of the WebSocket route through nginx.
    pub fn nginx_ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.nginx_port())
    }

    /// `ws://` URL of gateway `i`'s WebSocket route, bypassing nginx.
    pub fn gateway_ws_url(&self, i: usize) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.gateways[i].port)
    }

    /// The status code of a bare `GET path` on the first gateway, or `None`
    /// if nothing answered.
    pub async fn http_status(&self, path: &str) -> Option<u16> {
        http_status_at(self.port, path).await
    }

    /// `ws://` URL of the first gateway's WebSocket route.
    pub fn ws_url(&self) -> String {
        self.gateway_ws_url(0)
    }

    /// `http://` base URL of the first gateway.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `http://` URL of the runner process's `/metrics`. Only a system of
    /// processes has one: a runner in-process serves no metrics of its own.
    pub fn runner_metrics_url(&self) -> String {
        let port = self
            .runner_metrics_port
            .expect("only a runner process serves its own /metrics: use .processes()");
        format!("http://127.0.0.1:{port}/metrics")
    }

    /// Runs `sluice-jobs <args>` against this system (its AMQP prefix) and
    /// returns its standard output; panics if it fails.
    pub fn jobs_cli(&self, args: &[&str]) -> String {
        let output = Command::new(binary("sluice-jobs"))
            .args(args)
            .env("SLUICE_AMQP__PREFIX", &self.prefix)
            .env("SLUICE_LOG__FILTER", "warn")
            .env_remove("SLUICE_CONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("running sluice-jobs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "sluice-jobs {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Where this system's logs are (in-process services log to the test's
    /// output instead).
    pub fn logs(&self) -> &Path {
        &self.logs
    }
}

/// The status code of a bare `GET path` on `port`, or `None` if nothing answered.
pub async fn http_status_at(port: u16, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1)?.parse().ok()
}

impl System {
    /// Stops the system as dropping it does, but awaits the in-process
    /// gateways and runner without blocking the test's runtime, and fails
    /// the test unless each of them drained and stopped cleanly: no error,
    /// no panic, within its patience.
    pub async fn stop(mut self) {
        let stopping = self.stop_services();
        let outcomes = tokio::task::spawn_blocking(move || {
            stopping
                .into_iter()
                .map(|stop| stop.join().unwrap_or_else(|_| Err(stopper_panicked())))
                .collect::<Vec<_>>()
        })
        .await
        .expect("joining the services");
        for outcome in outcomes {
            if let Err(e) = outcome {
                panic!("in-process {}", e.message);
            }
        }
    }

    /// Kills the processes, and begins stopping the in-process services all
    /// at once (each drains while the others do); join the threads returned
    /// for their outcomes.
    fn stop_services(&mut self) -> Vec<std::thread::JoinHandle<Stopped>> {
        let mut stopping = Vec::new();
        let gateways = self.gateways.iter_mut().map(|g| g.running.take());
        for running in gateways.collect::<Vec<_>>() {
            if let Some(Running::InProcess(gateway)) = running {
                stopping.push(gateway.stop(STOP_PATIENCE));
            } else if let Some(Running::Process(mut child)) = running {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        match self.runner.take() {
            Some(Running::InProcess(runner)) => stopping.push(runner.stop(STOP_PATIENCE)),
            Some(Running::Process(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            None => {}
        }
        stopping
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let stopping = self.stop_services();
        let mut panics = Vec::new();
        for stop in stopping {
            match stop.join().unwrap_or_else(|_| Err(stopper_panicked())) {
                Ok(()) => {}
                Err(e) if e.panicked => panics.push(e.message),
                Err(e) => eprintln!("in-process {}", e.message),
            }
        }
        if let Some(Nginx { child: nginx, .. }) = self.nginx.as_mut() {
            // SIGKILL would leave its workers running (and holding the
            // port); on SIGTERM the master stops them before it exits.
            terminate(Some(&*nginx));
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while std::time::Instant::now() < deadline && matches!(nginx.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = nginx.kill();
            let _ = nginx.wait();
        }
        // Drop cannot await; a short-lived runtime on its own thread can.
        let prefix = self.prefix.clone();
        let retry_base_ms = self
            .options
            .runner_env
            .iter()
            .rev()
            .find(|(key, _)| key == "SLUICE_RUNNER__RETRY_DELAY_MS")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(sluice_jobs::config::RunnerConfig::default().retry_delay_ms);
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let outcome = runtime.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    delete_topology(&prefix, retry_base_ms),
                )
                .await
            });
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("could not delete test topology {prefix}: {e}"),
                Err(_) => eprintln!("deleting test topology {prefix} timed out"),
            }
        })
        .join();
        // A panic inside a gateway or runner fails the test, unless it is
        // failing already.
        if !panics.is_empty() && !std::thread::panicking() {
            panic!("in-process service panicked: {}", panics.join("; "));
        }
    }
}

/// The resident memory of process `pid`, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A channel on the test broker, for tests that act as a client of it
/// themselves (publish a poison message, hand deliveries back).
pub async fn broker_channel() -> (lapin::Connection, lapin::Channel) {
    let conn = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .expect("connecting to RabbitMQ");
    let channel = conn.create_channel().await.expect("a channel");
    (conn, channel)
}

/// The database URL the binaries use (same default, same override).
pub fn database_url() -> String {
    std::env::var("SLUICE_DATABASE__URL")
        .unwrap_or_else(|_| "postgres://sluice:sluice@127.0.0.1:25432/sluice".into())
}

/// The gateway's database URL: its own role, which may not write events,
/// outcomes or statuses (`SLUICE_GATEWAY_PG_URL`, from deploy/test.sh).
pub fn gateway_database_url() -> String {
    std::env::var("SLUICE_GATEWAY_PG_URL").unwrap_or_else(|_| {
        database_url().replacen("postgres://sluice:", "postgres://sluice_gateway:", 1)
    })
}

/// The runner's database URL: its own role (`SLUICE_RUNNER_PG_URL`).
pub fn runner_database_url() -> String {
    std::env::var("SLUICE_RUNNER_PG_URL").unwrap_or_else(|_| {
        database_url().replacen("postgres://sluice:", "postgres://sluice_runner:", 1)
    })
}

/// A direct database connection as the owner, for assertions.
pub async fn db() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), NoTls)
        .await
        .expect("connecting to PostgreSQL (did deploy/provision.sh run?)");
    tokio::spawn(connection);
    // Sluice's tables live in their own schema; the demo `items` in `public`.
    client
        .batch_execute("SET search_path = sluice, public")
        .await
        .expect("setting the search path");
    client
}

/// Folder of the binaries under test: `SLUICE_BIN_DIR`, else the target
/// folder this test was built into.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The path of binary `name` under test (see [`bin_dir`]).
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace --bins` (deploy/test.sh does) or set SLUICE_BIN_DIR",
        path.display()
    );
    path
}

/// Runs `deploy/services.sh <args>` (restarts and kills the private
/// PostgreSQL and RabbitMQ for real); panics if it fails.
pub fn services(args: &[&str]) {
    let script = std::env::var("SLUICE_SERVICES_SH").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/services.sh").to_owned()
    });
    let status = Command::new("bash")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(status.success(), "{script} {args:?} failed: {status}");
}

/// Brings the private services back when dropped, so a test that killed
/// one and then failed half-way does not leave the next tests without it.
/// (`start-rabbit` and `start-pg` do nothing to a service that is running.)
pub struct RestoreServices;

impl Drop for RestoreServices {
    fn drop(&mut self) {
        services(&["start-rabbit"]);
        services(&["start-pg"]);
    }
}

/// A RabbitMQ memory alarm, raised for real
/// (`rabbitmqctl set_vm_memory_high_watermark`): the broker stops reading
/// from every publishing connection, so publishes get no confirm. Cleared
/// when dropped, even if the test fails half-way.
pub struct MemoryAlarm;

impl MemoryAlarm {
    /// Raises the alarm and waits until the broker reports it.
    pub async fn raise() -> MemoryAlarm {
        services(&["rabbitmqctl", "set_vm_memory_high_watermark", "0.00001"]);
        crate::eventually(
            Duration::from_secs(10),
            "the memory alarm to be raised",
            || async { alarm_listed().then_some(()) },
        )
        .await;
        MemoryAlarm
    }

    /// Clears the alarm (RabbitMQ's default watermark) and waits until the
    /// broker reports it gone.
    pub async fn clear(self) {
        drop(self);
        crate::eventually(
            Duration::from_secs(10),
            "the memory alarm to clear",
            || async { (!alarm_listed()).then_some(()) },
        )
        .await;
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        services(&["rabbitmqctl", "set_vm_memory_high_watermark", "0.4"]);
    }
}

/// Whether the broker lists a memory alarm.
fn alarm_listed() -> bool {
    let script = std::env::var("SLUICE_SERVICES_SH").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/services.sh").to_owned()
    });
    Command::new("bash")
        .arg(&script)
        .args(["rabbitmqctl", "eval", "rabbit_alarm:get_alarms()."])
        .stdin(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("memory"))
        .unwrap_or(false)
}

/// The gateway's broker URL: its own user, which may not publish to the
/// events exchange (`SLUICE_GATEWAY_AMQP_URL`, from deploy/test.sh).
pub fn gateway_amqp_url() -> String {
    std::env::var("SLUICE_GATEWAY_AMQP_URL").unwrap_or_else(|_| {
        amqp_url().replacen("amqp://sluice:sluice@", "amqp://sluice_gateway:sluice@", 1)
    })
}

/// The runner's broker URL: its own user (`SLUICE_RUNNER_AMQP_URL`).
pub fn runner_amqp_url() -> String {
    std::env::var("SLUICE_RUNNER_AMQP_URL").unwrap_or_else(|_| {
        amqp_url().replacen("amqp://sluice:sluice@", "amqp://sluice_runner:sluice@", 1)
    })
}

/// The operators' AMQP URL (an administrator: the harness deletes each
/// system's queues with it); same default and override as the binaries.
pub fn amqp_url() -> String {
    std::env::var("SLUICE_AMQP__URL")
        .unwrap_or_else(|_| "amqp://sluice:sluice@127.0.0.1:25682/%2f".into())
}

/// Deletes what a test system declared on the shared broker, so that runs
/// of the suite on one machine do not pile up queues (RabbitMQ deletes a
/// missing queue without complaint, so every retry tier the runner may have
/// declared is named).
async fn delete_topology(prefix: &str, retry_base_ms: u64) -> Result<(), lapin::Error> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let conn =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    let topology = sluice_broker::Topology::new(prefix);
    let base = Duration::from_millis(retry_base_ms);
    let retry_tiers = (1..=16).map(|tier| topology.retry_queue(base, tier).0);
    let queues = [
        topology.jobs_queue.clone(),
        topology.dead_queue.clone(),
        topology.settle_queue.clone(),
    ];
    for queue in queues.into_iter().chain(retry_tiers) {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    for exchange in [
        &topology.events_exchange,
        &topology.dead_exchange,
        &topology.control_exchange,
    ] {
        channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await?;
    }
    conn.close(200, "test done".into()).await
}

fn terminate(child: Option<&Child>) {
    if let Some(child) = child {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
}

async fn wait_exit<H>(running: &mut Option<Running<H>>, patience: Duration) -> Option<i32> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let status = running
            .as_mut()?
            .child_mut("waiting for an exit")
            .try_wait();
        if let Ok(Some(status)) = status {
            *running = None;
            return status.code();
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A throwaway certificate authority and a server certificate it signed
/// for 127.0.0.1 and localhost (P-256, valid one day), made with openssl in
/// `dir`.
pub struct TestCertificates {
    /// The authority's certificate (PEM): the one root a client trusts.
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

impl TestCertificates {
    /// Makes them in `dir` (which must exist).
    pub fn make(dir: &Path) -> TestCertificates {
        let ca = dir.join("test-ca.pem");
        let ca_key = dir.join("test-ca-key.pem");
        let cert = dir.join("test-server.pem");
        let key = dir.join("test-server-key.pem");
        let csr = dir.join("test-server.csr");
        let ext = dir.join("test-server.ext");
        std::fs::write(
            &ext,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("extensions file");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-days", "1", "-subj", "/CN=Sluice test CA"])
                .args(ec)
                .arg("-keyout")
                .arg(&ca_key)
                .arg("-out")
                .arg(&ca),
        );
        openssl(
            Command::new("openssl")
                .args(["req", "-new", "-subj", "/CN=127.0.0.1"])
                .args(ec)
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr),
        );
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "1", "-set_serial", "1"])
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(&ca)
                .arg("-CAkey")
                .arg(&ca_key)
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&cert),
        );
        TestCertificates { ca, cert, key }
    }
}

fn openssl(command: &mut Command) {
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("running openssl (deploy/test.sh installs it)");
    assert!(status.success(), "openssl failed: {command:?}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Chooses a free port for a gateway process and holds it: a socket bound
/// to it with `SO_REUSEADDR` and `SO_REUSEPORT`, as the gateway binds its
/// own, that never listens (so it never takes a connection).
fn reserve_port() -> (u16, socket2::Socket) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .and_then(|socket| {
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
            Ok(socket)
        })
        .expect("a port to reserve");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .expect("a bound port");
    (port, socket)
}

/// A listener on `127.0.0.1:0` for an in-process gateway, with the backlog
/// the binary gives its own.
fn listen_local() -> TcpListener {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .and_then(|socket| {
            socket.set_nonblocking(true)?;
            socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
            socket.listen(4096)?;
            Ok(socket)
        })
        .expect("a listener on 127.0.0.1:0");
    socket.into()
}
