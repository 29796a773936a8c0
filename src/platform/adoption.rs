//! Deployments a Rollout adopts (`workload.kubernetes.deploymentRef`). The Rollout rolls out the
//! Deployment's pod template as revisions of its own and never edits that template; the only
//! change it makes to the Deployment is its replica count, as the engine decides, with the count
//! it had before kept in an annotation so that deleting the Rollout gives it back.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use tracing::warn;

use crate::api::Rollout;
use crate::engine::AdoptedObservation;
use crate::ports::Effect;

/// The replicas the Deployment had when the Rollout first scaled it down.
pub const REPLICAS_BEFORE_ANNOTATION: &str = "sluice.dev/replicas-before-adoption";

/// The name of the Deployment the Rollout adopts, if it adopts one.
pub fn adopted_name(rollout: &Rollout) -> Option<&str> {
    rollout.spec.workload.kubernetes.as_ref()?.deployment_ref.as_ref().map(|r| r.name.as_str())
}

/// The Deployment the Rollout adopts, from the watch cache, or from the API server when the
/// cache does not hold it yet (it may have been created just before the Rollout). `None` when
/// the Rollout adopts nothing or the Deployment does not exist.
pub async fn find(client: &kube::Client, rollout: &Rollout, cached: &[Arc<Deployment>]) -> Result<Option<Arc<Deployment>>, kube::Error> {
    let Some(name) = adopted_name(rollout) else { return Ok(None) };
    let namespace = rollout.namespace();
    if let Some(found) = cached.iter().find(|d| d.name_any() == name && d.namespace() == namespace) {
        return Ok(Some(found.clone()));
    }
    let api: Api<Deployment> = Api::namespaced(client.clone(), &namespace.unwrap_or_default());
    Ok(api.get_opt(name).await?.map(Arc::new))
}

/// The Rollout as a pass runs it: the adopted Deployment's pod template and selector in place of
/// its own (and its minReadySeconds where the Rollout sets none). Without the Deployment the
/// Rollout stays as it is, and the engine reports the Deployment missing before anything runs.
pub fn resolve<'a>(rollout: &'a Rollout, deployment: Option<&Deployment>) -> Cow<'a, Rollout> {
    let (Some(deployment), Some(_)) = (deployment, adopted_name(rollout)) else { return Cow::Borrowed(rollout) };
    let Some(spec) = &deployment.spec else { return Cow::Borrowed(rollout) };
    let mut resolved = rollout.clone();
    if let Some(kubernetes) = resolved.spec.workload.kubernetes.as_mut() {
        kubernetes.template = spec.template.clone();
        kubernetes.selector = spec.selector.clone();
        kubernetes.min_ready_seconds = kubernetes.min_ready_seconds.or(spec.min_ready_seconds);
    }
    Cow::Owned(resolved)
}

pub fn observe(deployment: &Deployment) -> AdoptedObservation {
    AdoptedObservation { replicas: deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) }
}

/// The kept count, bounded as every replica count is: anyone who can edit the Deployment can
/// write the annotation, and the Rollout's deletion must not set a count it would not set itself.
fn replicas_before(deployment: &Deployment) -> Option<i32> {
    let kept: i64 = deployment.annotations().get(REPLICAS_BEFORE_ANNOTATION)?.trim().parse().ok()?;
    Some(kept.clamp(0, i64::from(crate::engine::MAX_REPLICAS)) as i32)
}

