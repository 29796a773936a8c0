//! The ports of one Rollout's pass in the cluster: the one place that picks the backends a
//! Rollout's spec names (ReplicaSets or ECS task sets; ALB weights or the replica ratio), and the
//! Kubernetes API side of its analysis runs and status.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};

use super::Context;
use super::watched::{WatchedRollout, WatchedRun};
use crate::api::{
    AnalysisPhase, AnalysisRun, AnalysisTemplate, AnalysisTemplateRef, AnalysisTemplateSpec, ClusterAnalysisTemplate, Rollout,
    RolloutStatus, WorkloadKind,
};
use crate::engine::{AnalysisRunObservation, Event};
use crate::pass::Ports;
use crate::platform::adoption;
use crate::platform::ecs::TaskSets;
use crate::platform::kubernetes::{FIELD_MANAGER, REVISION_LABEL, ROLLOUT_LABEL, ReplicaSets};
use crate::ports::{AnalysisRuns, Effect, NewRun, Platform, PortError, Record, TrafficRouter, kube_failure};
use crate::traffic::ReplicaRatio;
use crate::traffic::alb::AlbWeights;
use crate::traffic::ingress::IngressWeights;

pub const PURPOSE_LABEL: &str = "sluice.dev/analysis-purpose";
const UNBUILT_RUN: &str = "the run has no metrics: its templates could not be built; see the rollout's earlier events";

/// Everything one Rollout's pass goes through, bound to that Rollout.
pub struct Adapters<'a> {
    platform: Box<dyn Platform + 'a>,
    router: Box<dyn TrafficRouter + 'a>,
    runs: RolloutRuns<'a>,
    record: StatusRecord<'a>,
}

impl<'a> Adapters<'a> {
    /// `rollout` as [`resolved`]: with an adopted Deployment's template in place.
    pub fn for_rollout(rollout: &'a Rollout, adopted: Option<&'a Deployment>, ctx: &'a Context) -> Self {
        let workload = &rollout.spec.workload;
        // A workload that is neither is refused by the engine before anything is changed.
        let platform: Box<dyn Platform + 'a> = match workload.kind() {
            Ok(WorkloadKind::Ecs(ecs)) => Box::new(TaskSets { ecs: &ctx.ecs, workload: ecs }),
            _ => {
                let (client, replica_sets, services) = (&ctx.client, &ctx.replica_sets, &ctx.services);
                Box::new(ReplicaSets { client, rollout, replica_sets, services, adopted })
            }
        };
        let router: Box<dyn TrafficRouter + 'a> = match alb_of(rollout) {
            Some(alb) if alb.through_ingresses() => {
                let service = |role| crate::platform::kubernetes::service_name(rollout, role).unwrap_or_default();
                Box::new(IngressWeights {
                    router: &ctx.router,
                    client: &ctx.client,
                    namespace: rollout.metadata.namespace.as_deref().unwrap_or_default(),
                    ingresses: &alb.ingresses,
                    stable_service: service(crate::engine::ServiceRole::Stable),
                    canary_service: service(crate::engine::ServiceRole::Canary),
                    service_port: alb.service_port.unwrap_or(80),
                })
            }
            Some(alb) => Box::new(AlbWeights { router: &ctx.router, alb }),
            None => Box::new(ReplicaRatio),
        };
        Self { platform, router, runs: RolloutRuns { rollout, ctx }, record: StatusRecord { rollout, ctx } }
    }

    pub fn ports(&self) -> Ports<'_> {
        Ports { platform: &*self.platform, router: &*self.router, runs: &self.runs, record: &self.record }
    }
}

/// The Deployment a Rollout adopts, if any, and the Rollout as its passes run it: with that
/// Deployment's pod template in place of its own.
pub async fn resolved<'a>(rollout: &'a Rollout, ctx: &Context) -> Result<(Cow<'a, Rollout>, Option<Arc<Deployment>>), PortError> {
    let adopted = adoption::find(&ctx.client, rollout, &ctx.deployments.state()).await.map_err(kube_failure)?;
    Ok((adoption::resolve(rollout, adopted.as_deref()), adopted))
}

