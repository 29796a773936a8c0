//! Kubernetes: each revision is a ReplicaSet owned by the Rollout, named `<rollout>-<revision>` and
//! labelled with the revision (like a Deployment's pod-template-hash); role Services select a
//! revision by that label.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use crate::api::{KubernetesWorkload, Rollout, StrategyKind};
use crate::engine::tenancy::{self, Refusal, ServiceClaim};
use crate::engine::{RevisionObservation, ServiceRole, ServiceSelection};
use crate::ports::{Effect, Platform, PlatformObservation, PortError, kube_failure};

pub const REVISION_LABEL: &str = "sluice.dev/revision";
pub const ROLLOUT_LABEL: &str = "sluice.dev/rollout";
pub const FIELD_MANAGER: &str = "sluice";
const DEFAULT_REVISION_HISTORY: usize = 10;

/// The ReplicaSet that runs `revision` with `replicas` pods.
pub fn replica_set(rollout: &Rollout, workload: &KubernetesWorkload, revision: &str, replicas: i32) -> ReplicaSet {
    let mut template = workload.template.clone();
    let metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(REVISION_LABEL.into(), revision.into());
    let mut selector = workload.selector.clone();
    selector.match_labels.get_or_insert_with(BTreeMap::new).insert(REVISION_LABEL.into(), revision.into());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{revision}", rollout.name_any())),
            namespace: rollout.namespace(),
            labels: Some(BTreeMap::from([(ROLLOUT_LABEL.into(), rollout.name_any()), (REVISION_LABEL.into(), revision.into())])),
            owner_references: rollout.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: workload.min_ready_seconds,
            selector: LabelSelector { ..selector },
            template: Some(template),
        }),
        status: None,
    }
}

/// The ReplicaSets this rollout owns.
pub fn owned<'a>(rollout: &Rollout, replica_sets: &'a [Arc<ReplicaSet>]) -> Vec<&'a ReplicaSet> {
    let uid = rollout.uid();
    replica_sets.iter().map(|rs| rs.as_ref()).filter(|rs| rs.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref())).collect()
}

pub fn observe(rollout: &Rollout, replica_sets: &[Arc<ReplicaSet>]) -> Vec<RevisionObservation> {
    owned(rollout, replica_sets)
        .into_iter()
        .filter_map(|rs| {
            let revision = rs.labels().get(REVISION_LABEL)?.clone();
            let status = rs.status.clone().unwrap_or_default();
            Some(RevisionObservation {
                revision,
                replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
                ready: status.ready_replicas.unwrap_or(0),
                available: status.available_replicas.unwrap_or(0),
                addresses: Default::default(),
            })
        })
        .collect()
}

/// Fills in each revision's ready endpoint addresses from its role Services' EndpointSlices.
async fn addresses(
    client: &kube::Client,
    rollout: &Rollout,
    owned: &[&ReplicaSet],
    revisions: &mut [RevisionObservation],
) -> Result<(), kube::Error> {
    let services: Vec<String> = [ServiceRole::Stable, ServiceRole::Canary].into_iter().filter_map(|r| service_name(rollout, r)).collect();
    let slices = super::endpoints::slices(client, &rollout.namespace().unwrap_or_default(), &services).await?;
    let names: Vec<(String, String)> =
        owned.iter().filter_map(|rs| Some((rs.labels().get(REVISION_LABEL)?.clone(), rs.name_any()))).collect();
    let names: Vec<(&str, &str)> = names.iter().map(|(revision, name)| (revision.as_str(), name.as_str())).collect();
    let mut found = super::endpoints::by_revision(&slices, &names);
    for revision in revisions {
        revision.addresses = found.remove(&revision.revision).unwrap_or_default();
    }
    Ok(())
}

/// The Service each role uses, from the strategy.
pub fn service_name(rollout: &Rollout, role: ServiceRole) -> Option<String> {
    service_field(rollout, role).map(|(_, name)| name)
}

/// The strategy field naming the role's Service, and the name.
fn service_field(rollout: &Rollout, role: ServiceRole) -> Option<(&'static str, String)> {
    let named = match (rollout.spec.strategy.kind().ok()?, role) {
        (StrategyKind::Canary(canary), ServiceRole::Stable) => ("strategy.canary.stableService", canary.stable_service.as_ref()),
        (StrategyKind::Canary(canary), ServiceRole::Canary) => ("strategy.canary.canaryService", canary.canary_service.as_ref()),
        (StrategyKind::BlueGreen(blue_green), ServiceRole::Stable) => {
            ("strategy.blueGreen.activeService", Some(&blue_green.active_service))
        }
        (StrategyKind::BlueGreen(blue_green), ServiceRole::Canary) => {
            ("strategy.blueGreen.previewService", blue_green.preview_service.as_ref())
        }
        (StrategyKind::Rolling(_), _) => return None,
    };
    let (field, name) = named;
    Some((field, name?.clone()))
}

