//! The decision core. `step(input) -> Plan`: pure, no I/O, no clock, no async.
//!
//! Every decision of the product is made here from the spec, the last status, what the adapters
//! observed and the time the caller passes in. Actions are declarative ("revision abc has 3
//! replicas", "canary weight is 20"): scale and weight actions are emitted only where the
//! observation differs, Service selections on every pass (adapters skip a no-op), so applying a
//! plan twice, or after a crash, changes nothing more.

mod adoption;
mod blue_green;
pub mod builtins;
mod canary;
pub mod capacity;
pub mod commands;
mod conditions;
mod context;
pub mod delivery;
mod drift;
mod finishing;
mod gates;
mod hooks;
mod rest;
pub mod restart;
mod retiring;
pub mod revision;
mod rollback;
mod rolling;
mod steering;
pub mod target_groups;
pub mod tenancy;
mod validate;

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::api::{AnalysisPhase, RolloutAnalysis, RolloutCommands, RolloutSpec, RolloutStatus, StrategyKind};

pub use canary::{ratio_weight, split_at as ratio_split_at};
pub use context::{MAX_REPLICAS, default_progress_deadline};
pub use target_groups::TargetGroups;
pub use validate::{InvalidSpec, ValidSpec, validate};

/// Everything the engine looks at in one pass.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The Rollout's name; analysis runs are named after it.
    pub name: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a RolloutSpec,
    pub status: &'a RolloutStatus,
    /// People's requests (promote, abort, retry), from the Rollout's `sluice.dev/commands`
    /// annotation; never from the status, which is the controller's own.
    pub commands: &'a RolloutCommands,
    pub observed: &'a Observed,
    /// When the commit the spec was built from was made (the `sluice.dev/commit-time`
    /// annotation, RFC 3339), where the delivery lead time starts.
    pub commit_time: Option<&'a str>,
    pub now: Timestamp,
}

/// What the adapters saw, read fresh (or from watch caches) before each pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Every revision the platform runs or keeps (ReplicaSets, ECS task sets).
    pub revisions: Vec<RevisionObservation>,
    /// The traffic router's state; `None` when traffic follows the replica ratio.
    pub traffic: Option<TrafficObservation>,
    /// The analysis runs that belong to this rollout.
    pub analysis_runs: Vec<AnalysisRunObservation>,
    /// The revisions the role Services select now (ECS: the task sets behind each target group).
    pub services: ServiceSelection,
    /// The target group each revision is registered with, where the platform registers revisions
    /// itself (ECS task sets); empty where Services steer traffic. See [`target_groups`].
    pub registrations: std::collections::BTreeMap<String, String>,
    /// The Deployment the spec adopts (`deploymentRef`), when it exists.
    pub adopted: Option<AdoptedObservation>,
    /// The workload's full size as the platform holds it, where something besides the Rollout
    /// may change it (an ECS service's desiredCount); see [`capacity`].
    pub capacity: Option<i32>,
    /// Pods of each revision that started before `spec.restartAt`, read only while a restart
    /// is asked for and not yet done.
    pub stale_pods: std::collections::BTreeMap<String, i32>,
}

/// A Deployment the Rollout adopted, as it runs now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdoptedObservation {
    /// Replicas it is asked to run (its spec).
    pub replicas: i32,
}

