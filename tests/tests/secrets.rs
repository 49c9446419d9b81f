//! What may face a network: the gateway refuses to start on the public
//! development secret or a short one, and development mode (which signs
//! tokens for anyone) refuses any address but loopback. Each refusal is one
//! line naming the setting, and the process exits non-zero before it
//! listens or touches a dependency.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_tests::system::bin_dir;

/// Runs `sluice-gateway` with only these settings (the environment's
/// `SLUICE_*` removed) and returns its exit code and output; a gateway
/// still running after 4 s is killed and reported as `None`.
fn gateway_with(settings: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(bin_dir().join("sluice-gateway"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SLUICE_") {
            cmd.env_remove(key);
        }
    }
    // A port nothing listens on: a gateway that got past its checks would
    // wait for the database, never serve.
    cmd.env("SLUICE_DATABASE__URL", "postgres://nobody@127.0.0.1:9/none")
        .envs(settings.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("starting sluice-gateway");
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > Duration::from_secs(4) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (code, text)
}

#[test]
fn the_gateway_refuses_to_start_on_the_development_secret() {
    let (code, out) = gateway_with(&[("SLUICE_GATEWAY__LISTEN", "127.0.0.1:0")]);
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}: {out}");
    assert!(
        out.contains("auth.jwt_secret") && out.contains("public development secret"),
        "{out}"
    );
    assert_eq!(out.trim().lines().count(), 1, "one clear line: {out}");
}

#[test]
fn the_gateway_refuses_a_secret_shorter_than_32_bytes() {
    let (code, out) = gateway_with(&[
        ("SLUICE_GATEWAY__LISTEN", "127.0.0.1:0"),
        ("SLUICE_AUTH__JWT_SECRET", "only-twenty-bytes!!!"),
    ]);
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}: {out}");
    assert!(out.contains("is 20 bytes; at least 32"), "{out}");
}

#[test]
fn development_mode_refuses_to_listen_beyond_loopback() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let (code, out) = gateway_with(&[
            ("SLUICE_GATEWAY__LISTEN", listen),
            ("SLUICE_GATEWAY__DEV_MODE", "true"),
        ]);
        assert!(
            matches!(code, Some(c) if c != 0),
            "{listen}: exit {code:?}: {out}"
        );
        assert!(
            out.contains("gateway.dev_mode") && out.contains("loopback"),
            "{listen}: {out}"
        );
    }
}

/// The refusals are not a gateway that cannot start at all: with a real
/// secret it gets past its checks (and then waits for the database).
#[test]
fn a_real_secret_passes_the_checks() {
    let (code, out) = gateway_with(&[
        ("SLUICE_GATEWAY__LISTEN", "127.0.0.1:0"),
        (
            "SLUICE_AUTH__JWT_SECRET",
            "a-real-secret-of-more-than-32-bytes!",
        ),
    ]);
    assert_eq!(
        code, None,
        "it should still be waiting for the database: {out}"
    );
    assert!(!out.contains("auth.jwt_secret"), "{out}");
}
