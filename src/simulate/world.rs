//! A simulated world under a virtual clock: a platform (playing Kubernetes, whose Services steer
//! the target groups, or ECS, whose task sets register with them), an ALB and the analysis runs,
//! behind the same ports as the real adapters, driven by the same pass ([`crate::pass`]) as the
//! controller. Used by `sluice simulate` and by the deterministic simulation tests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::analysis::condition::MeasuredValue;
use crate::analysis::run as analysis_run;
use crate::api::{AnalysisRunSpec, AnalysisRunStatus, AnalysisTemplateRef, AnalysisTemplateSpec, RolloutSpec, RolloutStatus, WorkloadKind};
use crate::engine::{
    self, Action, AdoptedObservation, AnalysisRunObservation, Event, Plan, RevisionObservation, ServiceRole, ServiceSelection,
    TargetGroups, TrafficObservation,
};
use crate::pass::{self, Ports, Subject};
use crate::ports::{AnalysisRuns, Effect, NewRun, Platform, PlatformObservation, PortError, Record, TrafficRouter};

/// What a metric reads at a moment of the simulation.
#[derive(Clone, Debug, PartialEq)]
pub enum Sample {
    /// A number, or any JSON value (an alarm state such as "ALARM", a document).
    Value(serde_json::Value),
    NoData,
    Error(String),
}

/// Where simulated measurements come from: `elapsed` is the time since the simulation began.
pub trait MetricSource: Send {
    fn sample(&mut self, metric: &str, elapsed: Duration) -> Sample;
}

/// Injected trouble. The default injects none.
pub trait Faults: Send {
    /// This call that changes something (`scale`, `set weight`, `create run`, …) fails: the pass
    /// stops; status is not written.
    fn call_fails(&mut self, _call: &str, _now: Timestamp) -> bool {
        false
    }
    /// The controller dies after applying `applied` actions of the pass, before writing status.
    fn crash_after(&mut self, _applied: usize) -> bool {
        false
    }
    /// Extra time for one new pod of `revision` to become ready.
    fn readiness_delay(&mut self, _revision: &str) -> Duration {
        Duration::ZERO
    }
    /// The router's weight cannot be read back this pass.
    fn weight_unreadable(&mut self) -> bool {
        false
    }
}

pub struct NoFaults;
impl Faults for NoFaults {}

struct Pods {
    /// When each pod becomes ready; the length is the replica count.
    ready_at: Vec<Timestamp>,
}

pub struct SimRun {
    pub spec: AnalysisRunSpec,
    pub status: AnalysisRunStatus,
    pub revision: String,
}

/// How long an interrupted pass waits before the next one.
const RETRY_AFTER_ERROR: std::time::Duration = std::time::Duration::from_secs(5);

/// What one pass did.
#[derive(Debug)]
pub enum PassOutcome {
    Applied {
        plan: Box<Plan>,
        applied: Vec<Action>,
        /// When the controller looks again: the plan's wish, or sooner where the platform is polled.
        requeue_after: Option<std::time::Duration>,
    },
    /// An action failed or the controller crashed: some actions may be applied, status not
    /// written. `plan` is `None` when the pass stopped before the engine decided.
    Interrupted { plan: Option<Box<Plan>>, applied: Vec<Action>, reason: String },
}

impl PassOutcome {
    /// When the controller runs the next pass: at once after applied actions (they change
    /// watched objects, and a watch event starts a pass), after the requeue otherwise, and
    /// after a short wait when the pass was interrupted.
    pub fn next_pass_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Applied { applied, .. } if !applied.is_empty() => Some(std::time::Duration::ZERO),
            Self::Applied { requeue_after, .. } => *requeue_after,
            Self::Interrupted { .. } => Some(RETRY_AFTER_ERROR),
        }
    }
}