/// Which revision each role Service selects now, and which named Services do not exist.
pub fn service_selection(rollout: &Rollout, services: &[Arc<Service>]) -> ServiceSelection {
    let namespace = rollout.namespace();
    let mut missing = Vec::new();
    let mut selected = |role| {
        let (field, name) = service_field(rollout, role)?;
        let Some(service) = services.iter().find(|s| s.name_any() == name && s.namespace() == namespace) else {
            missing.push(format!("Service {name} (named in {field})"));
            return None;
        };
        service.spec.as_ref()?.selector.as_ref()?.get(REVISION_LABEL).cloned()
    };
    let (stable, canary) = (selected(ServiceRole::Stable), selected(ServiceRole::Canary));
    ServiceSelection { stable, canary, missing }
}

/// The pod template's labels: what a Service must select to be the Rollout's without a mark.
fn pod_labels(rollout: &Rollout) -> BTreeMap<String, String> {
    let template = rollout.spec.workload.kubernetes.as_ref().and_then(|k| k.template.metadata.as_ref());
    template.and_then(|m| m.labels.clone()).unwrap_or_default()
}

fn check_service(rollout: &Rollout, field: &str, service: &Service) -> Result<(), Refusal> {
    let name = service.name_any();
    let claim = ServiceClaim {
        field,
        name: &name,
        labels: service.metadata.labels.as_ref(),
        selector: service.spec.as_ref().and_then(|s| s.selector.as_ref()),
    };
    tenancy::check_service(&rollout.name_any(), &pod_labels(rollout), &claim)
}

/// Every role Service the strategy names and the cache holds is the Rollout's to steer (see
/// [`tenancy::check_service`]); a Service not yet seen is checked before it is ever changed.
pub fn check_services(rollout: &Rollout, services: &[Arc<Service>]) -> Result<(), Refusal> {
    let Some(kubernetes) = &rollout.spec.workload.kubernetes else {
        // ECS traffic follows the target groups; no Service is ever changed.
        return Ok(());
    };
    if kubernetes.deployment_ref.is_some() && kubernetes.template == Default::default() {
        // The adopted Deployment is not there: the engine changes nothing until it is, and its
        // pods' labels are checked then.
        return Ok(());
    }
    let namespace = rollout.namespace();
    for (field, name) in [ServiceRole::Stable, ServiceRole::Canary].into_iter().filter_map(|role| service_field(rollout, role)) {
        if let Some(service) = services.iter().find(|s| s.name_any() == name && s.namespace() == namespace) {
            check_service(rollout, field, service)?;
        }
    }
    Ok(())
}

/// [`service_selection`], where a Service the watch cache does not hold yet is looked up in the
/// API server before it is reported missing: it may have been created just before its Rollout.
pub async fn observe_services(client: &kube::Client, rollout: &Rollout, cached: &[Arc<Service>]) -> Result<ServiceSelection, kube::Error> {
    let selection = service_selection(rollout, cached);
    if selection.missing.is_empty() {
        return Ok(selection);
    }
    let api: Api<Service> = Api::namespaced(client.clone(), &rollout.namespace().unwrap_or_default());
    let mut services = cached.to_vec();
    for name in [ServiceRole::Stable, ServiceRole::Canary].into_iter().filter_map(|role| service_name(rollout, role)) {
        services.extend(api.get_opt(&name).await?.map(Arc::new));
    }
    Ok(service_selection(rollout, &services))
}

