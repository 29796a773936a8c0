//! `undo`: put the template of an earlier revision back in the spec.
//!
//! A revision is the hash of the workload as written in the spec, so undo aims to write back
//! exactly what was written then: the spec asks for that revision again, and when it is the
//! stable one the rollout is at rest at once instead of rolling its pods out as a new revision.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::{Map, Value};

use super::cluster::Cluster;
use super::describe::qualified_name;
use super::error::PluginError;
use super::spec_edit;
use crate::api::{EcsWorkload, KubernetesWorkload, Rollout, Workload};
use crate::engine::revision;
use crate::platform::kubernetes::{FIELD_MANAGER as CONTROLLER_FIELD_MANAGER, REVISION_LABEL, ROLLOUT_LABEL};

/// Task definition revisions tried above the current one when looking for an ECS revision.
const ECS_NEWER_REVISIONS_TRIED: u64 = 100;

/// The revision to return to: the one asked for; else the stable one; else, when the spec already
/// asks for the stable one, the newest other ReplicaSet.
pub fn choose_revision(rollout: &Rollout, requested: Option<&str>, replica_sets: &[ReplicaSet]) -> Result<String, String> {
    let current = revision::of(&rollout.spec.workload);
    let target = match requested {
        Some(requested) => requested.to_string(),
        None => match rollout.status.as_ref().and_then(|s| s.stable_revision.clone()) {
            Some(stable) if stable != current => stable,
            _ => previous(replica_sets, &current)
                .ok_or_else(|| format!("revision {current} is the only one known: there is no earlier revision to return to"))?,
        },
    };
    if target == current {
        return Err(format!("the spec already asks for revision {current}"));
    }
    Ok(target)
}

fn previous(replica_sets: &[ReplicaSet], current: &str) -> Option<String> {
    replica_sets
        .iter()
        .filter_map(|rs| Some((rs.creation_timestamp().map(|t| t.0), rs.name_any(), rs.labels().get(REVISION_LABEL)?.clone())))
        .filter(|(_, _, revision)| revision != current)
        .max()
        .map(|(_, _, revision)| revision)
}

/// The pod template `revision` was made from, out of its ReplicaSet, and whether it hashes back
/// to `revision`. The API server fills defaults into a ReplicaSet's template (restartPolicy,
/// imagePullPolicy, ...); the fields the controller applied, recorded in managedFields, are the
/// template as the spec had it. Without that record the whole template is the best there is.
pub fn template_of(replica_set: &ReplicaSet, revision: &str, workload: &KubernetesWorkload) -> (PodTemplateSpec, bool) {
    let whole = replica_set.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    let whole_value = serde_json::to_value(&whole).expect("a template serializes");
    let applied = applied_template_fields(replica_set)
        .map(|fields| prune(&whole_value, &fields))
        .and_then(|value| serde_json::from_value::<PodTemplateSpec>(value).ok());
    let candidates: Vec<PodTemplateSpec> = applied.into_iter().chain([whole]).map(without_revision_label).collect();
    let hashes_back = |template: &PodTemplateSpec| {
        let workload = Workload { kubernetes: Some(KubernetesWorkload { template: template.clone(), ..workload.clone() }), ecs: None };
        revision::of(&workload) == revision
    };
    match candidates.iter().find(|t| hashes_back(t)) {
        Some(exact) => (exact.clone(), true),
        None => (candidates[0].clone(), false),
    }
}

fn applied_template_fields(replica_set: &ReplicaSet) -> Option<Value> {
    replica_set
        .managed_fields()
        .iter()
        // The creating apply; later resizes are applies through the scale subresource.
        .find(|entry| {
            entry.manager.as_deref() == Some(CONTROLLER_FIELD_MANAGER)
                && entry.operation.as_deref() == Some("Apply")
                && entry.subresource.is_none()
        })
        .and_then(|entry| entry.fields_v1.as_ref())
        .and_then(|fields| fields.0.get("f:spec")?.get("f:template").cloned())
}

