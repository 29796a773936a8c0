//! Sluice as users run it: the chart installed with the controller's own image onto a node that
//! runs real containers (containerd, a kubelet, kube-proxy and CNI; see e2e/lib/real-node.sh),
//! rolling out a real service whose error rate, scraped by Prometheus from its pods, decides.
//!
//! Needs the images `e2e/image` builds (e2e/test-all builds them first). Starts its own stack
//! with a real node unless one is attached through the environment
//! (`eval "$(e2e/stack up --real-node)"`). The tests run in the order of their numbers: the first
//! installs the chart, the last uninstalls it.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod canary;
mod install;

use std::path::PathBuf;
use std::process::Output;

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
        self.stack.apply(manifest);
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
    support::harness::run(
        || async {
            let images = support::images_dir();
            for name in ["sluice", "demo-app"] {
                let archive = images.join(format!("{name}.tar"));
                assert!(archive.exists(), "{} is missing: run e2e/image first", archive.display());
            }
            let cluster = Cluster { stack: Stack::start_or_attach_with_real_node(), images };
            cluster.stack.import_images(&[&cluster.image("sluice"), &cluster.image("demo-app")]);
            cluster
        },
        Cluster::diagnose,
        |cluster| cluster.stack.down(),
    )
}