/// Resizes the revision's ReplicaSet, or creates it for the revision the spec asks for; both are
/// server-side applies by the controller's field manager. An existing ReplicaSet keeps its own
/// template: only its replica count is applied, through the scale subresource, so the managed
/// fields of the creating apply keep the template exactly as the controller applied it
/// (`kubectl sluice undo` reads it back from them; re-applying the stored template would claim
/// the API server's defaults too).
pub async fn scale(
    client: &kube::Client,
    rollout: &Rollout,
    replica_sets: &[Arc<ReplicaSet>],
    revision: &str,
    replicas: i32,
) -> Result<(), ScaleError> {
    let Some(workload) = &rollout.spec.workload.kubernetes else { return Ok(()) };
    let namespace = rollout.namespace().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
    let existing =
        owned(rollout, replica_sets).into_iter().find(|rs| rs.labels().get(REVISION_LABEL).map(String::as_str) == Some(revision));
    if let Some(rs) = existing {
        let scale = serde_json::json!({
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": rs.name_any(), "namespace": namespace},
            "spec": {"replicas": replicas},
        });
        api.patch_scale(&rs.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&scale)).await?;
        return Ok(());
    }
    if crate::engine::revision::of(&rollout.spec.workload) != revision {
        return Err(ScaleError::TemplateGone(revision.to_string()));
    }
    let mut desired = replica_set(rollout, workload, revision, replicas);
    desired.metadata.managed_fields = None;
    let value = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": desired.metadata,
        "spec": desired.spec,
    });
    let name = desired.metadata.name.clone().unwrap_or_default();
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&value)).await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("revision {0} has no ReplicaSet and its template is no longer in the spec")]
    TemplateGone(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PointError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Refused(Refusal),
}

