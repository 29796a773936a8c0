//! Sluice as users run it: the chart installed with the controller's own image onto a node that
//! runs real containers (containerd, a kubelet, kube-proxy and CNI; see e2e/lib/real-node.sh),
//! rolling out a real service whose error rate, scraped by Prometheus from its pods, decides.
//!
//! Needs the images `e2e/image` builds (e2e/test-all builds them first). Starts its own stack
//! with a real node unless one is attached through the environment
//! (`eval "$(e2e/stack up --real-node)"`). The tests run in the order listed: the first installs
//! the chart, the last uninstalls it.

#[path = "../support/mod.rs"]
mod support;

mod canary;
mod install;

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use support::Stack;

pub const RELEASE: &str = "sluice";
pub const RELEASE_NAMESPACE: &str = "sluice-system";

/// Whether the kubelet reports the pod Ready (its readiness probe passes).
pub fn ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The stack and the image archives the tests run.
pub struct Cluster {
    pub stack: Stack,
    pub images: PathBuf,
}

impl Cluster {
    pub fn image(&self, name: &str) -> PathBuf {
        self.images.join(format!("{name}.tar"))
    }

    /// `kubectl apply` of a manifest given as text.
    pub fn apply(&self, manifest: &str) {
        use std::io::Write;
        let mut child = self
            .stack
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

    pub fn helm(&self, args: &[&str]) -> Output {
        self.stack.command("helm").args(args).output().expect("helm runs")
    }

    /// What the tests print when one fails: the controller pods and their last log lines.
    fn diagnose(&self) {
        for args in [
            vec!["get", "pods", "-A", "-o", "wide"],
            vec!["logs", "-n", RELEASE_NAMESPACE, "-l", "app.kubernetes.io/name=sluice", "--tail=40", "--prefix"],
        ] {
            let output = self.stack.kubectl(&args);
            eprintln!(
                "$ kubectl {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

fn main() -> std::process::ExitCode {
    let all = tests![
        install::the_chart_runs_the_image_and_elects_a_leader,
        canary::a_canary_on_real_pods_is_decided_by_their_scraped_error_rate,
        canary::a_revision_that_never_becomes_ready_is_held_then_aborted,
        install::upgrade_to_a_chart_with_a_changed_crd_field_applies_it,
        install::deleting_the_leader_pod_hands_over_within_the_lease,
        install::uninstall_removes_everything_but_the_crds,
    ];
    let images = support::images_dir();
    for name in ["sluice", "demo-app"] {
        let archive = images.join(format!("{name}.tar"));
        assert!(archive.exists(), "{} is missing: run e2e/image first", archive.display());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let stack = Stack::start_or_attach_with_real_node();
    let cluster = Arc::new(Cluster { stack, images });
    cluster.stack.import_images(&[&cluster.image("sluice"), &cluster.image("demo-app")]);
    let (passed, failed) = support::run_tests(&runtime, cluster.clone(), all, Cluster::diagnose);
    cluster.stack.down();
    support::summary("cluster", passed, failed)
}
