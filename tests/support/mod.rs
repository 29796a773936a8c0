//! Test support for the local stack: start or attach to one, and hand out clients for the real
//! Kubernetes API server, moto (through the real AWS SDK) and Prometheus.

#![allow(dead_code)]

pub mod alb;
pub mod aws_proxy;
pub mod cbor;
pub mod controller;
#[macro_use]
pub mod harness;
pub mod lambda;
pub mod load_balancer_controller;
pub mod registrar;
pub mod scene;
pub mod server;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use prost::Message;

/// A running local stack (see `e2e/stack`).
pub struct Stack {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub aws_endpoint: String,
    pub prometheus_url: String,
    /// PATH with the stack's kubectl, helm and kwokctl first.
    pub path: String,
    env: BTreeMap<String, String>,
    owned: bool,
    stopped: std::sync::atomic::AtomicBool,
}

impl Drop for Stack {
    /// A test binary that panics before its own `down` still stops what it started.
    fn drop(&mut self) {
        self.down();
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Stack {
    /// Attaches to the stack named by `SLUICE_STACK_DIR` (from `eval "$(e2e/stack up)"`), or
    /// starts one that `down` stops again.
    pub fn start_or_attach() -> Stack {
        Self::start_or_attach_with(&["SLUICE_STACK_DIR", "KUBECONFIG", "AWS_ENDPOINT_URL", "PROMETHEUS_URL"], &[])
    }

    /// The same with a node that runs real containers (`e2e/stack up --real-node`); an attached
    /// stack must have one.
    pub fn start_or_attach_with_real_node() -> Stack {
        Self::start_or_attach_with(
            &["SLUICE_STACK_DIR", "KUBECONFIG", "AWS_ENDPOINT_URL", "PROMETHEUS_URL", "SLUICE_HOST_IP"],
            &["--real-node"],
        )
    }

    fn start_or_attach_with(exports: &[&str], up_args: &[&str]) -> Stack {
        let attached = exports.iter().all(|k| std::env::var(k).is_ok());
        if attached {
            let env: BTreeMap<String, String> = std::env::vars().collect();
            return Self::from_env(env, false);
        }
        eprintln!("starting a local stack (e2e/stack up {})", up_args.join(" "));
        let output = Command::new(repo().join("e2e/stack")).arg("up").args(up_args).output().expect("e2e/stack runs");
        assert!(output.status.success(), "e2e/stack up failed:\n{}", String::from_utf8_lossy(&output.stderr));
        let env = parse_exports(&String::from_utf8_lossy(&output.stdout));
        Self::from_env(env, true)
    }

    fn from_env(env: BTreeMap<String, String>, owned: bool) -> Stack {
        let get = |k: &str| env.get(k).cloned().unwrap_or_else(|| panic!("the stack exports no {k}"));
        Stack {
            dir: get("SLUICE_STACK_DIR").into(),
            kubeconfig: get("KUBECONFIG").into(),
            aws_endpoint: get("AWS_ENDPOINT_URL"),
            prometheus_url: get("PROMETHEUS_URL"),
            path: get("PATH"),
            env,
            owned,
            stopped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Stops the stack if this process started it.
    pub fn down(&self) {
        if self.owned && !self.stopped.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let status = Command::new(repo().join("e2e/stack")).arg("down").arg(&self.dir).status();
            if !status.is_ok_and(|s| s.success()) {
                eprintln!("e2e/stack down {} failed", self.dir.display());
            }
        }
    }

    /// The host's address as pods on the real node dial it (moto and Prometheus listen there).
    pub fn host_ip(&self) -> &str {
        self.env.get("SLUICE_HOST_IP").map(String::as_str).expect("the stack has a real node (e2e/stack up --real-node)")
    }

    /// A URL of this stack (moto, Prometheus: `http://127.0.0.1:PORT`) as pods on the real node
    /// reach it, at the host's address.
    pub fn url_for_pods(&self, url: &str) -> String {
        let port = url.rsplit(':').next().expect("a URL with a port");
        format!("http://{}:{port}", self.host_ip())
    }

    /// Imports OCI image archives into the real node's containerd.
    pub fn import_images(&self, archives: &[&Path]) {
        let output = Command::new(repo().join("e2e/stack"))
            .arg("import")
            .args(archives)
            .env("SLUICE_STACK_DIR", &self.dir)
            .output()
            .expect("e2e/stack runs");
        assert!(output.status.success(), "e2e/stack import failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }

    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("PATH", &self.path).env("KUBECONFIG", &self.kubeconfig);
        if let Some(cache) = self.env.get("KUBECACHEDIR") {
            command.env("KUBECACHEDIR", cache);
        }
        command
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.command("kubectl").args(args).output().expect("kubectl runs")
    }

    /// `kubectl apply` of a manifest given as text, as a person applies a file.
    pub fn apply(&self, manifest: &str) {
        use std::io::Write;
        let mut child = self
            .command("kubectl")
            .args(["apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child.stdin.take().expect("stdin").write_all(manifest.as_bytes()).expect("manifest written");
        let output = child.wait_with_output().expect("kubectl ends");
        assert!(output.status.success(), "kubectl apply failed: {}\n{manifest}", String::from_utf8_lossy(&output.stderr));
    }

    pub async fn kube(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig reads");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("kubeconfig is valid");
        kube::Client::try_from(config).expect("client builds")
    }

    /// AWS SDK configuration pointed at moto. Retries are off: moto may apply a call and still
    /// answer 500, and a retry would apply it twice.
    pub fn aws(&self) -> aws_config::SdkConfig {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        aws_config::SdkConfig::builder()
            .endpoint_url(&self.aws_endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "stack",
            )))
            .http_client(http)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    /// Calls an EC2 query action on moto directly (the tests need only a VPC and subnets).
    pub async fn ec2(&self, params: &[(&str, &str)]) -> String {
        self.query("ec2", "2016-11-15", params).await
    }

    /// Calls a query-protocol action of `service` (API `version`) on moto directly and returns
    /// the XML answer; fails the test on an error answer.
    pub async fn query(&self, service: &str, version: &str, params: &[(&str, &str)]) -> String {
        let mut form: Vec<(&str, &str)> = vec![("Version", version)];
        form.extend_from_slice(params);
        let credential =
            format!("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0");
        let response = reqwest::Client::new()
            .post(&self.aws_endpoint)
            .header("Authorization", credential)
            .form(&form)
            .send()
            .await
            .expect("moto answers");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{service} {params:?} failed: {body}");
        body
    }

    /// Pushes one sample to Prometheus through its remote-write receiver.
    pub async fn push_sample(&self, metric: &str, labels: &[(&str, &str)], value: f64, timestamp_ms: i64) {
        self.push_series(metric, labels, &[(value, timestamp_ms)]).await;
    }

    /// Pushes samples of one series in one remote write; `(value, timestamp_ms)`, oldest first.
    pub async fn push_series(&self, metric: &str, labels: &[(&str, &str)], samples: &[(f64, i64)]) {
        let mut all = vec![Label { name: "__name__".into(), value: metric.into() }];
        all.extend(labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }));
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let samples = samples.iter().map(|(value, timestamp)| Sample { value: *value, timestamp: *timestamp }).collect();
        let request = WriteRequest { timeseries: vec![TimeSeries { labels: all, samples }] };
        let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).expect("snappy compresses");
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/write", self.prometheus_url))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
            .await
            .expect("prometheus answers");
        let status = response.status();
        assert!(status.is_success(), "remote write refused: {status} {}", response.text().await.unwrap_or_default());
    }
}

fn parse_exports(text: &str) -> BTreeMap<String, String> {
    let inherited_path = std::env::var("PATH").unwrap_or_default();
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| {
            let value = value.trim_matches('\'').replace("\"$PATH\"", &inherited_path).replace("$PATH", &inherited_path);
            (key.to_string(), value)
        })
        .collect()
}

/// Waits until `check` returns `Some`, polling with a deadline; never a bare sleep.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fresh namespace for one test.
pub async fn namespace(client: &kube::Client, prefix: &str) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    let name = format!("{prefix}-{}", std::process::id() % 100_000 + rand_suffix());
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    api.create(&Default::default(), &ns).await.expect("namespace created");
    name
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) * 100_000
}

