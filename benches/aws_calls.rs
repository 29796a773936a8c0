//! AWS calls a rollout costs, counted by a proxy in front of moto on the local stack:
//! ELBv2 calls per weight step, calls while a rollout is idle, and the time from an abort to the
//! canary's weight being 0 in ELBv2. Twice: on a listener named by ARN, its pods joining the
//! target groups 2 s after they are ready (`support::registrar`), so the steps include waiting
//! for registration; and through an Ingress, the real AWS Load Balancer Controller making the
//! rule and registering the pods (`support::load_balancer_controller`). Prints figures; asserts
//! nothing.
//!
//! `cargo bench --bench aws_calls` (the local stack must be installed: `e2e/stack install` and
//! `e2e/lib/aws-lbc.sh install`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice::api::{Rollout, RolloutPhase};
use support::aws_proxy::{AwsProxy, Call};
use support::controller::ControllerProcess;
use support::load_balancer_controller::{LoadBalancerController, load_balancer, rule_weights, target_groups};
use support::registrar::{REGISTRATION_LAG, Registrar};
use support::{Stack, alb::listener_weights, namespace, path_str, repo, wait_for};

const DEADLINE: Duration = Duration::from_secs(120);
const WEIGHTS: [i32; 3] = [10, 30, 60];

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let stack = Stack::start_or_attach();
    runtime.block_on(measure(&stack));
    stack.down();
}

async fn measure(stack: &Stack) {
    let applied = stack.kubectl(&["apply", "-f", path_str(&repo().join("crds"))]);
    assert!(applied.status.success(), "CRDs: {}", String::from_utf8_lossy(&applied.stderr));
    let client = stack.kube().await;

    // Weights on a listener Sluice names by ARN.
    let ns = namespace_with_services(&client, "aws-calls").await;
    let (elb, listener, stable, canary) = stack.balancer(&format!("calls-{}", std::process::id())).await;
    // A cluster admin allows the namespace these ARNs.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let arns = [listener.as_str(), &stable, &canary].join(", ");
    let allowed = json!({"metadata": {"annotations": {sluice::engine::tenancy::ALLOWED_AWS_RESOURCES_ANNOTATION: arns}}});
    namespaces.patch(&ns, &PatchParams::default(), &Patch::Merge(&allowed)).await.unwrap();
    // Pods join the target groups as the AWS Load Balancer Controller would register them.
    let _targets = [("web-stable", &stable), ("web-canary", &canary)]
        .map(|(service, group)| Registrar::bind(client.clone(), &ns, service, elb.clone(), group, REGISTRATION_LAG));
    let traffic = json!({"alb": {"listenerArn": listener, "stableTargetGroupArn": stable, "canaryTargetGroupArn": canary}});
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &ns);
    let (elb, listener, stable, canary) = (&elb, &listener, &stable, &canary);
    let on_listener = move || async move { listener_weights(elb, listener, canary, stable).await.0 };
    run("listener by ARN", stack, &rollouts, traffic, on_listener).await;

    // Weights through an Ingress the real AWS Load Balancer Controller turns into a rule (its
    // own calls go to moto directly: the proxy counts Sluice's alone).
    let lbc = LoadBalancerController::start(stack);
    let ns = namespace_with_services(&client, "aws-calls-ingress").await;
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    ingresses.create(&PostParams::default(), &lbc.ingress("web", "/")).await.unwrap();
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &ns);
    let traffic = json!({"alb": {"ingresses": ["web"], "servicePort": 80}});
    let (client, namespace, ingresses) = (&client, ns.as_str(), &ingresses);
    let on_rule = move || async move {
        let Some(groups) = target_groups(client, namespace, "web").await else { return -1 };
        let lb = load_balancer(elb, ingresses, "web").await;
        rule_weights(elb, &lb, &groups).await.first().map_or(-1, |(_, canary)| *canary)
    };
    run("Ingress", stack, &rollouts, traffic, on_rule).await;
    lbc.stop();
}

/// A new namespace with the Services `web-stable` and `web-canary`.
async fn namespace_with_services(client: &kube::Client, prefix: &str) -> String {
    let ns = namespace(client, prefix).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    for name in ["web-stable", "web-canary"] {
        let service: Service =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))
                .unwrap();
        services.create(&PostParams::default(), &service).await.unwrap();
    }
    ns
}

