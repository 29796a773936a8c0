//! Replacing a revision's pods for `spec.restartAt`: the pods that started before it are
//! counted for the engine, and evicted, oldest first, as many at a time as the engine says. An
//! eviction honours the namespace's PodDisruptionBudgets; the ReplicaSet starts the new pods.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, EvictParams, ListParams};

use super::kubernetes::REVISION_LABEL;
use crate::api::Rollout;

/// The restart the spec asks for, due and not recorded done; only then are pods read.
fn asked(rollout: &Rollout) -> Option<Timestamp> {
    let status = rollout.status.clone().unwrap_or_default();
    crate::engine::restart::pending(&rollout.spec, &status).filter(|at| *at <= Timestamp::now())
}

/// The running pods of the ReplicaSet that started before `before`, oldest first.
async fn started_before(client: &kube::Client, replica_set: &ReplicaSet, before: Timestamp) -> Result<Vec<Pod>, kube::Error> {
    let Some(revision) = replica_set.labels().get(REVISION_LABEL) else { return Ok(Vec::new()) };
    let api: Api<Pod> = Api::namespaced(client.clone(), &replica_set.namespace().unwrap_or_default());
    let uid = replica_set.uid();
    let mut pods: Vec<Pod> = api
        .list(&ListParams::default().labels(&format!("{REVISION_LABEL}={revision}")))
        .await?
        .items
        .into_iter()
        .filter(|pod| pod.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref()))
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| pod.creation_timestamp().is_some_and(|t| t.0 < before))
        .collect();
    pods.sort_by_key(|pod| pod.creation_timestamp().map(|t| t.0));
    Ok(pods)
}

/// Pods of each running revision that started before the restart the spec asks for.
pub async fn stale_pods(client: &kube::Client, rollout: &Rollout, owned: &[&ReplicaSet]) -> Result<BTreeMap<String, i32>, kube::Error> {
    let Some(at) = asked(rollout) else { return Ok(BTreeMap::new()) };
    let mut stale = BTreeMap::new();
    for replica_set in owned.iter().filter(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0) {
        if let Some(revision) = replica_set.labels().get(REVISION_LABEL) {
            stale.insert(revision.clone(), started_before(client, replica_set, at).await?.len() as i32);
        }
    }
    Ok(stale)
}

/// Evicts up to `count` of the ReplicaSet's pods that started before `before`, oldest first.
/// An eviction a PodDisruptionBudget refuses now (429) is left for a later pass.
pub async fn evict(client: &kube::Client, replica_set: &ReplicaSet, before: Timestamp, count: i32) -> Result<bool, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &replica_set.namespace().unwrap_or_default());
    let mut evicted = false;
    for pod in started_before(client, replica_set, before).await?.iter().take(count.max(0) as usize) {
        match api.evict(&pod.name_any(), &EvictParams::default()).await {
            Ok(_) => evicted = true,
            Err(kube::Error::Api(status)) if status.code == 429 || status.code == 404 => {}
            Err(other) => return Err(other),
        }
    }
    Ok(evicted)
}
