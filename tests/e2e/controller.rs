//! The installed chart and controller processes running under its ServiceAccount.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::support::controller::ControllerProcess;
use crate::support::{Stack, path_str, print_log_tails, repo};

pub const RELEASE_NAMESPACE: &str = "sluice-system";
const SERVICE_ACCOUNT: &str = "sluice-controller";
/// Every controller of these tests checks for drift at this interval (`--drift-check-interval`),
/// as an operator who turns it on would, so every test runs under the checks.
pub const DRIFT_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Harness {
    pub stack: Stack,
    /// A kubeconfig that authenticates as the chart's ServiceAccount.
    pub kubeconfig: PathBuf,
    processes: Mutex<Vec<(String, ControllerProcess)>>,
    log_dir: PathBuf,
    /// CloudWatch for the controllers: moto does not speak the SDK's CBOR protocol (see `cbor.rs`).
    pub cloudwatch: crate::support::server::Server,
    /// The real AWS Load Balancer Controller, for the Rollouts that go through Ingresses.
    pub load_balancer_controller: crate::support::load_balancer_controller::LoadBalancerController,
    /// Lambda functions the controllers invoke (`AWS_ENDPOINT_URL_LAMBDA`): [`HOOK_FUNCTION`].
    pub lambda: crate::support::lambda::LambdaFunctions,
}

/// The Lambda function every e2e controller can invoke, run by the runtime interface emulator.
pub const HOOK_FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:e2e-hook";

impl Harness {
    /// Starts or attaches to the stack, installs the chart and starts the controller `main`.
    pub async fn install() -> Harness {
        let stack = Stack::start_or_attach();
        let chart = repo().join("charts/sluice");
        // No controller pods: kwok nodes run nothing. The controller runs here, as the ServiceAccount.
        let installed = stack
            .command("helm")
            .args([
                "upgrade",
                "--install",
                "sluice",
                path_str(&chart),
                "--namespace",
                RELEASE_NAMESPACE,
                "--create-namespace",
                "--set",
                "replicas=0",
            ])
            .output()
            .expect("helm runs");
        assert!(installed.status.success(), "helm install failed: {}", String::from_utf8_lossy(&installed.stderr));
        let token = stack.kubectl(&["create", "token", SERVICE_ACCOUNT, "-n", RELEASE_NAMESPACE, "--duration=2h"]);
        assert!(token.status.success(), "token: {}", String::from_utf8_lossy(&token.stderr));
        let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
        let admin = stack.kubectl(&["config", "view", "--raw", "--flatten", "--minify", "-o", "json"]);
        let admin: serde_json::Value = serde_json::from_slice(&admin.stdout).expect("admin kubeconfig");
        let cluster = admin["clusters"][0]["cluster"].clone();
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "sluice",
            "clusters": [{"name": "stack", "cluster": cluster}],
            "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
            "contexts": [{"name": "sluice", "context": {"cluster": "stack", "user": SERVICE_ACCOUNT}}],
        });
        let path = stack.dir.join("sluice-controller.kubeconfig");
        std::fs::write(&path, serde_json::to_string(&kubeconfig).unwrap()).unwrap();
        let log_dir =
            std::env::var_os("SLUICE_E2E_LOGS").map(std::path::PathBuf::from).unwrap_or_else(|| stack.dir.join("controller-logs"));
        std::fs::create_dir_all(&log_dir).unwrap();
        let cloudwatch = crate::support::cbor::bridge(&stack.aws_endpoint).await;
        let load_balancer_controller = crate::support::load_balancer_controller::LoadBalancerController::start(&stack);
        let lambda = crate::support::lambda::LambdaFunctions::start(&stack, &[HOOK_FUNCTION]).await;
        let processes = Mutex::new(Vec::new());
        let harness = Harness { stack, kubeconfig: path, processes, log_dir, cloudwatch, load_balancer_controller, lambda };
        harness.start("main", &[]);
        harness
    }

    /// Starts a controller process under the chart's identity; `name` labels its log.
    pub fn start(&self, name: &str, extra: &[&str]) -> u32 {
        self.start_with_aws(name, extra, &self.stack.aws_endpoint)
    }

    /// Starts a controller that reaches AWS at `aws_endpoint` (a fault-injecting proxy).
    pub fn start_with_aws(&self, name: &str, extra: &[&str], aws_endpoint: &str) -> u32 {
        let log = self.log_dir.join(format!("{name}.log"));
        let env = [
            ("POD_NAMESPACE", RELEASE_NAMESPACE),
            ("POD_NAME", name),
            ("RUST_LOG", "info,kube_lease_manager=warn"),
            ("AWS_ENDPOINT_URL_CLOUDWATCH", self.cloudwatch.address.as_str()),
            ("AWS_ENDPOINT_URL_LAMBDA", self.lambda.endpoint.as_str()),
        ];
        let interval = format!("{}s", DRIFT_CHECK_INTERVAL.as_secs());
        let args: Vec<&str> = ["--drift-check-interval", interval.as_str()].into_iter().chain(extra.iter().copied()).collect();
        let process = ControllerProcess::start(env!("CARGO_BIN_EXE_sluice").as_ref(), &self.kubeconfig, aws_endpoint, &log, &args, &env);
        let pid = process.pid();
        self.processes.lock().unwrap().push((name.to_string(), process));
        pid
    }

    /// The port of /healthz, /readyz and /metrics of the controller process called `name`.
    pub fn metrics_port(&self, name: &str) -> Option<u16> {
        self.processes.lock().unwrap().iter().rev().find(|(n, _)| n == name).map(|(_, p)| p.metrics_port)
    }

    /// The text of the /metrics endpoint of the controller process called `name`.
    pub async fn metrics(&self, name: &str) -> String {
        let port = self.processes.lock().unwrap().iter().rev().find(|(n, _)| n == name).map(|(_, p)| p.metrics_port).expect("running");
        let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.expect("the controller serves /metrics");
        response.text().await.unwrap()
    }

    /// The /metrics text of the controller process called `name`, or `None` while it does not answer.
    pub async fn try_metrics(&self, name: &str) -> Option<String> {
        let port = self.processes.lock().unwrap().iter().rev().find(|(n, _)| n == name).map(|(_, p)| p.metrics_port)?;
        let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.ok()?;
        response.text().await.ok()
    }

    /// Whether the controller process called `name` answers /readyz with 200.
    pub async fn ready(&self, name: &str) -> bool {
        let Some(port) = self.processes.lock().unwrap().iter().rev().find(|(n, _)| n == name).map(|(_, p)| p.metrics_port) else {
            return false;
        };
        reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.is_ok_and(|r| r.status().is_success())
    }

    /// What the controller processes called `name` have logged so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// SIGKILLs the controller process called `name`.
    pub fn kill(&self, name: &str) {
        self.processes.lock().unwrap().retain(|(n, _)| n != name);
    }

    pub fn stop_all(&self) {
        self.processes.lock().unwrap().clear();
    }

    /// After the last test: the controllers, then the stack if this process started it.
    pub fn tear_down(&self) {
        self.stop_all();
        self.load_balancer_controller.stop();
        self.lambda.stop();
        self.stack.down();
    }

    pub fn dump_log(&self) {
        print_log_tails(&self.log_dir, 15);
    }
}

impl Drop for Harness {
    /// Controller processes never outlive the tests, even when the harness panics.
    fn drop(&mut self) {
        self.stop_all();
    }
}
