//! A revision is named by a hash of what runs, like a Deployment's pod-template-hash.

use sha2::{Digest, Sha256};

use crate::api::{Workload, WorkloadKind};

/// Ten hex digits of the SHA-256 of the workload's pod template (or ECS task definition,
/// network configuration and load balancer): equal templates give equal revisions.
pub fn of(workload: &Workload) -> String {
    let identity = match workload.kind() {
        Ok(WorkloadKind::Kubernetes(kubernetes)) => serde_json::to_vec(&kubernetes.template),
        Ok(WorkloadKind::Ecs(ecs)) => {
            serde_json::to_vec(&(&ecs.task_definition, &ecs.network_configuration, &ecs.load_balancer, &ecs.launch_type))
        }
        Err(_) => Ok(Vec::new()),
    }
    .expect("workload serializes");
    let digest = Sha256::digest(&identity);
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::KubernetesWorkload;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

    fn workload(image: &str, replicas: i32) -> Workload {
        Workload {
            kubernetes: Some(KubernetesWorkload {
                replicas,
                template: PodTemplateSpec {
                    spec: Some(PodSpec {
                        containers: vec![Container { name: "app".into(), image: Some(image.into()), ..Default::default() }],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ecs: None,
        }
    }

    #[test]
    fn the_template_decides_the_revision_not_the_replica_count() {
        assert_eq!(of(&workload("app:1", 3)), of(&workload("app:1", 10)));
        assert_ne!(of(&workload("app:1", 3)), of(&workload("app:2", 3)));
        assert_eq!(of(&workload("app:1", 3)).len(), 10);
    }
}