pub struct World {
    pub name: String,
    pub started: Timestamp,
    pub now: Timestamp,
    pub generation: i64,
    pub spec: RolloutSpec,
    /// The status as stored in the API server.
    pub status: RolloutStatus,
    /// People's requests, as in the Rollout's `sluice.dev/commands` annotation.
    pub commands: crate::api::RolloutCommands,
    pods: BTreeMap<String, Pods>,
    /// The weight of each target group on the router; empty without a router.
    weights: BTreeMap<String, i32>,
    /// The canary group and weight the controller last wrote (it remembers across cut passes).
    last_written: Option<(String, i32)>,
    /// Which revision each role's Service selects (Kubernetes).
    pub services: BTreeMap<&'static str, String>,
    /// The target group each revision's task set is registered with (ECS).
    registrations: BTreeMap<String, String>,
    /// The target group the test listener ("test") and the header route ("header") send to.
    previews: BTreeMap<&'static str, String>,
    pub primary: Option<String>,
    pub runs: BTreeMap<String, SimRun>,
    pub templates: BTreeMap<String, AnalysisTemplateSpec>,
    pub ready_after: Duration,
    pub faults: Box<dyn Faults>,
    pub metrics: Box<dyn MetricSource>,
    /// Scale-downs that took capacity still serving traffic; the engine must never cause one.
    pub unsafe_scale_downs: Vec<String>,
    /// Replicas that may be unavailable during a scale-down (a rolling update's maxUnavailable).
    pub unavailable_allowance: i32,
    /// The replicas of the Deployment the spec adopts (`deploymentRef`), and those it had before.
    pub adopted: Option<AdoptedDeployment>,
    /// The service's desiredCount, when played as ECS.
    pub capacity: i32,
    /// Calls of the current pass that changed something.
    changes: usize,
}

/// The simulated Deployment a Rollout adopts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdoptedDeployment {
    pub replicas: i32,
    pub before: Option<i32>,
}

pub(super) fn role_key(role: ServiceRole) -> &'static str {
    match role {
        ServiceRole::Stable => "stable",
        ServiceRole::Canary => "canary",
    }
}

fn adopts(spec: &RolloutSpec) -> bool {
    spec.workload.kubernetes.as_ref().is_some_and(|k| k.deployment_ref.is_some())
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t + SignedDuration::try_from(d).unwrap_or(SignedDuration::ZERO)
}

impl World {
    /// A world where `stable_spec`'s revision runs at full size and takes all traffic.
    pub fn at_rest(name: &str, stable_spec: &RolloutSpec, start: Timestamp, metrics: Box<dyn MetricSource>) -> Self {
        let stable = engine::revision::of(&stable_spec.workload);
        let n = stable_spec.workload.replicas();
        let mut pods = BTreeMap::new();
        pods.insert(stable.clone(), Pods { ready_at: vec![start; n.max(0) as usize] });
        let services = BTreeMap::from([("stable", stable.clone()), ("canary", stable.clone())]);
        let status = RolloutStatus {
            phase: Some(crate::api::RolloutPhase::Healthy),
            stable_revision: Some(stable.clone()),
            update_revision: Some(stable.clone()),
            observed_generation: Some(1),
            applied_capacity: matches!(stable_spec.workload.kind(), Ok(WorkloadKind::Ecs(_))).then_some(n),
            ..Default::default()
        };
        let alb = stable_spec.traffic.as_ref().and_then(|t| t.alb.as_ref());
        let weights = alb
            .map(|alb| BTreeMap::from([(alb.stable_target_group_arn.clone(), 100), (alb.canary_target_group_arn.clone(), 0)]))
            .unwrap_or_default();
        let registrations = match (alb, stable_spec.workload.kind()) {
            (Some(alb), Ok(WorkloadKind::Ecs(_))) => BTreeMap::from([(stable.clone(), alb.stable_target_group_arn.clone())]),
            _ => BTreeMap::new(),
        };
        Self {
            name: name.to_string(),
            started: start,
            now: start,
            generation: 1,
            spec: stable_spec.clone(),
            status,
            commands: Default::default(),
            pods,
            weights,
            last_written: None,
            services,
            registrations,
            previews: BTreeMap::new(),
            primary: Some(stable),
            runs: BTreeMap::new(),
            templates: BTreeMap::new(),
            ready_after: Duration::from_secs(10),
            faults: Box::new(NoFaults),
            metrics,
            unsafe_scale_downs: Vec::new(),
            unavailable_allowance: 0,
            adopted: adopts(stable_spec).then_some(AdoptedDeployment { replicas: n, before: None }),
            capacity: n,
            changes: 0,
        }
    }

