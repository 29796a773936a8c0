//! The stack with the CRDs applied, the plugin run as a process, controllers started per test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::Rollout;

use crate::support::controller::ControllerProcess;
use crate::support::{Stack, path_str, print_log_tails, repo, wait_for};

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-sluice");

pub struct World {
    pub stack: Stack,
    controllers: Mutex<Vec<(String, ControllerProcess)>>,
    log_dir: PathBuf,
}

/// What a run of the plugin left behind.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_code(&self, expected: i32, what: &str) -> &Self {
        assert_eq!(self.code, Some(expected), "{what}: exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

impl World {
    /// Starts or attaches to the stack and applies the CRDs.
    pub async fn install() -> World {
        let stack = Stack::start_or_attach();
        let crds = repo().join("crds");
        let applied = stack.kubectl(&["apply", "-f", path_str(&crds)]);
        assert!(applied.status.success(), "kubectl apply -f crds/: {}", String::from_utf8_lossy(&applied.stderr));
        for crd in ["rollouts.sluice.dev", "analysisruns.sluice.dev"] {
            // `kubectl wait` fails on a CRD whose status is not written yet: poll instead.
            wait_for(&format!("CRD {crd} established"), Duration::from_secs(60), || {
                let jsonpath = "jsonpath={.status.conditions[?(@.type==\"Established\")].status}";
                let output = stack.kubectl(&["get", "crd", crd, "-o", jsonpath]);
                let established = output.status.success() && output.stdout == b"True";
                async move { established.then_some(()) }
            })
            .await;
        }
        let log_dir = stack.dir.join("plugin-test-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        World { stack, controllers: Mutex::new(Vec::new()), log_dir }
    }

    /// The plugin as kubectl would run it: the kubeconfig from the environment, flags after.
    pub fn plugin_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(PLUGIN);
        command.env("KUBECONFIG", &self.stack.kubeconfig).args(args);
        command
    }

    pub fn plugin(&self, args: &[&str]) -> Run {
        let output = self.plugin_command(args).output().expect("kubectl-sluice runs");
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `kubectl sluice ARGS -n NAMESPACE`.
    pub fn plugin_in(&self, namespace: &str, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["-n", namespace]);
        self.plugin(&all)
    }

    /// Starts the plugin in the background, its output in a file; stopped by pid on drop.
    pub fn spawn_plugin(&self, namespace: &str, args: &[&str], log: &str) -> Background {
        let path = self.log_dir.join(log);
        let stdout = std::fs::File::create(&path).unwrap();
        let child = self
            .plugin_command(args)
            .args(["-n", namespace])
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl-sluice starts");
        Background { child, stdout: path }
    }

    /// A controller that acts in `namespace` only, so other tests' hand-written statuses stay.
    pub fn start_controller(&self, namespace: &str) -> u32 {
        let log = self.log_dir.join(format!("controller-{namespace}.log"));
        let pod = format!("plugin-test-{namespace}");
        let process = ControllerProcess::start(
            env!("CARGO_BIN_EXE_sluice").as_ref(),
            &self.stack.kubeconfig,
            &self.stack.aws_endpoint,
            &log,
            &["--namespace", namespace],
            &[("POD_NAME", &pod), ("RUST_LOG", "info")],
        );
        let pid = process.pid();
        self.controllers.lock().unwrap().push((namespace.to_string(), process));
        pid
    }

    pub fn stop_controller(&self, namespace: &str) {
        self.controllers.lock().unwrap().retain(|(n, _)| n != namespace);
    }

    pub fn stop_controllers(&self) {
        self.controllers.lock().unwrap().clear();
    }

    /// After the last test: the controllers, then the stack if this process started it.
    pub fn tear_down(&self) {
        self.stop_controllers();
        self.stack.down();
    }

    pub fn dump_logs(&self) {
        print_log_tails(&self.log_dir, 40);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop_controllers();
    }
}

/// A plugin process running in the background, killed by pid if still running on drop.
pub struct Background {
    child: Child,
    stdout: PathBuf,
}

impl Background {
    /// Waits until the process has printed `text`.
    pub async fn wait_for_output(&self, text: &str, deadline: Duration) {
        wait_for(&format!("{text:?} in {}", self.stdout.display()), deadline, || {
            let printed = std::fs::read_to_string(&self.stdout).unwrap_or_default().contains(text);
            async move { printed.then_some(()) }
        })
        .await;
    }

    /// Waits for the process to exit; its code and output.
    pub async fn finish(mut self, deadline: Duration, what: &str) -> Run {
        let status = wait_for(what, deadline, || {
            let exited = self.child.try_wait().expect("try_wait");
            async move { exited }
        })
        .await;
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            use std::io::Read;
            let _ = pipe.read_to_string(&mut stderr);
        }
        Run { code: status.code(), stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(), stderr }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A Kubernetes canary Rollout named `name` running `image` in container `web`.
pub fn rollout(name: &str, image: &str, replicas: i32, strategy: Value) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "workload": {"kubernetes": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                    {"name": "web", "image": image, "ports": [{"containerPort": 8080}]},
                    {"name": "log", "image": "fluent:1"}
                ]}}
            }},
            "strategy": strategy
        }
    }))
    .unwrap()
}

pub fn canary() -> Value {
    json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}})
}

pub async fn create(client: &kube::Client, namespace: &str, rollout: &Rollout) -> Rollout {
    let api: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), rollout).await.expect("rollout created")
}

/// Writes a status as the controller would, for tests that run no controller.
pub async fn write_status(client: &kube::Client, namespace: &str, name: &str, status: Value) -> Rollout {
    let api: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"status": status});
    let params = PatchParams { field_manager: Some("test-controller".into()), ..Default::default() };
    api.patch_status(name, &params, &Patch::Merge(&patch)).await.expect("status written")
}

pub async fn get(client: &kube::Client, namespace: &str, name: &str) -> Rollout {
    Api::<Rollout>::namespaced(client.clone(), namespace).get(name).await.expect("rollout exists")
}
