//! `set image`: new container images in a Kubernetes workload's pod template.

use crate::api::{Rollout, RolloutSpec};

/// The spec with each `(container, image)` set, or why not. Init containers count too, as with
/// `kubectl set image`.
pub fn set_images(rollout: &Rollout, images: &[(String, String)]) -> Result<RolloutSpec, String> {
    let mut spec = rollout.spec.clone();
    let Some(kubernetes) = spec.workload.kubernetes.as_mut() else {
        return Err("is an ECS workload: its version is spec.workload.ecs.taskDefinition, not a container image; \
                    `set image` changes Kubernetes pod templates only"
            .to_string());
    };
    if let Some(adopted) = &kubernetes.deployment_ref {
        let deployment = &adopted.name;
        return Err(format!(
            "adopts Deployment {deployment} (spec.workload.kubernetes.deploymentRef): its pods come from that Deployment's template; \
             run `kubectl set image deployment/{deployment} CONTAINER=IMAGE` and the Rollout rolls the new revision out"
        ));
    }
    let pod = kubernetes.template.spec.get_or_insert_with(Default::default);
    let mut unknown = Vec::new();
    for (name, image) in images {
        let containers = pod.containers.iter_mut().chain(pod.init_containers.iter_mut().flatten());
        match containers.into_iter().find(|c| &c.name == name) {
            Some(container) => container.image = Some(image.clone()),
            None => unknown.push(name.as_str()),
        }
    }
    if unknown.is_empty() {
        return Ok(spec);
    }
    let names = |list: &[k8s_openapi::api::core::v1::Container]| list.iter().map(|c| c.name.clone()).collect::<Vec<_>>().join(", ");
    let mut existing = format!("containers: {}", names(&pod.containers));
    if let Some(init) = pod.init_containers.as_deref().filter(|i| !i.is_empty()) {
        existing.push_str(&format!("; init containers: {}", names(init)));
    }
    let plural = if unknown.len() > 1 { "s" } else { "" };
    Err(format!("no container{plural} named {} in the pod template ({existing})", unknown.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout(workload: serde_json::Value) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"workload": workload, "strategy": {"rolling": {}}}
        }))
        .unwrap()
    }

    fn pods() -> Rollout {
        rollout(json!({"kubernetes": {"selector": {}, "template": {"spec": {
            "containers": [{"name": "web", "image": "web:1"}, {"name": "log", "image": "log:1"}],
            "initContainers": [{"name": "migrate", "image": "migrate:1"}]
        }}}}))
    }

    fn image_of(spec: &RolloutSpec, name: &str) -> Option<String> {
        let pod = spec.workload.kubernetes.as_ref()?.template.spec.as_ref()?;
        pod.containers.iter().chain(pod.init_containers.iter().flatten()).find(|c| c.name == name)?.image.clone()
    }

    #[test]
    fn an_adopted_deployment_is_changed_where_it_lives() {
        let adopting = rollout(json!({"kubernetes": {"deploymentRef": {"name": "checkout"}}}));
        let error = set_images(&adopting, &[("web".into(), "web:2".into())]).unwrap_err();
        assert!(error.contains("adopts Deployment checkout") && error.contains("kubectl set image deployment/checkout"), "{error}");
    }

    #[test]
    fn images_are_set_by_container_name() {
        let spec = set_images(&pods(), &[("log".into(), "log:2".into()), ("migrate".into(), "migrate:2".into())]).unwrap();
        assert_eq!(image_of(&spec, "web").as_deref(), Some("web:1"));
        assert_eq!(image_of(&spec, "log").as_deref(), Some("log:2"));
        assert_eq!(image_of(&spec, "migrate").as_deref(), Some("migrate:2"));
    }

    #[test]
    fn a_wrong_name_lists_the_containers_that_exist() {
        let error = set_images(&pods(), &[("api".into(), "api:2".into()), ("web".into(), "web:2".into())]).unwrap_err();
        assert_eq!(error, "no container named api in the pod template (containers: web, log; init containers: migrate)");
    }

    #[test]
    fn ecs_workloads_have_no_images_to_set() {
        let ecs = rollout(json!({"ecs": {"cluster": "c", "service": "s", "taskDefinition": "t:1", "desiredCount": 1,
            "loadBalancer": {"containerName": "web", "containerPort": 80}}}));
        assert!(set_images(&ecs, &[("web".into(), "web:2".into())]).unwrap_err().contains("ECS workload"));
    }
}
