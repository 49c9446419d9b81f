//! Starting and stopping real gateway, runner and nginx processes.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

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
    /// Gateway instances (default 1).
    pub gateways: usize,
    /// Put nginx (from `deploy/nginx/nginx.conf.template`) in front of the gateways.
    pub nginx: bool,
}

impl SystemOptions {
    /// Adds a gateway setting.
    pub fn gateway(mut self, key: &str, value: impl ToString) -> Self {
        self.gateway_env.push((key.into(), value.to_string()));
        self
    }
    /// Adds a runner setting.
    pub fn runner(mut self, key: &str, value: impl ToString) -> Self {
        self.runner_env.push((key.into(), value.to_string()));
        self
    }
}

/// One gateway process and its port (kept across restarts).
struct Gateway {
    port: u16,
    child: Option<Child>,
    starts: u32,
}

/// Gateways, (optionally) a runner and nginx, on a private AMQP prefix.
/// Everything is killed when dropped.
pub struct System {
    pub prefix: String,
    /// The first gateway's port.
    pub port: u16,
    logs: PathBuf,
    options: SystemOptions,
    gateways: Vec<Gateway>,
    runner: Option<Child>,
    runner_starts: u32,
    /// Where the runner serves `/metrics`.
    pub runner_metrics_port: u16,
    nginx: Option<(u16, Child)>,
}

static SYSTEMS: AtomicU32 = AtomicU32::new(0);

impl System {
    /// Starts the gateways, the runner and nginx as asked, and waits until
    /// every gateway is ready.
    pub async fn start(options: SystemOptions) -> System {
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
            .map(|_| Gateway {
                port: free_port(),
                child: None,
                starts: 0,
            })
            .collect();
        let mut system = System {
            prefix,
            port: gateways[0].port,
            logs,
            options,
            gateways,
            runner: None,
            runner_starts: 0,
            runner_metrics_port: free_port(),
            nginx: None,
        };
        for i in 0..system.gateways.len() {
            system.start_gateway(i);
        }
        if !system.options.no_runner {
            system.start_runner();
        }
        for i in 0..system.gateways.len() {
            system.wait_ready(i).await;
        }
        if system.options.nginx {
            system.start_nginx();
            let port = system.nginx_port();
            crate::eventually(Duration::from_secs(10), "nginx to answer", || async move {
                (http_status_at(port, "/readyz").await == Some(200)).then_some(())
            })
            .await;
        }
        system
    }