    pub fn set_spec(&mut self, spec: RolloutSpec) {
        if spec != self.spec {
            self.spec = spec;
            self.generation += 1;
        }
    }

    pub fn replicas(&self, revision: &str) -> i32 {
        self.pods.get(revision).map_or(0, |p| p.ready_at.len() as i32)
    }

    pub fn ready(&self, revision: &str) -> i32 {
        self.pods.get(revision).map_or(0, |p| p.ready_at.iter().filter(|t| **t <= self.now).count() as i32)
    }

    /// Revisions with at least one replica.
    pub fn running(&self) -> Vec<String> {
        self.pods.iter().filter(|(_, p)| !p.ready_at.is_empty()).map(|(r, _)| r.clone()).collect()
    }

    /// Task sets register with the target groups themselves (ECS); else Services steer them.
    fn registers_targets(&self) -> bool {
        matches!(self.spec.workload.kind(), Ok(WorkloadKind::Ecs(_)))
    }

    /// The target groups' roles as the stored status gives them.
    fn target_groups(&self) -> Option<TargetGroups> {
        engine::target_groups::roles(&self.spec, self.status.stable_revision.as_deref(), &self.registrations)
    }

    /// The revision whose pods are the targets of `target_group`.
    /// The addresses of the revision's ready pods.
    fn addresses(&self, revision: &str) -> std::collections::BTreeSet<String> {
        (0..self.ready(revision)).map(|i| format!("{revision}-{i}")).collect()
    }

    fn revision_on(&self, target_group: &str) -> Option<String> {
        if self.registers_targets() {
            return self.registrations.iter().find(|(_, tg)| *tg == target_group).map(|(r, _)| r.clone());
        }
        let alb = self.spec.traffic.as_ref().and_then(|t| t.alb.as_ref())?;
        let role = if target_group == alb.stable_target_group_arn { "stable" } else { "canary" };
        self.services.get(role).cloned()
    }

    /// The target group a revision's task set is registered with (ECS).
    pub fn registration(&self, revision: &str) -> Option<&str> {
        self.registrations.get(revision).map(String::as_str)
    }

    /// Percent of traffic on a target group; `None` without a router.
    pub fn weight_of(&self, target_group: &str) -> Option<i32> {
        self.weights.get(target_group).copied()
    }

    /// Percent of traffic on the canary role's target group; `None` without a router.
    pub fn weight(&self) -> Option<i32> {
        let groups = self.target_groups()?;
        self.weights.get(&groups.canary).copied()
    }

    /// The revision that takes a role's traffic: the one its Service selects (Kubernetes), or the
    /// one registered with the role's target group (ECS).
    pub fn serving(&self, role: &str) -> Option<String> {
        if !self.registers_targets() {
            return self.services.get(role).cloned();
        }
        let groups = self.target_groups()?;
        self.revision_on(if role == "stable" { &groups.stable } else { &groups.canary })
    }