pub fn alb_of(rollout: &Rollout) -> Option<&crate::api::AlbTraffic> {
    rollout.spec.traffic.as_ref().and_then(|t| t.alb.as_ref())
}

/// The Rollout's AnalysisRuns, from the watch cache; its templates, from the API server.
pub struct RolloutRuns<'a> {
    rollout: &'a Rollout,
    ctx: &'a Context,
}

impl RolloutRuns<'_> {
    fn api(&self) -> Api<AnalysisRun> {
        Api::namespaced(self.ctx.client.clone(), &self.rollout.namespace().unwrap_or_default())
    }
}

#[async_trait]
impl AnalysisRuns for RolloutRuns<'_> {
    async fn observe(&self) -> Result<Vec<AnalysisRunObservation>, PortError> {
        let namespace = self.rollout.namespace();
        let name = self.rollout.name_any();
        Ok(self
            .ctx
            .analysis_runs
            .state()
            .iter()
            .filter(|run| run.namespace() == namespace && run.labels().get(ROLLOUT_LABEL) == Some(&name))
            .map(|run| observation(run))
            .collect())
    }

    async fn template(&self, reference: &AnalysisTemplateRef) -> Result<Option<AnalysisTemplateSpec>, PortError> {
        let client = self.ctx.client.clone();
        let name = &reference.template_name;
        let found = match reference.cluster_scope {
            true => Api::<ClusterAnalysisTemplate>::all(client).get_opt(name).await.map(|t| t.map(|t| t.spec.into())),
            false => {
                let namespace = self.rollout.namespace().unwrap_or_default();
                Api::<AnalysisTemplate>::namespaced(client, &namespace).get_opt(name).await.map(|t| t.map(|t| t.spec))
            }
        };
        found.map_err(kube_failure)
    }

    async fn create(&self, run: NewRun) -> Result<Effect, PortError> {
        let rollout = self.rollout;
        let mut object = AnalysisRun::new(&run.name, run.spec);
        object.metadata.namespace = rollout.namespace();
        object.metadata.owner_references = rollout.controller_owner_ref(&()).map(|o| vec![o]);
        object.metadata.labels = Some(
            [(ROLLOUT_LABEL, rollout.name_any()), (REVISION_LABEL, run.revision), (PURPOSE_LABEL, run.purpose.label())]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        );
        let api = self.api();
        let effect = match api.create(&PostParams::default(), &object).await {
            Ok(_) => Effect::Changed,
            Err(kube::Error::Api(status)) if status.code == 409 => Effect::Unchanged,
            Err(other) => return Err(kube_failure(other)),
        };
        if let Some(status) = run.status {
            super::analysis_runs::apply_status(&api, &run.name, serde_json::json!(status)).await.map_err(kube_failure)?;
        }
        Ok(effect)
    }

    /// Applies only `spec.terminate`: the run's other fields were set when it was created.
    async fn terminate(&self, name: &str) -> Result<Effect, PortError> {
        let patch = serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "AnalysisRun",
            "metadata": {"name": name},
            "spec": {"terminate": true},
        });
        self.api().patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await.map_err(kube_failure)?;
        Ok(Effect::Changed)
    }
}

/// What the engine is told of one of the Rollout's runs.
fn observation(watched: &WatchedRun) -> AnalysisRunObservation {
    let name = watched.name_any();
    let (phase, message) = match watched {
        WatchedRun::Readable(run) => {
            let status = run.status.clone().unwrap_or_default();
            match (run.spec.metrics.is_empty(), status.phase.is_completed()) {
                // A run with nothing to measure never completes by itself: it is one that could
                // not be built, whose Error status was not written yet (the controller stopped
                // between the two writes).
                (true, false) => (AnalysisPhase::Error, Some(UNBUILT_RUN.to_string())),
                _ => (status.phase, status.message),
            }
        }
        // A decision it reached before it became unreadable stands; else it decides nothing more.
        WatchedRun::Unreadable(unreadable) if unreadable.status.phase.is_completed() => {
            (unreadable.status.phase, unreadable.status.message.clone())
        }
        WatchedRun::Unreadable(unreadable) => (AnalysisPhase::Error, Some(super::analysis_runs::unreadable_message(&unreadable.error))),
    };
    AnalysisRunObservation { name, phase, message }
}