/// Which revision each role's Service selects; `None` when unknown or not configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSelection {
    pub stable: Option<String>,
    pub canary: Option<String>,
    /// Services the strategy names that do not exist, as the field that names them and the name
    /// (`strategy.canary.canaryService web-canary`).
    pub missing: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevisionObservation {
    pub revision: String,
    /// Replicas asked for (ReplicaSet spec, task set computed desired count).
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    /// Where the revision's ready replicas take traffic, as a load balancer registers them (pod
    /// IPs from the role Services' EndpointSlices, ECS task IPs); read only behind an ALB.
    pub addresses: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficObservation {
    /// Canary weight read back from the router; `None` when it could not be read or is not ours.
    pub canary_weight: Option<i32>,
    /// Targets (their IDs: IP addresses) the stable role's target group reports healthy.
    pub stable_healthy: BTreeSet<String>,
    /// Targets the canary role's target group reports healthy.
    pub canary_healthy: BTreeSet<String>,
    /// The canary weight this controller process last wrote there for the same canary target
    /// group, if it did: a write whose pass was cut short before its status was written is
    /// still Sluice's own, not drift.
    pub last_written: Option<i32>,
    /// The target groups of the roles as the router found them, where the spec names none
    /// (through Ingresses, the AWS Load Balancer Controller's); `None` until it finds both.
    pub target_groups: Option<TargetGroups>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalysisRunObservation {
    pub name: String,
    pub phase: AnalysisPhase,
    pub message: Option<String>,
}

/// The result of a pass: what to do, the status to write after doing it, and when to look again.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Apply in order; write `status` only once all of them succeeded.
    pub actions: Vec<Action>,
    pub status: RolloutStatus,
    pub events: Vec<Event>,
    /// Look again after this long even if nothing changes; `None` waits for a change.
    pub requeue_after: Option<Duration>,
    /// Deliveries this pass completed, for the delivery (DORA) metrics once the status is written.
    pub delivered: Vec<delivery::Observation>,
}

impl Plan {
    /// A plan that changes nothing but the status and says `events`.
    pub fn report(status: RolloutStatus, events: Vec<Event>) -> Self {
        Self { actions: Vec::new(), status, events, requeue_after: None, delivered: Vec::new() }
    }
}

/// A desired state for one thing an adapter controls.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Action {
    /// The revision runs this many replicas (created if missing; 0 retires it). A revision the
    /// platform registers with a target group itself registers with `target_group` when created.
    Scale {
        revision: String,
        replicas: i32,
        target_group: Option<String>,
    },
    /// Percent of traffic on the canary role's target group; the rest goes to the stable one.
    SetWeight {
        canary_weight: i32,
        target_groups: TargetGroups,
        /// The forward action no longer holds both target groups, after Sluice had verified a
        /// weight there: something else rewrote it, and its terminal action is taken back.
        reclaim: bool,
    },
    /// The Service of a role selects this revision's pods.
    PointService {
        role: ServiceRole,
        revision: String,
    },
    /// The revision now serves production (ECS: primary task set).
    MarkStable {
        revision: String,
    },
    CreateAnalysisRun {
        name: String,
        revision: String,
        purpose: AnalysisPurpose,
        analysis: RolloutAnalysis,
        /// Metrics of the run besides its templates' (a Lambda or Job hook's).
        metrics: Vec<crate::api::Metric>,
        /// The `sluice.*` arguments, as they stand when the run is created.
        builtins: Vec<crate::api::AnalysisArg>,
    },
    TerminateAnalysisRun {
        name: String,
    },
    /// The adopted Deployment runs this many of its own pods (only ever fewer than it has).
    ScaleAdopted {
        replicas: i32,
    },
    /// The workload's full size where the platform holds it (an ECS service's desiredCount).
    SetCapacity {
        replicas: i32,
    },
    /// `count` pods of the revision that started before `started_before` are replaced (evicted,
    /// oldest first; the platform starts new ones).
    RestartPods {
        revision: String,
        started_before: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
        count: i32,
    },
    /// The test listener (or rule) sends all its traffic to the target group of this role.
    RouteTestTraffic {
        to: ServiceRole,
        target_group: String,
    },
    /// Requests matching each of `routes` go to the candidate's target group; no target group
    /// (the candidate does not serve) removes every header route.
    RouteHeaders {
        routes: Vec<crate::api::SetHeaderRoute>,
        target_group: Option<String>,
    },
}

/// Canary: the stable and canary Services. Blue/green: the active and preview Services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ServiceRole {
    Stable,
    Canary,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AnalysisPurpose {
    Step(usize),
    Background,
    PrePromotion,
    PostPromotion,
    /// The lifecycle hook at this index of `spec.hooks`.
    Hook(usize),
}

impl AnalysisPurpose {
    pub fn label(self) -> String {
        match self {
            Self::Step(i) => format!("step-{i}"),
            Self::Background => "background".into(),
            Self::PrePromotion => "pre-promotion".into(),
            Self::PostPromotion => "post-promotion".into(),
            Self::Hook(i) => format!("hook-{i}"),
        }
    }
}

/// A decision worth telling people about, emitted as a Kubernetes Event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub reason: EventReason,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum EventReason {
    RolloutStarted,
    NewRevision,
    StepCompleted,
    WeightSet,
    Paused,
    AnalysisStarted,
    AnalysisPassed,
    AnalysisFailed,
    AnalysisInconclusive,
    Promoted,
    Aborted,
    Retried,
    Resumed,
    Completed,
    ProgressDeadlineExceeded,
    /// Every pod that started before `spec.restartAt` is replaced.
    Restarted,
    /// The weights or the forward action were changed outside Sluice; the planned weight is restored.
    TrafficDrift,
    InvalidSpec,
    /// Refused by the tenancy policy: an AWS resource not allowed, or a Service not the Rollout's.
    TenancyRefused,
    ReconcileFailed,
}

impl EventReason {
    /// Warnings are what a person may need to act on.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            Self::AnalysisFailed
                | Self::AnalysisInconclusive
                | Self::TrafficDrift
                | Self::Aborted
                | Self::ProgressDeadlineExceeded
                | Self::InvalidSpec
                | Self::TenancyRefused
                | Self::ReconcileFailed
        )
    }
}

