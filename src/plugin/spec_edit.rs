//! Changes to a Rollout's spec (pause, resume, restart, set image, undo): read, change, and
//! write back only the difference, guarded by the resourceVersion that was read.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use serde_json::{Map, Value, json};

use super::cluster::{Cluster, FIELD_MANAGER};
use super::error::PluginError;
use crate::api::{Rollout, RolloutSpec};

/// Writes attempted before giving up when others keep changing the Rollout.
pub(super) const ATTEMPTS: u32 = 5;

/// The JSON merge patch (RFC 7386) that turns `from` into `to`: changed values, `null` for
/// removed keys; lists are replaced whole, as a merge patch always does.
pub fn merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(from), Value::Object(to)) => {
            let mut patch = Map::new();
            for (key, old) in from {
                match to.get(key) {
                    None => {
                        patch.insert(key.clone(), Value::Null);
                    }
                    Some(new) if new != old => {
                        patch.insert(key.clone(), merge_patch(old, new));
                    }
                    Some(_) => {}
                }
            }
            for (key, new) in to.iter().filter(|(key, _)| !from.contains_key(*key)) {
                patch.insert(key.clone(), new.clone());
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}

/// Applies `change` to the spec as it is now and writes the difference. A concurrent write makes
/// the API server refuse the patch (its resourceVersion is stale); the change is then made again
/// on the newer copy. Returns the Rollout as read and as written.
pub async fn edit<F>(cluster: &Cluster, name: &str, change: F) -> Result<(Rollout, Rollout), PluginError>
where
    F: Fn(&Rollout) -> Result<RolloutSpec, PluginError>,
{
    let api = cluster.rollouts();
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..Default::default() };
    for _ in 0..ATTEMPTS {
        let before = cluster.rollout(name).await?;
        let spec = change(&before)?;
        let from = serde_json::to_value(&before.spec).expect("a spec serializes");
        let to = serde_json::to_value(&spec).expect("a spec serializes");
        let difference = merge_patch(&from, &to);
        if difference == json!({}) {
            return Ok((before.clone(), before));
        }
        let patch = json!({"metadata": {"resourceVersion": before.metadata.resource_version}, "spec": difference});
        match api.patch(name, &params, &Patch::Merge(&patch)).await {
            Ok(after) => return Ok((before, after)),
            Err(kube::Error::Api(status)) if status.is_conflict() => continue,
            Err(other) => return Err(cluster.explain(other, name)),
        }
    }
    Err(PluginError::Conflict { rollout: format!("{}/{name}", cluster.namespace), attempts: ATTEMPTS })
}

pub fn set_paused(rollout: &Rollout, paused: bool) -> RolloutSpec {
    RolloutSpec { paused, ..rollout.spec.clone() }
}

/// The spec with `restartAt` set to `now`; an ECS workload has no pods to restart.
pub fn restart_at(rollout: &Rollout, now: Timestamp) -> Result<RolloutSpec, String> {
    if rollout.spec.workload.ecs.is_some() {
        return Err("is an ECS workload: `restart` replaces Kubernetes pods; ECS replaces tasks when the task set changes \
                    (a new spec.workload.ecs.taskDefinition)"
            .to_string());
    }
    Ok(RolloutSpec { restart_at: Some(Time(now)), ..rollout.spec.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_is_refused_for_ecs_and_sets_restart_at_for_pods() {
        let of = |workload: Value| -> Rollout {
            serde_json::from_value(json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
                "spec": {"workload": workload, "strategy": {"canary": {"steps": []}}}}))
            .unwrap()
        };
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let pods = of(json!({"kubernetes": {"selector": {}, "template": {}}}));
        assert_eq!(restart_at(&pods, now).unwrap().restart_at, Some(Time(now)));
        let ecs = of(json!({"ecs": {"cluster": "c", "service": "s", "taskDefinition": "t:1", "desiredCount": 1,
            "loadBalancer": {"containerName": "web", "containerPort": 80}}}));
        assert!(restart_at(&ecs, now).unwrap_err().contains("is an ECS workload"));
    }

    #[test]
    fn a_merge_patch_sets_changes_and_nulls_removals() {
        let from = json!({"paused": true, "workload": {"kubernetes": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web", "tier": "x"}}}}}});
        let to = json!({"workload": {"kubernetes": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web", "track": "y"}}}}}});
        assert_eq!(
            merge_patch(&from, &to),
            json!({"paused": null, "workload": {"kubernetes": {"template": {"metadata": {"labels": {"tier": null, "track": "y"}}}}}})
        );
        assert_eq!(merge_patch(&to, &to), json!({}));
    }

    #[test]
    fn lists_are_replaced_whole() {
        let from = json!({"containers": [{"name": "web", "image": "web:1"}, {"name": "log", "image": "log:1"}]});
        let to = json!({"containers": [{"name": "web", "image": "web:2"}, {"name": "log", "image": "log:1"}]});
        assert_eq!(merge_patch(&from, &to), to);
    }

    #[test]
    fn applying_the_patch_gives_the_target() {
        // RFC 7386's own application, to check the patch round-trips.
        fn apply(target: &mut Value, patch: &Value) {
            match (target.as_object_mut(), patch.as_object()) {
                (Some(target), Some(patch)) => {
                    for (key, value) in patch {
                        if value.is_null() {
                            target.remove(key);
                        } else {
                            apply(target.entry(key.clone()).or_insert(Value::Null), value);
                        }
                    }
                }
                _ => *target = patch.clone(),
            }
        }
        let from = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": {"f": {"g": 1}}});
        let to = json!({"a": {"c": [2]}, "e": {"f": {"g": 2, "h": null}}, "i": true});
        let mut patched = from.clone();
        apply(&mut patched, &merge_patch(&from, &to));
        assert_eq!(patched, json!({"a": {"c": [2]}, "e": {"f": {"g": 2}}, "i": true}));
    }
}