/// The Rollout's status and events, with the notifications the pass decided kept in its outbox.
pub struct StatusRecord<'a> {
    rollout: &'a Rollout,
    ctx: &'a Context,
}

#[async_trait]
impl Record for StatusRecord<'_> {
    async fn write_status(&self, before: &RolloutStatus, status: &RolloutStatus, events: &[Event]) -> Result<(), PortError> {
        let (rollout, ctx) = (self.rollout, self.ctx);
        let mut status = status.clone();
        // The notifications are written with the decision that makes them, so none is lost to a
        // restart; what reached every URL leaves the outbox.
        let settled = ctx.notifier.settled(rollout, &before.notifications);
        let decided = match ctx.notifier.has_targets(rollout) {
            true => {
                let uid = rollout.uid().unwrap_or_default();
                crate::notify::decided(&uid, rollout.metadata.generation, &status, events, jiff::Timestamp::now())
            }
            false => Vec::new(),
        };
        let (outbox, crowded_out) = crate::notify::outbox(&before.notifications, &settled, decided);
        status.notifications = outbox;
        write_status(rollout, before, &status, ctx).await.map_err(kube_failure)?;
        if crowded_out > 0 {
            ctx.metrics.notifications.get_or_create(&crate::notify::OutcomeLabel { outcome: "dropped" }).inc_by(crowded_out as u64);
        }
        ctx.notifier.send(rollout, &status.notifications);
        Ok(())
    }

    async fn publish(&self, events: &[Event]) {
        publish(self.rollout, events, self.ctx).await;
    }
}

/// Server-side apply of the whole status under the controller's field manager; skipped when
/// nothing changed.
pub async fn write_status(
    rollout: &impl Resource<DynamicType = ()>,
    before: &RolloutStatus,
    status: &RolloutStatus,
    ctx: &Context,
) -> Result<(), kube::Error> {
    if status == before {
        return Ok(());
    }
    let patch = serde_json::json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "status": status});
    // Read back as a watched Rollout: the object may be one the types cannot read.
    let api: Api<WatchedRollout> = Api::namespaced(ctx.client.clone(), &rollout.namespace().unwrap_or_default());
    let updated = api.patch_status(&rollout.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    ctx.memory.wrote(&super::key(rollout), super::version(&updated), status.phase, &ctx.metrics);
    Ok(())
}

fn action_of(event: &Event) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(event.message.as_bytes());
    let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{short}", event.reason)
}

pub async fn publish(rollout: &impl Resource<DynamicType = ()>, events: &[Event], ctx: &Context) {
    use kube::runtime::events::{Event as KubeEvent, EventType};
    let reference = rollout.object_ref(&());
    for event in events {
        tracing::info!(rollout = %rollout.name_any(), reason = %event.reason, "{}", event.message);
        ctx.metrics.decisions.get_or_create(&super::metrics::EventLabel { reason: event.reason.to_string() }).inc();
        let kube_event = KubeEvent {
            type_: if event.reason.is_warning() { EventType::Warning } else { EventType::Normal },
            reason: event.reason.to_string(),
            note: Some(event.message.chars().take(1000).collect()),
            // The recorder folds events with the same action into one series and keeps the first
            // note: an action per distinct message keeps every decision readable, and a repeat of
            // the same decision shows as a count.
            action: action_of(event),
            secondary: None,
        };
        // An event that cannot be written never blocks a rollout.
        let _ = ctx.recorder.publish(&kube_event, &reference).await;
    }
}
