//! The demo behind `e2e/demo`: on the local stack (a real kube-apiserver with kwok nodes, moto,
//! Prometheus), install the chart, run the controller, and roll out a canary with ALB weights
//! and Prometheus analysis, watched live in `kubectl sluice status --watch`; then a version
//! whose error rate is bad, rolled back by itself.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::{AnalysisTemplate, Rollout, RolloutPhase};
use support::controller::ControllerProcess;
use support::{Stack, alb::listener_weights, path_str, repo, wait_for};

const NAMESPACE: &str = "demo";

fn say(text: &str) {
    println!("\n\x1b[1m==> {text}\x1b[0m");
}

/// The built binaries sit next to this example's directory.
fn binary(name: &str) -> PathBuf {
    let examples = std::env::current_exe().expect("own path").parent().expect("examples dir").to_path_buf();
    examples.parent().expect("profile dir").join(name)
}

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    say("starting the local stack: kube-apiserver, etcd, kwok nodes, moto, Prometheus");
    let stack = Arc::new(Stack::start_or_attach());
    let outcome = runtime.block_on(demo(stack.clone()));
    stack.down();
    match outcome {
        Ok(()) => {
            say("done: the first version was promoted step by step, the second rolled back by itself");
            std::process::ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("demo failed: {problem}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn demo(stack: Arc<Stack>) -> Result<(), String> {
    say("installing the Helm chart (CRDs, RBAC, ServiceAccount); the controller runs here as a process");
    let chart = repo().join("charts/sluice");
    let helm = stack
        .command("helm")
        .args(["upgrade", "--install", "sluice", path_str(&chart), "--namespace", "sluice-system", "--create-namespace"])
        .args(["--set", "replicas=0"])
        .output()
        .map_err(|e| e.to_string())?;
    if !helm.status.success() {
        return Err(format!("helm install: {}", String::from_utf8_lossy(&helm.stderr)));
    }
    let log = stack.dir.join("demo-controller.log");
    let _controller = ControllerProcess::start(&binary("sluice"), &stack.kubeconfig, &stack.aws_endpoint, &log, &[], &[]);
    println!("controller log: {}", log.display());

    let client = stack.kube().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.map_err(|e| e.to_string())?;
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    for name in ["web-stable", "web-canary"] {
        let service =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))
                .unwrap();
        services.create(&PostParams::default(), &service).await.map_err(|e| e.to_string())?;
    }

    say("creating an Application Load Balancer in moto: one listener, a stable and a canary target group");
    let (elb, listener, stable, canary) = stack.balancer("demo").await;
    say("allowing the namespace that listener and its target groups, as a cluster admin does");
    let arns = [listener.as_str(), &stable, &canary].join(", ");
    let allowed = json!({"metadata": {"annotations": {sluice::engine::tenancy::ALLOWED_AWS_RESOURCES_ANNOTATION: arns}}});
    namespaces.patch(NAMESPACE, &Default::default(), &kube::api::Patch::Merge(&allowed)).await.map_err(|e| e.to_string())?;

    say("an AnalysisTemplate: the error ratio from Prometheus must stay under 5 %");
    let templates: Api<AnalysisTemplate> = Api::namespaced(client.clone(), NAMESPACE);
    let template = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "error-rate"},
        "spec": {"metrics": [{
            "name": "error-rate", "interval": "2s", "count": 3, "failureLimit": 0,
            "successCondition": "result < 0.05",
            "provider": {"prometheus": {"address": stack.prometheus_url, "query": "demo_http_error_ratio", "timeout": "5s"}}
        }]}
    }))
    .unwrap();
    create_when_served(&templates, &template).await;

    // The application's error ratio as Prometheus sees it, pushed every second.
    let error_ratio = Arc::new(AtomicU64::new(0.01f64.to_bits()));
    let pusher = {
        let (ratio, stack) = (error_ratio.clone(), stack.clone());
        tokio::spawn(async move {
            loop {
                let value = f64::from_bits(ratio.load(Ordering::Relaxed));
                stack.push_sample("demo_http_error_ratio", &[("job", "demo")], value, jiff::Timestamp::now().as_millisecond()).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), NAMESPACE);
    let analysis = json!({"analysis": {"templates": [{"templateName": "error-rate"}]}});
    let rollout: Rollout = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "workload": {"kubernetes": {"replicas": 5, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}},
            "traffic": {"alb": {"listenerArn": listener, "stableTargetGroupArn": stable, "canaryTargetGroupArn": canary}},
            "strategy": {"canary": {"stableService": "web-stable", "canaryService": "web-canary", "steps": [
                {"setWeight": 20}, {"pause": {"duration": "5s"}}, analysis,
                {"setWeight": 50}, {"pause": {"duration": "5s"}}, analysis
            ]}}
        }
    }))
    .unwrap();
    say("applying Rollout demo/web (version web:1): the first version goes straight to stable");
    rollouts.create(&PostParams::default(), &rollout).await.map_err(|e| e.to_string())?;
    watch(&stack, "2m")?;

    say("web:2, error ratio 1 %: canary 20 % → analysis → 50 % → analysis → promoted");
    set_image(&rollouts, "web:2").await?;
    let promoted = watch(&stack, "4m")?;
    println!(
        "ALB listener now: stable target group {}%, canary {}%",
        weight(&elb, &listener, &stable).await,
        weight(&elb, &listener, &canary).await
    );
    if !promoted.success() {
        return Err(format!("web:2 was not promoted (kubectl sluice status exited {promoted})"));
    }

    say("web:3, error ratio 30 %: the analysis fails and Sluice rolls back by itself");
    error_ratio.store(0.30f64.to_bits(), Ordering::Relaxed);
    set_image(&rollouts, "web:3").await?;
    let rolled_back = watch(&stack, "4m")?;
    println!(
        "ALB listener now: stable target group {}%, canary {}%",
        weight(&elb, &listener, &stable).await,
        weight(&elb, &listener, &canary).await
    );
    pusher.abort();
    let status = rollouts.get("web").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
    if rolled_back.code() != Some(3) || status.phase != Some(RolloutPhase::Degraded) {
        return Err(format!("web:3 was not rolled back (kubectl sluice status exited {rolled_back})"));
    }
    println!("status message: {}", status.message.unwrap_or_default());
    Ok(())
}

/// `kubectl sluice status web --watch` in this terminal, until Healthy (0) or Degraded (3).
fn watch(stack: &Stack, timeout: &str) -> Result<ExitStatus, String> {
    Command::new(binary("kubectl-sluice"))
        .args(["-n", NAMESPACE, "status", "web", "--watch", "--timeout", timeout])
        .env("KUBECONFIG", &stack.kubeconfig)
        .status()
        .map_err(|e| format!("kubectl-sluice: {e}"))
}

async fn set_image(rollouts: &Api<Rollout>, image: &str) -> Result<(), String> {
    let patch = json!({"spec": {"workload": {"kubernetes": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}}});
    rollouts.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()).map_err(|e| e.to_string())
}

async fn weight(elb: &aws_sdk_elasticloadbalancingv2::Client, listener: &str, target_group: &str) -> i32 {
    listener_weights(elb, listener, target_group, target_group).await.0
}

/// Creates the object once the API server serves its freshly installed CRD.
async fn create_when_served<K>(api: &Api<K>, object: &K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for("the CRDs to be served", Duration::from_secs(60), || async { api.create(&PostParams::default(), object).await.ok() }).await;
}