    /// The role whose target group the test listener ("test") or the header route ("header")
    /// sends requests to.
    pub fn preview(&self, route: &str) -> Option<&'static str> {
        let target_group = self.previews.get(route)?;
        let groups = self.target_groups()?;
        Some(if *target_group == groups.stable { "stable" } else { "canary" })
    }

    /// Takes every measurement due now.
    pub fn measure(&mut self) {
        let elapsed = Duration::try_from(self.now.duration_since(self.started)).unwrap_or_default();
        for run in self.runs.values_mut() {
            for index in analysis_run::due(&run.spec, &run.status, self.now) {
                let name = run.spec.metrics[index].name.clone();
                let outcome = match self.metrics.sample(&name, elapsed) {
                    Sample::Value(v) => Ok(MeasuredValue::Json(v)),
                    Sample::NoData => Ok(MeasuredValue::NoData),
                    Sample::Error(e) => Err(e),
                };
                analysis_run::record(&run.spec, &mut run.status, index, self.now, self.now, outcome);
            }
            if run.spec.terminate {
                analysis_run::settle(&run.spec, &mut run.status);
            }
        }
    }

    /// A call that changes something may crash the controller or fail.
    fn guard(&mut self, call: &str) -> Result<(), PortError> {
        if self.faults.crash_after(self.changes) {
            return Err(PortError::new("simulation", "crash", "controller crashed"));
        }
        if self.faults.call_fails(call, self.now) {
            return Err(PortError::new("simulation", "fault", format!("{call} failed")));
        }
        Ok(())
    }

    fn changed(&mut self, changed: bool) -> Effect {
        if changed {
            self.changes += 1;
            Effect::Changed
        } else {
            Effect::Unchanged
        }
    }

    /// Pods of each revision that were ready before the restart the spec asks for and the status
    /// has not recorded as done (so started before it), as the platform reports them.
    fn stale_pods(&self) -> BTreeMap<String, i32> {
        let Some(at) = engine::restart::pending(&self.spec, &self.status).filter(|_| !self.registers_targets()) else {
            return BTreeMap::new();
        };
        self.pods.iter().map(|(revision, pods)| (revision.clone(), pods.ready_at.iter().filter(|t| **t < at).count() as i32)).collect()
    }

    /// Replaces `count` pods ready before `before` with new ones, and checks what stays available.
    fn restart(&mut self, revision: &str, before: Timestamp, count: i32) -> bool {
        let (ready_after, now) = (self.ready_after, self.now);
        let Some(pods) = self.pods.get_mut(revision) else { return false };
        pods.ready_at.sort();
        let old = pods.ready_at.iter().filter(|t| **t < before).count().min(count.max(0) as usize);
        pods.ready_at.drain(..old);
        pods.ready_at.extend((0..old).map(|_| after(now, ready_after)));
        let n = self.spec.workload.replicas();
        let available: i32 = self.pods.keys().map(|r| self.ready(r)).sum();
        if available < n - self.unavailable_allowance {
            self.unsafe_scale_downs.push(format!(
                "{}: restarted {old} pods of {revision} leaving {available} ready of the {n} needed",
                self.elapsed().as_secs()
            ));
        }
        old > 0
    }

    fn scale(&mut self, revision: &str, replicas: i32, target_group: Option<&str>) -> Result<bool, PortError> {
        let current = self.replicas(revision);
        if replicas == current {
            return Ok(false);
        }
        if self.registers_targets() && current == 0 && replicas > 0 {
            let Some(target_group) = target_group else {
                return Err(PortError::new("simulation", "invalid", format!("no target group is free for revision {revision}")));
            };
            self.registrations.insert(revision.to_string(), target_group.to_string());
        }
        if replicas == 0 && current > 0 {
            self.check_retirement(revision);
        }
        let extra: Vec<Duration> = (current..replicas).map(|_| self.faults.readiness_delay(revision)).collect();
        let (ready_after, now) = (self.ready_after, self.now);
        let pods = self.pods.entry(revision.to_string()).or_insert(Pods { ready_at: Vec::new() });
        let target = replicas.max(0) as usize;
        if target < pods.ready_at.len() {
            // Like a ReplicaSet: pods not yet ready go first.
            pods.ready_at.sort();
            pods.ready_at.truncate(target);
        } else {
            pods.ready_at.extend(extra.into_iter().map(|d| after(now, ready_after + d)));
        }
        if target == 0 && self.registers_targets() {
            // A task set at 0 is deleted, and with it its registration.
            self.registrations.remove(revision);
        }
        Ok(true)
    }

    fn create_run(&mut self, run: NewRun) -> bool {
        if self.runs.contains_key(&run.name) {
            return false;
        }
        let status = run.status.unwrap_or_default();
        let status = AnalysisRunStatus { started_at: Some(Time(self.now)), ..status };
        self.runs.insert(run.name, SimRun { spec: run.spec, status, revision: run.revision });
        true
    }

    /// Traffic first: a revision is retired only once no traffic reaches it (router), or once
    /// the others hold the capacity (replica ratio).
    fn check_retirement(&mut self, revision: &str) {
        let n = self.spec.workload.replicas();
        let groups = self.target_groups();
        let violation = match &groups {
            Some(groups) => [("canary", &groups.canary), ("stable", &groups.stable)]
                .into_iter()
                .filter(|(_, tg)| self.revision_on(tg).as_deref() == Some(revision))
                .find_map(|(role, tg)| {
                    let weight = self.weights.get(tg.as_str()).copied().unwrap_or(0);
                    (weight > 0).then(|| format!("retired {revision} while the {role} target group had {weight}% of traffic"))
                }),
            None => {
                let others: i32 = self.pods.keys().filter(|r| *r != revision).map(|r| self.ready(r)).sum();
                (others < n - self.unavailable_allowance)
                    .then(|| format!("retired {revision} with only {others} ready replicas elsewhere of the {n} needed"))
            }
        };
        let previewed = self.previews.iter().find(|(_, tg)| self.revision_on(tg).as_deref() == Some(revision)).map(|(route, _)| *route);
        let violation =
            violation.or_else(|| previewed.map(|route| format!("retired {revision} while the {route} route sent requests to it")));
        if let Some(violation) = violation {
            self.unsafe_scale_downs.push(format!("{}: {violation}", self.elapsed().as_secs()));
        }
    }

    /// One controller pass through the same pass as the controller: observe, decide, apply,
    /// write status.
    pub fn pass(&mut self) -> PassOutcome {
        self.measure();
        self.changes = 0;
        let (name, generation, spec, status, commands) =
            (self.name.clone(), self.generation, self.spec.clone(), self.status.clone(), self.commands.clone());
        let now = self.now;
        let subject = Subject {
            namespace: "default",
            name: &name,
            generation: Some(generation),
            spec: &spec,
            status: &status,
            commands: &commands,
            commit_time: None,
            labels: None,
            annotations: None,
        };
        let ports = SimPorts(Mutex::new(self));
        let result =
            futures::executor::block_on(pass::run(subject, Ports { platform: &ports, router: &ports, runs: &ports, record: &ports }, now));
        match result {
            Ok(outcome) => {
                PassOutcome::Applied { plan: Box::new(outcome.plan), applied: outcome.applied, requeue_after: outcome.requeue_after }
            }
            Err(cut) => {
                PassOutcome::Interrupted { plan: cut.plan.map(Box::new), applied: cut.applied, reason: cut.error.source.to_string() }
            }
        }
    }

    /// The next moment something changes by itself: a pod becomes ready or a measurement is due.
    pub fn next_change(&self) -> Option<Timestamp> {
        let pods = self.pods.values().flat_map(|p| p.ready_at.iter().copied()).filter(|t| *t > self.now);
        let runs = self.runs.values().filter_map(|r| analysis_run::next_due(&r.spec, &r.status)).map(|t| t.max(self.now));
        pods.chain(runs).min()
    }

    pub fn elapsed(&self) -> Duration {
        Duration::try_from(self.now.duration_since(self.started)).unwrap_or_default()
    }

    pub fn events_of(plan: &Plan) -> &[Event] {
        &plan.events
    }
}

