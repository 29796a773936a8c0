//! The real `sluice` binary's logs when stdout is not a terminal (a pipe, as under a container
//! runtime): `--log-format json` gives one JSON object per line, text gives plain lines, and
//! neither holds an ANSI escape code.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A kubeconfig naming an API server on a local port nothing listens on.
fn unreachable_kubeconfig(dir: &std::path::Path) -> std::path::PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = dir.join("kubeconfig");
    let config = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": format!("http://127.0.0.1:{port}")}}],
        "users": [{"name": "nobody", "user": {"token": "x"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "nobody"}}],
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first `wanted` lines the controller writes to a piped stdout while it cannot reach the
/// API server (it starts, then logs every failed watch).
fn controller_lines(format: &str, wanted: usize) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("sluice-logging-{format}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["controller", "--log-format", format, "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", unreachable_kubeconfig(&dir))
        .env("RUST_LOG", "info")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("SLUICE_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sluice starts");
    let mut child = Stopped(child);
    let stdout = child.0.stdout.take().unwrap();
    let (sender, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while seen.len() < wanted {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("only {} log lines within 30 s: {seen:#?}", seen.len()),
        }
    }
    drop(child);
    let _ = reader.join();
    let _ = std::fs::remove_dir_all(&dir);
    seen
}

#[test]
fn json_logs_are_one_object_per_line_without_escape_codes() {
    let lines = controller_lines("json", 3);
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "an escape code in {line:?}");
        let event: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(event["level"].is_string() && event["timestamp"].is_string(), "no level or timestamp: {line}");
    }
    let start: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(start["fields"]["message"], "starting the controller", "the first line says the controller starts: {}", lines[0]);
    assert_eq!(start["level"], "INFO");
}

#[test]
fn text_logs_to_a_pipe_have_no_escape_codes() {
    let lines = controller_lines("text", 3);
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "an escape code in {line:?}");
        assert!(serde_json::from_str::<serde_json::Value>(line).is_err(), "a text line is not JSON: {line}");
    }
    assert!(lines[0].contains("INFO") && lines[0].contains("starting the controller"), "{}", lines[0]);
}