impl std::fmt::Display for EventReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Decide one pass.
pub fn step(input: Input<'_>) -> Plan {
    let mut plan = decide(input);
    plan.delivered = delivery::observe(input.status, &mut plan.status, input.commit_time, input.now);
    plan
}

fn decide(input: Input<'_>) -> Plan {
    let valid = match validate::validate_name(input.name).and_then(|()| validate(input.spec)) {
        Ok(valid) => valid,
        Err(invalid) => {
            let mut pass = context::Pass::new(input, None);
            pass.invalid_spec(&invalid);
            return pass.finish();
        }
    };
    let mut pass = context::Pass::new(input, Some(&valid));
    if let Some(missing) = input.observed.services.missing.first() {
        // Traffic would not follow the revisions; nothing moves until the Service exists.
        pass.invalid_spec(&InvalidSpec(format!(
            "{missing} does not exist in the namespace: create the Service, or remove it from the spec"
        )));
        return pass.finish();
    }
    if let Some(missing) = pass.adopted_missing() {
        pass.invalid_spec(&missing);
        return pass.finish();
    }
    pass.claim_capacity();
    pass.begin();
    if pass.at_rest() {
        rest::settle(&mut pass);
    } else if pass.replicas == 0 && pass.has_router() && !pass.status.abort && !pass.abort_requested {
        pass.hold_at_zero_replicas();
    } else {
        match valid.strategy {
            StrategyKind::Canary(canary) => canary::progress(&mut pass, canary, &valid.steps),
            StrategyKind::BlueGreen(blue_green) => blue_green::progress(&mut pass, blue_green),
            StrategyKind::Rolling(rolling) => rolling::progress(&mut pass, rolling),
        }
    }
    pass.route_previews();
    pass.give_way_adopted();
    pass.finish()
}

/// Passes that keep failing (`failure` says which call and why): the rollout stays where it is,
/// with a ReconcileError condition and one event per distinct failure; the first pass that
/// succeeds clears the condition.
pub fn failing(status: &RolloutStatus, failure: &str, now: Timestamp) -> Plan {
    let mut after = status.clone();
    let message = format!("retrying: {failure}");
    let known = status.conditions.iter().any(|c| c.type_ == conditions::RECONCILE_ERROR && c.message == message);
    conditions::set(&mut after.conditions, conditions::RECONCILE_ERROR, true, "ActionFailed", &message, now);
    if after.phase.is_none() {
        // Never run yet: it cannot start, and says why rather than showing no phase.
        after.phase = Some(crate::api::RolloutPhase::Degraded);
        after.message = Some(format!("cannot start: {message}"));
        conditions::summarize(&mut after, crate::api::RolloutPhase::Degraded, false, false, now);
    }
    let events = if known { Vec::new() } else { vec![Event { reason: EventReason::ReconcileFailed, message }] };
    Plan::report(after, events)
}

/// A Rollout whose stored object cannot be read as a Rollout (stored under an older schema, or
/// edited past it): nothing is touched, it is Degraded with the field at fault, said once.
pub fn unreadable(status: &RolloutStatus, generation: Option<i64>, error: &str, now: Timestamp) -> Plan {
    let mut after = status.clone();
    let message = format!("invalid spec: the object cannot be read as a Rollout ({error}); fix the field it names");
    let event = context::flag_invalid(status, &mut after, &message, now);
    after.observed_generation = generation;
    after.phase = Some(crate::api::RolloutPhase::Degraded);
    after.message = Some(message);
    conditions::summarize(&mut after, crate::api::RolloutPhase::Degraded, false, false, now);
    Plan::report(after, event.into_iter().collect())
}

#[cfg(test)]
mod fixture;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RolloutPhase;

    #[test]
    fn a_rollout_whose_first_passes_keep_failing_is_degraded_with_the_reason() {
        let now: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let plan = failing(&RolloutStatus::default(), "Forbidden: replicasets", now);
        assert_eq!(plan.status.phase, Some(RolloutPhase::Degraded));
        assert_eq!(plan.status.message.as_deref(), Some("cannot start: retrying: Forbidden: replicasets"));
        let mid_rollout =
            RolloutStatus { phase: Some(RolloutPhase::Paused), message: Some("paused at step 1".into()), ..Default::default() };
        let plan = failing(&mid_rollout, "throttled", now);
        assert_eq!(plan.status.phase, Some(RolloutPhase::Paused), "a rollout under way keeps where it stands");
        assert!(plan.status.conditions.iter().any(|c| c.type_ == conditions::RECONCILE_ERROR && c.message == "retrying: throttled"));
    }
}