/// The world behind the ports, for one pass.
struct SimPorts<'w>(Mutex<&'w mut World>);

impl<'w> SimPorts<'w> {
    fn world(&self) -> std::sync::MutexGuard<'_, &'w mut World> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Platform for SimPorts<'_> {
    async fn observe(&self) -> Result<PlatformObservation, PortError> {
        let world = self.world();
        let revisions = world
            .pods
            .keys()
            .map(|revision| RevisionObservation {
                revision: revision.clone(),
                replicas: world.replicas(revision),
                ready: world.ready(revision),
                available: world.ready(revision),
                addresses: world.addresses(revision),
            })
            .collect();
        if world.registers_targets() {
            let registrations = world.registrations.clone();
            let capacity = Some(world.capacity);
            let stale_pods = Default::default();
            return Ok(PlatformObservation { revisions, services: Default::default(), registrations, adopted: None, capacity, stale_pods });
        }
        let services = ServiceSelection {
            stable: world.services.get("stable").cloned(),
            canary: world.services.get("canary").cloned(),
            missing: Vec::new(),
        };
        let adopted = world.adopted.map(|d| AdoptedObservation { replicas: d.replicas });
        let stale_pods = world.stale_pods();
        Ok(PlatformObservation { revisions, services, registrations: Default::default(), adopted, capacity: None, stale_pods })
    }