/// Sets the Deployment's replicas, keeping the count it had before the first change. One merge
/// patch of the two fields: the Deployment belongs to its user, and an apply would take its
/// replica count from them for good.
pub async fn scale(client: &kube::Client, deployment: &Deployment, replicas: i32) -> Result<Effect, kube::Error> {
    if observe(deployment).replicas == replicas {
        return Ok(Effect::Unchanged);
    }
    let before = replicas_before(deployment).unwrap_or(observe(deployment).replicas);
    let patch = serde_json::json!({
        "metadata": {"annotations": {REPLICAS_BEFORE_ANNOTATION: before.to_string()}},
        "spec": {"replicas": replicas},
    });
    api(client, deployment).patch(&deployment.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(Effect::Changed)
}

/// The longest a deleted Rollout waits for the Deployment's pods to be back before it goes.
pub const RELEASE_WAIT: Duration = Duration::from_secs(120);

/// Gives the Deployment back the replicas it had before the Rollout scaled it down, and waits
/// (up to [`RELEASE_WAIT`]) until they are available: the Rollout's pods go with the Rollout, so
/// going sooner would leave the Service without pods.
pub async fn release(client: &kube::Client, deployment: &Deployment) -> Result<Effect, kube::Error> {
    let Some(before) = replicas_before(deployment) else { return Ok(Effect::Unchanged) };
    let patch = serde_json::json!({
        "metadata": {"annotations": {REPLICAS_BEFORE_ANNOTATION: null}},
        "spec": {"replicas": before},
    });
    let api = api(client, deployment);
    api.patch(&deployment.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    let waited = tokio::time::timeout(RELEASE_WAIT, async {
        loop {
            let current = api.get(&deployment.name_any()).await?;
            if available(&current) >= before {
                return Ok::<_, kube::Error>(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
    match waited {
        Ok(result) => result?,
        Err(_) => warn!(deployment = %deployment.name_any(), "its replicas are not all available yet; the Rollout goes anyway"),
    }
    Ok(Effect::Changed)
}

/// Pods of the Deployment's current spec that are available.
fn available(deployment: &Deployment) -> i32 {
    let status = deployment.status.clone().unwrap_or_default();
    let current = status.observed_generation >= deployment.metadata.generation;
    if current { status.available_replicas.unwrap_or(0) } else { 0 }
}

fn api(client: &kube::Client, deployment: &Deployment) -> Api<Deployment> {
    Api::namespaced(client.clone(), &deployment.namespace().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RolloutSpec;

    fn adopting(name: &str) -> Rollout {
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "workload": {"kubernetes": {"replicas": 3, "deploymentRef": {"name": name, "scaleDown": "onSuccess"}}},
            "strategy": {"canary": {"steps": []}}
        }))
        .unwrap();
        let mut rollout = Rollout::new("web", spec);
        rollout.metadata.namespace = Some("shop".into());
        rollout
    }

    fn deployment() -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": 5, "minReadySeconds": 7, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:2"}]}}}
        }))
        .unwrap()
    }

    #[test]
    fn a_pass_runs_the_adopted_deployments_template_and_selector_and_keeps_the_rollouts_replicas() {
        let rollout = adopting("web");
        let resolved = resolve(&rollout, Some(&deployment()));
        let kubernetes = resolved.spec.workload.kubernetes.as_ref().unwrap();
        let image = kubernetes.template.spec.as_ref().unwrap().containers[0].image.as_deref();
        assert_eq!(image, Some("web:2"));
        assert_eq!(kubernetes.selector.match_labels.as_ref().unwrap().get("app").map(String::as_str), Some("web"));
        assert_eq!((kubernetes.replicas, kubernetes.min_ready_seconds), (3, Some(7)));
        assert!(kubernetes.deployment_ref.is_some(), "the engine still sees what it adopts");
    }

    #[test]
    fn without_its_deployment_a_rollout_is_run_as_written() {
        let rollout = adopting("web");
        assert!(matches!(resolve(&rollout, None), Cow::Borrowed(_)));
    }

    #[test]
    fn the_count_before_adoption_is_read_from_the_annotation() {
        let mut deployment = deployment();
        assert_eq!(replicas_before(&deployment), None);
        deployment.annotations_mut().insert(REPLICAS_BEFORE_ANNOTATION.into(), "5".into());
        assert_eq!(replicas_before(&deployment), Some(5));
    }

    #[test]
    fn a_kept_count_written_by_hand_is_bounded_or_ignored() {
        let mut deployment = deployment();
        for (written, read) in [("99999999999", Some(100_000)), ("-3", Some(0)), ("many", None), ("", None)] {
            deployment.annotations_mut().insert(REPLICAS_BEFORE_ANNOTATION.into(), written.into());
            assert_eq!(replicas_before(&deployment), read, "{written:?}");
        }
    }
}
