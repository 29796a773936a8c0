//! The demo behind `e2e/demo`: on the local stack with a real node (a real kube-apiserver,
//! containerd and a kubelet, moto, Prometheus), install the chart with the controller's own
//! image, and roll out the demo app on real pods: a canary with ALB weights, gated on the error
//! rate Prometheus scrapes from the pods, watched live in `kubectl sluice status --watch`; then
//! a version that fails 30 % of its requests, rolled back by itself.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::{AnalysisTemplate, Rollout, RolloutPhase};
use support::registrar::{REGISTRATION_LAG, Registrar};
use support::{Stack, alb::listener_weights, images_dir, path_str, repo, wait_for};

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
    say("starting the local stack: kube-apiserver, etcd, a real node (containerd, kubelet, kube-proxy), moto, Prometheus");
    let stack = Arc::new(Stack::start_or_attach_with_real_node());
    let outcome = runtime.block_on(demo(stack.clone()));
    stack.down();
    match outcome {
        Ok(()) => {
            say("done: v2 was promoted step by step, v3 rolled back by itself");
            std::process::ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("demo failed: {problem}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn demo(stack: Arc<Stack>) -> Result<(), String> {
    say("importing the controller and demo app images into the real node's containerd (no registry)");
    let images = images_dir();
    stack.import_images(&[&images.join("sluice.tar"), &images.join("demo-app.tar")]);

    say("installing the Helm chart: the controller runs in the cluster, two replicas with leader election");
    let chart = repo().join("charts/sluice");
    let moto = stack.url_for_pods(&stack.aws_endpoint);
    let helm = stack
        .command("helm")
        .args(["upgrade", "--install", "sluice", path_str(&chart), "--namespace", "sluice-system", "--create-namespace", "--wait"])
        .args(["--set", "image.repository=sluice.local/sluice", "--set", "image.tag=dev"])
        .args(["--set", &format!("aws.endpointUrl={moto}"), "--set", "aws.region=us-east-1"])
        // moto takes any credentials; on EKS they come from the ServiceAccount's IAM role.
        .args(["--set", "extraEnv[0].name=AWS_ACCESS_KEY_ID", "--set", "extraEnv[0].value=testing"])
        .args(["--set", "extraEnv[1].name=AWS_SECRET_ACCESS_KEY", "--set", "extraEnv[1].value=testing"])
        .output()
        .map_err(|e| e.to_string())?;
    if !helm.status.success() {
        return Err(format!("helm install: {}", String::from_utf8_lossy(&helm.stderr)));
    }
    let pods = stack.kubectl(&["get", "pods", "-n", "sluice-system", "-o", "wide"]);
    print!("{}", String::from_utf8_lossy(&pods.stdout));

    let client = stack.kube().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.map_err(|e| e.to_string())?;
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    for (name, owned) in [("web", false), ("web-stable", true), ("web-canary", true)] {
        let labels = if owned { json!({"sluice.dev/rollout": "web"}) } else { json!({}) };
        let service = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}))
        .unwrap();
        services.create(&PostParams::default(), &service).await.map_err(|e| e.to_string())?;
    }

    say("creating an Application Load Balancer in moto: one listener, a stable and a canary target group");
    let (elb, listener, stable, canary) = stack.balancer("demo").await;
    say(
        "registering the pods behind web-stable and web-canary with their target groups 2 s after they are ready, as the AWS Load Balancer Controller does",
    );
    let _targets = [("web-stable", &stable), ("web-canary", &canary)]
        .map(|(service, group)| Registrar::bind(client.clone(), NAMESPACE, service, elb.clone(), group, REGISTRATION_LAG));
    say("allowing the namespace that listener and its target groups, as a cluster admin does");
    let arns = [listener.as_str(), &stable, &canary].join(", ");
    let allowed = json!({"metadata": {"annotations": {sluice::engine::tenancy::ALLOWED_AWS_RESOURCES_ANNOTATION: arns}}});
    namespaces.patch(NAMESPACE, &Default::default(), &kube::api::Patch::Merge(&allowed)).await.map_err(|e| e.to_string())?;

    say("an AnalysisTemplate: the new version's share of 500s, scraped by Prometheus from its pods, must stay under 5 %");
    let prometheus = stack.url_for_pods(&stack.prometheus_url);
    let selector = format!("namespace=\"{NAMESPACE}\",version=\"{{{{args.version}}}}\"");
    let query = format!(
        "(sum(rate(demo_http_requests_total{{{selector},code=\"500\"}}[8s])) or vector(0)) / sum(rate(demo_http_requests_total{{{selector}}}[8s]))"
    );
    let templates: Api<AnalysisTemplate> = Api::namespaced(client.clone(), NAMESPACE);
    let template = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "error-rate"},
        "spec": {"args": [{"name": "version"}], "metrics": [{
            "name": "error-rate", "initialDelay": "10s", "interval": "3s", "count": 3, "failureLimit": 0,
            "successCondition": "result < 0.05",
            "provider": {"prometheus": {"address": prometheus, "query": query, "timeout": "5s"}}
        }]}
    }))
    .unwrap();
    create_when_served(&templates, &template).await;

    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), NAMESPACE);
    say("applying Rollout demo/web (version v1, 4 real pods): the first version goes straight to stable");
    rollouts.create(&PostParams::default(), &rollout(&listener, &stable, &canary, "v1", 0.0)).await.map_err(|e| e.to_string())?;
    watch(&stack, "3m")?;

    say("sending requests to the app through its Service (kube-proxy), 50 a second");
    let service_ip = services.get("web").await.map_err(|e| e.to_string())?.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
    let load = tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).pool_max_idle_per_host(0).build().expect("client");
        loop {
            let _ = http.get(format!("http://{service_ip}/")).send().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    say("v2, answering well: canary 25 % → analysis → 50 % → analysis → promoted");
    replace(&rollouts, &rollout(&listener, &stable, &canary, "v2", 0.0)).await?;
    let promoted = watch(&stack, "5m")?;
    println!(
        "ALB listener now: stable target group {}%, canary {}%",
        weight(&elb, &listener, &stable).await,
        weight(&elb, &listener, &canary).await
    );
    if !promoted.success() {
        return Err(format!("v2 was not promoted (kubectl sluice status exited {promoted})"));
    }

    say("v3, failing 30 % of its requests: the analysis fails and Sluice rolls back by itself");
    replace(&rollouts, &rollout(&listener, &stable, &canary, "v3", 0.3)).await?;
    let rolled_back = watch(&stack, "5m")?;
    println!(
        "ALB listener now: stable target group {}%, canary {}%",
        weight(&elb, &listener, &stable).await,
        weight(&elb, &listener, &canary).await
    );
    load.abort();
    let status = rollouts.get("web").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
    if rolled_back.code() != Some(3) || status.phase != Some(RolloutPhase::Degraded) {
        return Err(format!("v3 was not rolled back (kubectl sluice status exited {rolled_back})"));
    }
    println!("status message: {}", status.message.unwrap_or_default());
    Ok(())
}