/// The cache the stack scripts install into.
fn cache_dir() -> PathBuf {
    std::env::var_os("SLUICE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"))
            .join("sluice")
    })
}

/// Where `e2e/image` writes the image archives: `images/` in the cache the stack scripts use.
pub fn images_dir() -> PathBuf {
    cache_dir().join("images")
}

/// The python of the stack's moto environment (`e2e/stack install` makes it), with botocore.
pub fn moto_python() -> PathBuf {
    let installed = std::fs::read_dir(cache_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("moto-")) && p.join("bin/python").is_file());
    installed.expect("moto's environment in the cache (e2e/stack install)").join("bin/python")
}

/// Prints the last `lines` lines of each file in `dir`, where the tests' processes write their logs.
pub fn print_log_tails(dir: &Path, lines: usize) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        eprintln!("--- {} (last lines)", entry.path().display());
        for line in tail.into_iter().rev() {
            eprintln!("{line}");
        }
    }
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[derive(Clone, PartialEq, prost::Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Sample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

/// The text between `open` and `close` in a query-protocol (XML) answer.
pub fn xml_value(text: &str, open: &str, close: &str) -> String {
    let start = text.find(open).map(|i| i + open.len()).unwrap_or_else(|| panic!("no {open} in {text}"));
    let end = text[start..].find(close).map(|i| start + i).unwrap_or_else(|| panic!("no {close} in {text}"));
    text[start..end].to_string()
}