/// Points the role's Service at the revision's pods (no-op when it already does or has no Service).
pub async fn point_service(
    client: &kube::Client,
    rollout: &Rollout,
    services: &[Arc<Service>],
    role: ServiceRole,
    revision: &str,
) -> Result<Effect, PointError> {
    let Some(name) = service_name(rollout, role) else { return Ok(Effect::Unchanged) };
    let namespace = rollout.namespace();
    let Some(service) = services.iter().find(|s| s.name_any() == name && s.namespace() == namespace) else {
        // The engine holds the rollout while a Service is missing; nothing to point.
        return Ok(Effect::Unchanged);
    };
    if let Some((field, _)) = service_field(rollout, role)
        && let Err(refusal) = check_service(rollout, field, service)
    {
        // Checked before the pass; a Service changed since is still never taken over.
        return Err(PointError::Refused(refusal));
    }
    let current = match role {
        ServiceRole::Stable => service_selection(rollout, services).stable,
        ServiceRole::Canary => service_selection(rollout, services).canary,
    };
    if current.as_deref() == Some(revision) {
        return Ok(Effect::Unchanged);
    }
    let namespace = rollout.namespace().unwrap_or_default();
    let api: Api<Service> = Api::namespaced(client.clone(), &namespace);
    // A merge patch of the one key: a Service's selector is an atomic map, so a server-side apply
    // would own the whole selector and take the Service's own keys from whoever wrote them.
    let patch = serde_json::json!({"spec": {"selector": {REVISION_LABEL: revision}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(Effect::Changed)
}

/// Deletes scaled-down ReplicaSets beyond `revisionHistoryLimit` (oldest first).
pub async fn prune_history(
    client: &kube::Client,
    rollout: &Rollout,
    replica_sets: &[Arc<ReplicaSet>],
    keep: &[&str],
) -> Result<(), kube::Error> {
    let Some(workload) = &rollout.spec.workload.kubernetes else { return Ok(()) };
    let limit = workload.revision_history_limit.map_or(DEFAULT_REVISION_HISTORY, |l| l.max(0) as usize);
    let mut idle: Vec<&ReplicaSet> = owned(rollout, replica_sets)
        .into_iter()
        .filter(|rs| rs.spec.as_ref().and_then(|s| s.replicas) == Some(0))
        .filter(|rs| !keep.iter().any(|k| rs.labels().get(REVISION_LABEL).map(String::as_str) == Some(*k)))
        .collect();
    if idle.len() <= limit {
        return Ok(());
    }
    idle.sort_by_key(|rs| rs.creation_timestamp().map(|t| t.0));
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &rollout.namespace().unwrap_or_default());
    for rs in idle.iter().take(idle.len() - limit) {
        api.delete(&rs.name_any(), &DeleteParams::background()).await?;
    }
    Ok(())
}

/// The [`Platform`] of one Rollout's ReplicaSets, read from the controller's watch caches.
pub struct ReplicaSets<'a> {
    pub client: &'a kube::Client,
    pub rollout: &'a Rollout,
    pub replica_sets: &'a Store<ReplicaSet>,
    pub services: &'a Store<Service>,
    /// The Deployment the Rollout adopts, as found before the pass.
    pub adopted: Option<&'a Deployment>,
}

#[async_trait::async_trait]
impl Platform for ReplicaSets<'_> {
    async fn observe(&self) -> Result<PlatformObservation, PortError> {
        let services = observe_services(self.client, self.rollout, &self.services.state()).await.map_err(kube_failure)?;
        let replica_sets = self.replica_sets.state();
        let mut revisions = observe(self.rollout, &replica_sets);
        let adopted = self.adopted.map(super::adoption::observe);
        let owned = owned(self.rollout, &replica_sets);
        if self.rollout.spec.traffic.as_ref().is_some_and(|t| t.alb.is_some()) {
            addresses(self.client, self.rollout, &owned, &mut revisions).await.map_err(kube_failure)?;
        }
        let stale_pods = super::restart::stale_pods(self.client, self.rollout, &owned).await.map_err(kube_failure)?;
        Ok(PlatformObservation { revisions, services, registrations: Default::default(), adopted, capacity: None, stale_pods })
    }

    async fn scale(&self, revision: &str, replicas: i32, _target_group: Option<&str>) -> Result<Effect, PortError> {
        match scale(self.client, self.rollout, &self.replica_sets.state(), revision, replicas).await {
            Ok(()) => Ok(Effect::Changed),
            Err(ScaleError::Kube(e)) => Err(kube_failure(e)),
            Err(gone @ ScaleError::TemplateGone(_)) => Err(PortError::new("platform", "platform", gone)),
        }
    }

    async fn point_traffic(&self, role: ServiceRole, revision: &str) -> Result<Effect, PortError> {
        match point_service(self.client, self.rollout, &self.services.state(), role, revision).await {
            Ok(effect) => Ok(effect),
            Err(PointError::Kube(e)) => Err(kube_failure(e)),
            Err(PointError::Refused(refusal)) => Err(PortError::new("platform", "platform", refusal.0)),
        }
    }

    /// Nothing to mark: the stable Service already selects the revision.
    async fn mark_stable(&self, _revision: &str) -> Result<Effect, PortError> {
        Ok(Effect::Unchanged)
    }

    async fn retire(&self, keep: &[&str]) -> Result<(), PortError> {
        prune_history(self.client, self.rollout, &self.replica_sets.state(), keep).await.map_err(kube_failure)
    }

    async fn scale_adopted(&self, replicas: i32) -> Result<Effect, PortError> {
        let Some(deployment) = self.adopted else { return Ok(Effect::Unchanged) };
        super::adoption::scale(self.client, deployment, replicas).await.map_err(kube_failure)
    }

    async fn release_adopted(&self) -> Result<Effect, PortError> {
        let Some(deployment) = self.adopted else { return Ok(Effect::Unchanged) };
        super::adoption::release(self.client, deployment).await.map_err(kube_failure)
    }

    async fn restart(&self, revision: &str, started_before: jiff::Timestamp, count: i32) -> Result<Effect, PortError> {
        let replica_sets = self.replica_sets.state();
        let own =
            owned(self.rollout, &replica_sets).into_iter().find(|rs| rs.labels().get(REVISION_LABEL).map(String::as_str) == Some(revision));
        let Some(replica_set) = own else { return Ok(Effect::Unchanged) };
        match super::restart::evict(self.client, replica_set, started_before, count).await.map_err(kube_failure)? {
            true => Ok(Effect::Changed),
            false => Ok(Effect::Unchanged),
        }
    }

    /// The spec's replicas are the size (an autoscaler writes them through the scale subresource).
    async fn set_capacity(&self, _replicas: i32) -> Result<Effect, PortError> {
        Ok(Effect::Unchanged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RolloutSpec;

    fn rollout() -> Rollout {
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "workload": {"kubernetes": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}},
            "strategy": {"canary": {"steps": [], "stableService": "web-stable"}}
        }))
        .unwrap();
        let mut rollout = Rollout::new("web", spec);
        rollout.metadata.namespace = Some("shop".into());
        rollout.metadata.uid = Some("uid-1".into());
        rollout
    }

    #[test]
    fn a_revision_replica_set_is_owned_and_selects_only_its_pods() {
        let r = rollout();
        let rs = replica_set(&r, r.spec.workload.kubernetes.as_ref().unwrap(), "abc", 2);
        assert_eq!(rs.metadata.name.as_deref(), Some("web-abc"));
        let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("uid-1", Some(true)));
        let spec = rs.spec.unwrap();
        assert_eq!(spec.selector.match_labels.unwrap().get(REVISION_LABEL).map(String::as_str), Some("abc"));
        let labels = spec.template.unwrap().metadata.unwrap().labels.unwrap();
        assert_eq!((labels.get("app").map(String::as_str), labels.get(REVISION_LABEL).map(String::as_str)), (Some("web"), Some("abc")));
    }
}