/// The demo app's Rollout at `version`, failing `error_rate` of its requests.
fn rollout(listener: &str, stable: &str, canary: &str, version: &str, error_rate: f64) -> Rollout {
    let analysis = json!({"analysis": {"templates": [{"templateName": "error-rate"}], "args": [{"name": "version", "value": version}]}});
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "workload": {"kubernetes": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}, "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}},
                    "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                        "name": "web", "image": "sluice.local/demo-app:dev", "imagePullPolicy": "Never",
                        "env": [{"name": "APP_VERSION", "value": version}, {"name": "ERROR_RATE", "value": error_rate.to_string()}],
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1}
                    }]}
                }}},
            "traffic": {"alb": {"listenerArn": listener, "stableTargetGroupArn": stable, "canaryTargetGroupArn": canary}},
            "strategy": {"canary": {"stableService": "web-stable", "canaryService": "web-canary", "steps": [
                {"setWeight": 25}, {"pause": {"duration": "5s"}}, analysis,
                {"setWeight": 50}, {"pause": {"duration": "5s"}}, analysis
            ]}}
        }
    }))
    .unwrap()
}

async fn replace(rollouts: &Api<Rollout>, rollout: &Rollout) -> Result<(), String> {
    let patch = json!({"spec": rollout.spec});
    rollouts.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()).map_err(|e| e.to_string())
}

/// `kubectl sluice status web --watch` in this terminal, until Healthy (0) or Degraded (3).
fn watch(stack: &Stack, timeout: &str) -> Result<ExitStatus, String> {
    Command::new(binary("kubectl-sluice"))
        .args(["-n", NAMESPACE, "status", "web", "--watch", "--timeout", timeout])
        .env("KUBECONFIG", &stack.kubeconfig)
        .status()
        .map_err(|e| format!("kubectl-sluice: {e}"))
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
