//! A Deployment adopted as it is (`workload.kubernetes.deploymentRef`), with the real
//! Deployment and ReplicaSet controllers of the stack's kube-controller-manager running it.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::{Rollout, RolloutPhase};
use sluice::platform::adoption::REPLICAS_BEFORE_ANNOTATION;

use crate::controller::Harness;
use crate::scenarios::step;
use crate::support::scene::{DEADLINE, Scene};
use crate::support::wait_for;

fn deployment(image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}}
    }))
    .unwrap()
}

fn adopting(scale_down: &str) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "workload": {"kubernetes": {"replicas": 3, "deploymentRef": {"name": "web", "scaleDown": scale_down}}},
            "strategy": {"canary": {"stableService": "web-stable", "canaryService": "web-canary", "scaleDownDelaySeconds": 0,
                "steps": [{"setWeight": 34}, {"pause": {}}]}}
        }
    }))
    .unwrap()
}

/// Images of the Rollout's own ReplicaSets (owned by it, not the Deployment) with their
/// (desired, ready) counts.
async fn rollout_replica_sets(s: &Scene) -> Vec<(String, i32, i32)> {
    let api: Api<ReplicaSet> = Api::namespaced(s.client.clone(), &s.ns);
    let mut found: Vec<(String, i32, i32)> = api
        .list(&ListParams::default().labels("sluice.dev/rollout=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|rs| {
            let spec = rs.spec.unwrap_or_default();
            let image = spec.template.and_then(|t| t.spec).and_then(|p| p.containers[0].image.clone()).unwrap_or_default();
            (image, spec.replicas.unwrap_or(0), rs.status.and_then(|s| s.ready_replicas).unwrap_or(0))
        })
        .collect();
    found.sort();
    found
}

async fn wait_deployment(s: &Scene, what: &str, check: impl Fn(&Deployment) -> bool) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns);
    wait_for(what, DEADLINE, || async {
        let deployment = api.get("web").await.ok()?;
        check(&deployment).then_some(deployment)
    })
    .await
}

fn replicas(deployment: &Deployment) -> Option<i32> {
    deployment.spec.as_ref().and_then(|s| s.replicas)
}

fn template(deployment: &Deployment) -> Value {
    serde_json::to_value(&deployment.spec.as_ref().unwrap().template).unwrap()
}

register_test!(350, an_adopted_deployment_is_rolled_out_as_it_is_and_gets_its_replicas_back);
/// A running Deployment is adopted: the Rollout runs its template as its own revision, the
/// Deployment gives way as the Rollout's pods become available, an image change made on the
/// Deployment is rolled out by the Rollout's steps, the Deployment's template is never edited,
/// and deleting the Rollout gives the Deployment its three replicas back.
pub async fn an_adopted_deployment_is_rolled_out_as_it_is_and_gets_its_replicas_back(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "adopt", &["web-stable", "web-canary"]).await;
    let deployments: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns);
    deployments.create(&PostParams::default(), &deployment("web:1")).await.expect("deployment created");
    let running = wait_deployment(&s, "the Deployment's 3 pods", |d| d.status.as_ref().and_then(|s| s.available_replicas) == Some(3)).await;
    let template_before = template(&running);

    s.create(&adopting("progressively")).await;
    s.wait("Healthy on the Deployment's template", |r| {
        r.status.as_ref().is_some_and(|s| s.phase == Some(RolloutPhase::Healthy) && s.available_replicas >= 3)
    })
    .await;
    let given_way = wait_deployment(&s, "the Deployment to give way", |d| replicas(d) == Some(0)).await;
    assert_eq!(rollout_replica_sets(&s).await, vec![("web:1".to_string(), 3, 3)], "the Rollout runs the Deployment's template");
    assert_eq!(given_way.annotations().get(REPLICAS_BEFORE_ANNOTATION).map(String::as_str), Some("3"), "the count it had is kept");
    assert_eq!(template(&given_way), template_before, "the Deployment's template is not edited");

    // A person (or Argo CD, or helm) changes the image on the Deployment: the Rollout's steps
    // bring it in.
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}});
    deployments.patch("web", &PatchParams::default(), &Patch::Merge(&image)).await.expect("deployment image changed");
    s.wait("the pause after the first step", |r| step(r) == Some(1)).await;
    // 34% of 3 by replica ratio: one canary pod beside two stable ones (33%).
    wait_for("one canary pod beside two stable ones", DEADLINE, || async {
        let found = rollout_replica_sets(&s).await;
        (found == vec![("web:1".to_string(), 2, 2), ("web:2".to_string(), 1, 1)]).then_some(())
    })
    .await;
    let during = deployments.get("web").await.unwrap();
    assert_eq!(replicas(&during), Some(0), "the Deployment runs none of its own pods meanwhile");
    s.command("promote", "p-1").await;
    s.wait("Healthy on web:2", |r| {
        r.status.as_ref().is_some_and(|s| s.phase == Some(RolloutPhase::Healthy) && s.current_step_index == Some(2))
    })
    .await;
    let images = |d: &Deployment| d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).map(|p| p.containers[0].image.clone());
    assert_eq!(images(&deployments.get("web").await.unwrap()), Some(Some("web:2".into())), "the template is the person's");

    s.rollouts.delete("web", &DeleteParams::default()).await.expect("rollout deleted");
    let back = wait_deployment(&s, "the Deployment's replicas back", |d| replicas(d) == Some(3)).await;
    assert!(back.annotations().get(REPLICAS_BEFORE_ANNOTATION).is_none(), "the kept count is removed with the Rollout");
    wait_for("the Rollout to be gone", DEADLINE, || async { s.rollouts.get_opt("web").await.ok()?.is_none().then_some(()) }).await;
    let after = deployments.get("web").await.unwrap();
    let available = after.status.as_ref().and_then(|s| s.available_replicas);
    assert_eq!(available, Some(3), "the Rollout went only once the Deployment's own pods were back");
}

register_test!(360, a_rollout_adopting_a_missing_deployment_says_so_and_starts_once_it_exists);
/// The Deployment is not there yet: Degraded with what to fix and no ReplicaSet; once the
/// Deployment is created, the Rollout rolls it out, and `never` leaves its pods running.
pub async fn a_rollout_adopting_a_missing_deployment_says_so_and_starts_once_it_exists(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "adopt-missing", &["web-stable", "web-canary"]).await;
    s.create(&adopting("never")).await;
    let degraded =
        s.wait("Degraded for the missing Deployment", |r| r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Degraded)).await;
    let message = degraded.status.and_then(|s| s.message).unwrap_or_default();
    assert!(message.contains("Deployment web, which does not exist"), "{message}");
    assert!(rollout_replica_sets(&s).await.is_empty(), "nothing runs without the Deployment's template");

    let deployments: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns);
    deployments.create(&PostParams::default(), &deployment("web:1")).await.expect("deployment created");
    s.wait("Healthy once the Deployment exists", |r| r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Healthy)).await;
    assert_eq!(rollout_replica_sets(&s).await, vec![("web:1".to_string(), 3, 3)]);
    let kept = deployments.get("web").await.unwrap();
    assert_eq!(replicas(&kept), Some(3), "scaleDown: never keeps the Deployment's replicas");
}