/// One Kubernetes canary behind `traffic`: an idle minute at rest, three weight steps, a minute
/// paused, and an abort timed until `canary_weight` (what ELBv2 holds) reads 0. A controller of
/// its own watches the Rollout's namespace alone, through a proxy of its own that counts.
async fn run<F, Fut>(label: &str, stack: &Stack, rollouts: &Api<Rollout>, traffic: serde_json::Value, canary_weight: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    let namespace = rollouts.namespace().expect("a namespaced API").to_string();
    let proxy = AwsProxy::start(&stack.aws_endpoint, 0.0, 1).await;
    let log = stack.dir.join(format!("{namespace}-controller.log"));
    let args = ["--namespace", namespace.as_str()];
    let binary = env!("CARGO_BIN_EXE_sluice").as_ref();
    let _controller = ControllerProcess::start(binary, &stack.kubeconfig, &proxy.endpoint, &log, &args, &[]);
    let mut steps: Vec<serde_json::Value> = Vec::new();
    for weight in WEIGHTS {
        steps.push(json!({"setWeight": weight}));
        steps.push(json!({"pause": {"duration": "2s"}}));
    }
    steps.push(json!({"pause": {}}));
    let rollout: Rollout = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "workload": {"kubernetes": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}},
            "traffic": traffic,
            "strategy": {"canary": {"stableService": "web-stable", "canaryService": "web-canary", "steps": steps}}
        }
    }))
    .unwrap();
    wait_for("the Rollout CRD to serve", DEADLINE, || async { rollouts.create(&PostParams::default(), &rollout).await.ok() }).await;
    let wait = |what: &'static str, check: fn(&Rollout) -> bool| {
        let rollouts = rollouts.clone();
        async move {
            wait_for(what, DEADLINE, || async {
                let r = rollouts.get("web").await.ok()?;
                check(&r).then_some(())
            })
            .await
        }
    };
    wait("Healthy", |r| r.status.as_ref().is_some_and(|s| s.phase == Some(RolloutPhase::Healthy) && s.verified_weight == Some(0))).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Idle: a Healthy rollout, nothing changing.
    let before = proxy.calls().len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let idle = proxy.calls()[before..].to_vec();
    println!("{label}: AWS calls in one idle minute (Healthy rollout): {}{}", idle.len(), by_operation(&idle));

    // A canary through three weight steps up to the manual pause.
    let before = proxy.calls().len();
    let started = Instant::now();
    let patch = json!({"spec": {"workload": {"kubernetes": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}}}});
    rollouts.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait("the manual pause at 60%", |r| {
        r.status.as_ref().is_some_and(|s| s.verified_weight == Some(60) && s.phase == Some(RolloutPhase::Paused))
    })
    .await;
    let progress = proxy.calls()[before..].to_vec();
    let writes = progress.iter().filter(|c| c.operation.starts_with("Modify")).count();
    println!(
        "{label}: AWS calls for {} weight steps ({:.1} s, timed pauses of 2 s): {} in all, {:.1} per step, of which {} writes{}",
        WEIGHTS.len(),
        started.elapsed().as_secs_f64(),
        progress.len(),
        progress.len() as f64 / WEIGHTS.len() as f64,
        writes,
        by_operation(&progress)
    );

    // Paused at 60%, waiting for a person: idle again.
    let before = proxy.calls().len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let paused = proxy.calls()[before..].to_vec();
    println!("{label}: AWS calls in one minute paused at 60% (waiting for a person): {}{}", paused.len(), by_operation(&paused));

    // Abort: from the request to the canary's weight being 0 in ELBv2.
    let requested = Instant::now();
    // What `kubectl sluice abort` writes.
    let requests = json!({"abort": {"id": "bench-abort"}}).to_string();
    let patch = json!({"metadata": {"annotations": {sluice::api::COMMANDS_ANNOTATION: requests}}});
    rollouts.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    loop {
        if canary_weight().await == 0 {
            break;
        }
        assert!(requested.elapsed() < DEADLINE, "the abort never reached ELBv2");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let to_zero = requested.elapsed();
    let write = proxy.calls().into_iter().find(|c| c.at >= requested && c.operation.starts_with("Modify"));
    println!("{label}: abort requested → canary weight 0 read in ELBv2: {} ms", to_zero.as_millis());
    if let Some(write) = write {
        println!("{label}: abort requested → the weight write sent: {} ms", write.at.duration_since(requested).as_millis());
    }
    wait("Degraded", |r| r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Degraded)).await;
}

fn by_operation(calls: &[Call]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for call in calls {
        *counts.entry(format!("{} {}", call.service, call.operation)).or_default() += 1;
    }
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts.into_iter().map(|(op, n)| format!("{op} ×{n}")).collect();
    format!(" ({})", parts.join(", "))
}