/// Keeps the parts of `value` that a managedFields set (fieldsV1) names: `f:` keys of maps,
/// `k:` (by merge key) and `v:` (by value) items of lists. A leaf of the set keeps its whole value.
fn prune(value: &Value, fields: &Value) -> Value {
    let Some(fields) = fields.as_object().filter(|f| f.keys().any(|k| k != ".")) else { return value.clone() };
    match value {
        Value::Object(map) => {
            let kept: Map<String, Value> =
                map.iter().filter_map(|(key, sub)| fields.get(&format!("f:{key}")).map(|f| (key.clone(), prune(sub, f)))).collect();
            Value::Object(kept)
        }
        Value::Array(items) => items.iter().filter_map(|item| prune_item(item, fields)).collect(),
        other => other.clone(),
    }
}

fn prune_item(item: &Value, fields: &Map<String, Value>) -> Option<Value> {
    fields.iter().find_map(|(key, sub)| {
        if let Some(merge_key) = key.strip_prefix("k:") {
            let merge_key: Map<String, Value> = serde_json::from_str(merge_key).ok()?;
            merge_key.iter().all(|(k, v)| item.get(k) == Some(v)).then(|| prune(item, sub))
        } else if let Some(listed) = key.strip_prefix("v:") {
            let listed: Value = serde_json::from_str(listed).ok()?;
            (item == &listed).then(|| item.clone())
        } else {
            None
        }
    })
}

/// The controller adds the revision label to each ReplicaSet's pods; the spec never had it.
fn without_revision_label(mut template: PodTemplateSpec) -> PodTemplateSpec {
    if let Some(metadata) = template.metadata.as_mut() {
        if let Some(labels) = metadata.labels.as_mut() {
            labels.remove(REVISION_LABEL);
            if labels.is_empty() {
                metadata.labels = None;
            }
        }
        if *metadata == Default::default() {
            template.metadata = None;
        }
    }
    template
}

/// The task definition of an earlier ECS revision. The status keeps no history of task
/// definitions, but a revision is a hash of the task definition with the service's settings: the
/// other revisions of the task definition's family are tried, and only an exact match counts.
pub fn ecs_task_definition(workload: &EcsWorkload, revision: &str) -> Option<String> {
    let (family, number) = workload.task_definition.rsplit_once(':')?;
    let number: u64 = number.parse().ok()?;
    let older = (1..number).rev();
    let newer = number + 1..=number + ECS_NEWER_REVISIONS_TRIED;
    older.chain(newer).map(|n| format!("{family}:{n}")).find(|candidate| {
        let ecs = EcsWorkload { task_definition: candidate.clone(), ..workload.clone() };
        revision::of(&Workload { kubernetes: None, ecs: Some(ecs) }) == revision
    })
}