    async fn scale(&self, revision: &str, replicas: i32, target_group: Option<&str>) -> Result<Effect, PortError> {
        let mut world = self.world();
        world.guard("scale")?;
        let changed = world.scale(revision, replicas, target_group)?;
        Ok(world.changed(changed))
    }

    async fn point_traffic(&self, role: ServiceRole, revision: &str) -> Result<Effect, PortError> {
        let mut world = self.world();
        if world.registers_targets() {
            return Ok(Effect::Unchanged);
        }
        world.guard("point service")?;
        let changed = world.services.insert(role_key(role), revision.to_string()).as_deref() != Some(revision);
        Ok(world.changed(changed))
    }

    async fn mark_stable(&self, revision: &str) -> Result<Effect, PortError> {
        let mut world = self.world();
        world.guard("mark stable")?;
        let changed = world.primary.replace(revision.to_string()).as_deref() != Some(revision);
        Ok(world.changed(changed))
    }

    async fn retire(&self, _keep: &[&str]) -> Result<(), PortError> {
        Ok(())
    }

    async fn scale_adopted(&self, replicas: i32) -> Result<Effect, PortError> {
        let mut world = self.world();
        world.guard("scale the adopted Deployment")?;
        let Some(mut adopted) = world.adopted else { return Ok(Effect::Unchanged) };
        let changed = adopted.replicas != replicas;
        adopted.before = adopted.before.or(Some(adopted.replicas));
        adopted.replicas = replicas;
        world.adopted = Some(adopted);
        Ok(world.changed(changed))
    }

    async fn restart(&self, revision: &str, started_before: Timestamp, count: i32) -> Result<Effect, PortError> {
        let mut world = self.world();
        world.guard("restart pods")?;
        let changed = world.restart(revision, started_before, count);
        Ok(world.changed(changed))
    }

    async fn set_capacity(&self, replicas: i32) -> Result<Effect, PortError> {
        let mut world = self.world();
        world.guard("set the desired count")?;
        let changed = world.capacity != replicas;
        world.capacity = replicas;
        Ok(world.changed(changed))
    }

    async fn release_adopted(&self) -> Result<Effect, PortError> {
        let mut world = self.world();
        let Some(AdoptedDeployment { before: Some(before), .. }) = world.adopted else { return Ok(Effect::Unchanged) };
        world.adopted = Some(AdoptedDeployment { replicas: before, before: None });
        Ok(world.changed(true))
    }

    /// Played as ECS, the world is polled as the controller polls task sets.
    fn poll_interval(&self) -> Option<std::time::Duration> {
        self.world().registers_targets().then_some(crate::platform::ecs::POLL)
    }
}