    fn command(
        &self,
        name: &str,
        log: &str,
        listen_port: u16,
        extra: &[(String, String)],
    ) -> Child {
        let out = File::create(self.logs.join(log)).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(binary(name));
        cmd.env("SLUICE_AMQP__PREFIX", &self.prefix)
            .env("SLUICE_AUTH__JWT_SECRET", TEST_SECRET)
            .env("SLUICE_GATEWAY__LISTEN", format!("127.0.0.1:{listen_port}"))
            .env("SLUICE_LOG__FILTER", "info,sluice_gateway=debug")
            .env_remove("SLUICE_CONFIG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"))
    }

    fn start_gateway(&mut self, i: usize) {
        let gateway = &self.gateways[i];
        let log = format!("gateway{i}-{}.log", gateway.starts + 1);
        let child = self.command(
            "sluice-gateway",
            &log,
            gateway.port,
            &self.options.gateway_env.clone(),
        );
        let gateway = &mut self.gateways[i];
        gateway.starts += 1;
        gateway.child = Some(child);
    }

    /// Starts (or restarts) the runner.
    pub fn start_runner(&mut self) {
        self.runner_starts += 1;
        let log = format!("runner-{}.log", self.runner_starts);
        // The runner ignores the gateway's listen address; its own metrics
        // port is private to this system.
        let mut env = vec![(
            "SLUICE_RUNNER__METRICS_LISTEN".to_owned(),
            format!("127.0.0.1:{}", self.runner_metrics_port),
        )];
        env.extend(self.options.runner_env.clone());
        let child = self.command("sluice-jobs", &log, 1, &env);
        self.runner = Some(child);
    }

    /// Kills the runner with SIGKILL: no cleanup, no acks, no goodbye.
    pub fn kill_runner(&mut self) {
        if let Some(mut child) = self.runner.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM to the first gateway (graceful drain).
    pub fn terminate_gateway(&self) {
        terminate(self.gateways[0].child.as_ref());
    }

    /// Sends SIGTERM to the runner (finish or hand back, then exit).
    pub fn terminate_runner(&self) {
        terminate(self.runner.as_ref());
    }

    /// Waits up to `patience` for the first gateway to exit; its exit code.
    pub async fn gateway_exit(&mut self, patience: Duration) -> Option<i32> {
        wait_exit(&mut self.gateways[0].child, patience).await
    }

    /// The process id of gateway `i`.
    pub fn gateway_pid(&self, i: usize) -> u32 {
        self.gateways[i]
            .child
            .as_ref()
            .map(Child::id)
            .expect("gateway is running")
    }

    /// Kills gateway `i` with SIGKILL: no drain, no goodbye.
    pub fn kill_gateway(&mut self, i: usize) {
        if let Some(mut child) = self.gateways[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts gateway `i` again on its port (after [`System::kill_gateway`])
    /// and waits until it is ready.
    pub async fn start_gateway_again(&mut self, i: usize) {
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
        terminate(self.gateways[i].child.as_ref());
        let code = wait_exit(&mut self.gateways[i].child, Duration::from_secs(30)).await;
        assert_eq!(code, Some(0), "gateway {i} did not drain and exit 0");
        self.start_gateway(i);
        self.wait_ready(i).await;
    }

    /// Waits until gateway `i` answers `/readyz` with 200.
    pub async fn wait_ready(&mut self, i: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let port = self.gateways[i].port;
        loop {
            let exited = self.gateways[i]
                .child
                .as_mut()
                .and_then(|g| g.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "gateway {i} exited with {status} before becoming ready; see {}",
                    self.logs.display()
                );
            }
            if http_status_at(port, "/readyz").await == Some(200) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway {i} not ready after 60 s; see {}",
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
        let port = free_port();
        let upstreams: String = self
            .gateways
            .iter()
            .map(|g| format!("server 127.0.0.1:{} max_fails=1 fail_timeout=1s;\n", g.port))
            .collect();
        let conf = template
            .replace("@PREFIX@", &dir.display().to_string())
            .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
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
        self.nginx = Some((port, child));
    }

    /// nginx's port; panics if the system has no nginx.
    pub fn nginx_port(&self) -> u16 {
        self.nginx
            .as_ref()
            .map(|(p, _)| *p)
            .expect("this system has no nginx")
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

    /// Where this system's logs are.
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

impl Drop for System {
    fn drop(&mut self) {
        if let Some((_, nginx)) = self.nginx.as_mut() {
            // SIGKILL would leave its workers running (and holding the
            // port); on SIGTERM the master stops them before it exits.
            terminate(Some(&*nginx));
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while std::time::Instant::now() < deadline && matches!(nginx.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let gateways = self.gateways.iter_mut().filter_map(|g| g.child.as_mut());
        let others = [self.runner.as_mut(), self.nginx.as_mut().map(|(_, c)| c)];
        for child in gateways.chain(others.into_iter().flatten()) {
            let _ = child.kill();
            let _ = child.wait();
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
    }
}

/// The database URL the binaries use (same default, same override).
pub fn database_url() -> String {
    std::env::var("SLUICE_DATABASE__URL")
        .unwrap_or_else(|_| "postgres://sluice:sluice@127.0.0.1:55432/sluice".into())
}

/// A direct database connection, for assertions.
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

fn binary(name: &str) -> PathBuf {
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

/// The AMQP URL the binaries use (same default, same override).
pub fn amqp_url() -> String {
    std::env::var("SLUICE_AMQP__URL")
        .unwrap_or_else(|_| "amqp://sluice:sluice@127.0.0.1:55672/%2f".into())
}

/// Deletes the durable queues and exchanges a test system declared, so
/// repeated runs do not pile them up on the broker.
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
    let queues = [topology.jobs_queue.clone(), topology.dead_queue.clone()];
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

async fn wait_exit(child: &mut Option<Child>, patience: Duration) -> Option<i32> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let status = child.as_mut()?.try_wait().ok().flatten();
        if let Some(status) = status {
            *child = None;
            return status.code();
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