pub async fn undo(cluster: &Cluster, name: &str, requested: Option<&str>) -> Result<String, PluginError> {
    let rollout = cluster.rollout(name).await?;
    let qualified = qualified_name(&rollout);
    if rollout.spec.workload.ecs.is_some() {
        let target = choose_revision(&rollout, requested, &[]).map_err(|m| PluginError::refused(&qualified, m))?;
        let workload = rollout.spec.workload.ecs.clone().unwrap_or_default();
        let task_definition = ecs_task_definition(&workload, &target).ok_or_else(|| {
            PluginError::refused(
                &qualified,
                format!(
                    "the task definition of revision {target} is not recorded in the status and no revision of the family of {} \
                     matches it; set spec.workload.ecs.taskDefinition to it yourself",
                    workload.task_definition
                ),
            )
        })?;
        spec_edit::edit(cluster, name, |current| {
            let mut spec = current.spec.clone();
            let ecs = spec.workload.ecs.as_mut().ok_or_else(|| PluginError::refused(&qualified, "is no longer an ECS workload"))?;
            ecs.task_definition = task_definition.clone();
            Ok(spec)
        })
        .await?;
        return Ok(format!("rollout {qualified}: spec returned to revision {target} (task definition {task_definition})"));
    }

    if let Some(reference) = rollout.spec.workload.kubernetes.as_ref().and_then(|k| k.deployment_ref.as_ref()) {
        // The template is the Deployment's: that is where it goes back.
        return Err(PluginError::refused(
            &qualified,
            format!(
                "adopts Deployment {}, whose template it rolls out: put the earlier template back on the Deployment \
                 (kubectl rollout undo deployment/{}, or your Git history), and the Rollout rolls it out",
                reference.name, reference.name
            ),
        ));
    }
    let api: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let listed = api.list(&ListParams::default().labels(&format!("{ROLLOUT_LABEL}={name}"))).await?;
    let uid = rollout.uid();
    let owned: Vec<ReplicaSet> =
        listed.items.into_iter().filter(|rs| rs.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref())).collect();
    let target = choose_revision(&rollout, requested, &owned).map_err(|m| PluginError::refused(&qualified, m))?;
    let Some(replica_set) = owned.iter().find(|rs| rs.labels().get(REVISION_LABEL) == Some(&target)) else {
        let mut known: Vec<&str> = owned.iter().filter_map(|rs| rs.labels().get(REVISION_LABEL).map(String::as_str)).collect();
        known.sort();
        return Err(PluginError::refused(
            &qualified,
            format!(
                "no ReplicaSet of revision {target} is left (revisions kept: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ),
        ));
    };
    let workload = rollout.spec.workload.kubernetes.clone().unwrap_or_default();
    let (template, exact) = template_of(replica_set, &target, &workload);
    let (_, after) = spec_edit::edit(cluster, name, |current| {
        let mut spec = current.spec.clone();
        let kubernetes =
            spec.workload.kubernetes.as_mut().ok_or_else(|| PluginError::refused(&qualified, "is no longer a Kubernetes workload"))?;
        kubernetes.template = template.clone();
        Ok(spec)
    })
    .await?;
    let written = revision::of(&after.spec.workload);
    let mut line =
        format!("rollout {qualified}: spec returned to revision {target} (the template of ReplicaSet {})", replica_set.name_any());
    if !exact || written != target {
        line.push_str(&format!(
            "; the API server had normalised that template, so the spec is now revision {written}: the same pods, rolled out as a new revision"
        ));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPEC_TEMPLATE: &str = r#"{"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1", "ports": [{"containerPort": 8080}]}]}}"#;

    fn workload() -> KubernetesWorkload {
        serde_json::from_value(json!({"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": serde_json::from_str::<Value>(SPEC_TEMPLATE).unwrap()}))
            .unwrap()
    }

    fn spec_revision() -> String {
        revision::of(&Workload { kubernetes: Some(workload()), ecs: None })
    }

    /// A ReplicaSet as the API server stores it: the template with defaults filled in, and the
    /// controller's server-side apply recorded in managedFields.
    fn stored_replica_set(revision: &str, with_managed_fields: bool) -> ReplicaSet {
        let managed = json!([
            {"manager": "sluice", "operation": "Apply", "apiVersion": "autoscaling/v1", "fieldsType": "FieldsV1",
             "subresource": "scale", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "sluice", "operation": "Apply", "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {
                "f:replicas": {}, "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}, "f:sluice.dev/revision": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}
                }
            }}},
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
             "subresource": "status", "fieldsV1": {"f:status": {"f:replicas": {}}}}
        ]);
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{revision}"), "labels": {"sluice.dev/rollout": "web", "sluice.dev/revision": revision},
                "creationTimestamp": "2026-03-01T10:00:00Z",
                "managedFields": if with_managed_fields { managed } else { json!([]) }},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "sluice.dev/revision": revision}},
                "template": {"metadata": {"labels": {"app": "web", "sluice.dev/revision": revision}},
                    "spec": {"containers": [{"name": "web", "image": "web:1", "imagePullPolicy": "IfNotPresent",
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "resources": {}}],
                    "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
                    "securityContext": {}, "terminationGracePeriodSeconds": 30}}}
        }))
        .unwrap()
    }

    #[test]
    fn the_applied_fields_give_back_the_template_of_the_spec() {
        let revision = spec_revision();
        let (template, exact) = template_of(&stored_replica_set(&revision, true), &revision, &workload());
        assert!(exact, "the template hashes back to {revision}");
        assert_eq!(serde_json::to_value(&template).unwrap(), serde_json::from_str::<Value>(SPEC_TEMPLATE).unwrap());
    }

    #[test]
    fn without_managed_fields_the_whole_template_is_used_and_said_to_differ() {
        let revision = spec_revision();
        let (template, exact) = template_of(&stored_replica_set(&revision, false), &revision, &workload());
        assert!(!exact);
        let pod = template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
        assert!(!template.metadata.unwrap().labels.unwrap().contains_key(REVISION_LABEL));
    }

    fn rollout(stable: Option<&str>) -> Rollout {
        let mut rollout = Rollout::new(
            "web",
            crate::api::RolloutSpec {
                workload: Workload { kubernetes: Some(workload()), ecs: None },
                strategy: Default::default(),
                traffic: None,
                progress_deadline_seconds: None,
                progress_deadline_abort: false,
                paused: false,
                restart_at: None,
                rollback_window: None,
                hooks: Vec::new(),
            },
        );
        rollout.status = Some(crate::api::RolloutStatus { stable_revision: stable.map(String::from), ..Default::default() });
        rollout
    }

    fn replica_set_created(revision: &str, at: &str) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": format!("web-{revision}"), "creationTimestamp": at,
            "labels": {"sluice.dev/rollout": "web", "sluice.dev/revision": revision}}}))
        .unwrap()
    }

    #[test]
    fn undo_returns_to_stable_or_else_to_the_previous_revision() {
        let current = spec_revision();
        let history = [
            replica_set_created("aaaaaaaaaa", "2026-03-01T08:00:00Z"),
            replica_set_created("bbbbbbbbbb", "2026-03-01T09:00:00Z"),
            replica_set_created(&current, "2026-03-01T10:00:00Z"),
        ];
        assert_eq!(choose_revision(&rollout(Some("aaaaaaaaaa")), None, &history).unwrap(), "aaaaaaaaaa");
        assert_eq!(choose_revision(&rollout(Some(&current)), None, &history).unwrap(), "bbbbbbbbbb");
        assert_eq!(choose_revision(&rollout(Some(&current)), Some("aaaaaaaaaa"), &history).unwrap(), "aaaaaaaaaa");
        assert!(choose_revision(&rollout(Some(&current)), Some(&current), &history).unwrap_err().contains("already asks for"));
        assert!(choose_revision(&rollout(Some(&current)), None, &history[2..]).unwrap_err().contains("no earlier revision"));
    }

    #[test]
    fn an_ecs_revision_is_found_among_its_family_by_hash() {
        let ecs: EcsWorkload = serde_json::from_value(json!({"cluster": "prod", "service": "checkout",
            "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/checkout:9", "desiredCount": 4,
            "loadBalancer": {"containerName": "checkout", "containerPort": 8080}}))
        .unwrap();
        let seventh =
            EcsWorkload { task_definition: "arn:aws:ecs:us-east-1:123456789012:task-definition/checkout:7".into(), ..ecs.clone() };
        let revision = revision::of(&Workload { kubernetes: None, ecs: Some(seventh.clone()) });
        assert_eq!(ecs_task_definition(&ecs, &revision), Some(seventh.task_definition));
        assert_eq!(ecs_task_definition(&ecs, "0000000000"), None);
    }
}