#[async_trait]
impl TrafficRouter for SimPorts<'_> {
    async fn observe(&self, target_groups: Option<&TargetGroups>) -> Result<Option<TrafficObservation>, PortError> {
        let mut world = self.world();
        let Some(groups) = target_groups.filter(|_| !world.weights.is_empty()) else { return Ok(None) };
        let unreadable = world.faults.weight_unreadable();
        // Registration is instant here: a group's healthy targets are its revision's ready pods.
        let healthy = |tg: &str| world.revision_on(tg).map(|r| world.addresses(&r)).unwrap_or_default();
        Ok(Some(TrafficObservation {
            canary_weight: if unreadable { None } else { world.weights.get(&groups.canary).copied() },
            stable_healthy: healthy(&groups.stable),
            canary_healthy: healthy(&groups.canary),
            last_written: world.last_written.as_ref().filter(|(group, _)| *group == groups.canary).map(|(_, weight)| *weight),
            target_groups: None,
        }))
    }

    async fn set_weight(&self, target_groups: &TargetGroups, canary_weight: i32, _reclaim: bool) -> Result<Effect, PortError> {
        let mut world = self.world();
        world.guard("set weight")?;
        let changed = world.weights.get(&target_groups.canary) != Some(&canary_weight);
        world.weights.insert(target_groups.stable.clone(), 100 - canary_weight);
        world.weights.insert(target_groups.canary.clone(), canary_weight);
        world.last_written = Some((target_groups.canary.clone(), canary_weight));
        Ok(world.changed(changed))
    }

    async fn route_test_traffic(&self, target_group: &str) -> Result<Effect, PortError> {
        let mut world = self.world();
        world.guard("route test traffic")?;
        let changed = world.previews.insert("test", target_group.to_string()).as_deref() != Some(target_group);
        Ok(world.changed(changed))
    }

    async fn route_headers(&self, routes: &[crate::api::SetHeaderRoute], target_group: Option<&str>) -> Result<Effect, PortError> {
        let mut world = self.world();
        world.guard("route headers")?;
        // The routes' matches are the load balancer's to evaluate: the world keeps where they send.
        let wanted = target_group.filter(|_| !routes.is_empty());
        let changed = world.previews.get("header").map(String::as_str) != wanted;
        match wanted {
            Some(tg) => world.previews.insert("header", tg.to_string()),
            None => world.previews.remove("header"),
        };
        Ok(world.changed(changed))
    }
}

#[async_trait]
impl AnalysisRuns for SimPorts<'_> {
    async fn observe(&self) -> Result<Vec<AnalysisRunObservation>, PortError> {
        let world = self.world();
        Ok(world
            .runs
            .iter()
            .map(|(name, run)| AnalysisRunObservation { name: name.clone(), phase: run.status.phase, message: run.status.message.clone() })
            .collect())
    }

    async fn template(&self, reference: &AnalysisTemplateRef) -> Result<Option<AnalysisTemplateSpec>, PortError> {
        Ok(self.world().templates.get(&reference.template_name).cloned())
    }

    async fn create(&self, run: NewRun) -> Result<Effect, PortError> {
        let mut world = self.world();
        world.guard("create analysis run")?;
        let changed = world.create_run(run);
        Ok(world.changed(changed))
    }

    async fn terminate(&self, name: &str) -> Result<Effect, PortError> {
        let mut world = self.world();
        world.guard("terminate analysis run")?;
        let changed = match world.runs.get_mut(name).filter(|r| !r.spec.terminate) {
            Some(run) => {
                run.spec.terminate = true;
                analysis_run::settle(&run.spec, &mut run.status);
                true
            }
            None => false,
        };
        Ok(world.changed(changed))
    }
}

#[async_trait]
impl Record for SimPorts<'_> {
    async fn write_status(&self, _before: &RolloutStatus, status: &RolloutStatus, _events: &[Event]) -> Result<(), PortError> {
        let mut world = self.world();
        let changes = world.changes;
        if world.faults.crash_after(changes) {
            return Err(PortError::new("simulation", "crash", "controller crashed before writing status"));
        }
        world.status = status.clone();
        Ok(())
    }

    async fn publish(&self, _events: &[Event]) {}
}
