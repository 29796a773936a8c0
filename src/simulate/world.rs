//! A simulated platform, traffic router and analysis source under a virtual clock, driven by the
//! real engine. Used by `sluice simulate` and by the deterministic simulation tests.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::analysis::condition::MeasuredValue;
use crate::analysis::run as analysis_run;
use crate::api::{AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, AnalysisTemplateSpec, RolloutSpec, RolloutStatus};
use crate::engine::{
    self, Action, AnalysisRunObservation, Event, Input, Observed, Plan, RevisionObservation, ServiceRole, ServiceSelection,
    TrafficObservation,
};

/// What a metric reads at a moment of the simulation.
#[derive(Clone, Debug, PartialEq)]
pub enum Sample {
    /// A number, or any JSON value (an alarm state such as "ALARM", a document).
    Value(serde_json::Value),
    NoData,
    Error(String),
}

/// Where simulated measurements come from: `elapsed` is the time since the simulation began.
pub trait MetricSource {
    fn sample(&mut self, metric: &str, elapsed: Duration) -> Sample;
}

/// Injected trouble. The default injects none.
pub trait Faults {
    /// The adapter call for this action fails (the pass stops; status is not written).
    fn action_fails(&mut self, _action: &Action, _now: Timestamp) -> bool {
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

/// What one pass did.
#[derive(Debug)]
pub enum PassOutcome {
    Applied {
        plan: Box<Plan>,
        applied: Vec<Action>,
    },
    /// An action failed or the controller crashed: some actions may be applied, status not written.
    Interrupted {
        plan: Box<Plan>,
        applied: Vec<Action>,
        reason: String,
    },
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
    /// Canary weight on the router; `None` without a router.
    pub weight: Option<i32>,
    pub services: BTreeMap<&'static str, String>,
    /// Where the test listener ("test") and the header route ("header") send requests: a role.
    pub previews: BTreeMap<&'static str, &'static str>,
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
}

pub(super) fn role_key(role: ServiceRole) -> &'static str {
    match role {
        ServiceRole::Stable => "stable",
        ServiceRole::Canary => "canary",
    }
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
            ..Default::default()
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
            weight: stable_spec.traffic.as_ref().map(|_| 0),
            services,
            previews: BTreeMap::new(),
            primary: Some(stable),
            runs: BTreeMap::new(),
            templates: BTreeMap::new(),
            ready_after: Duration::from_secs(10),
            faults: Box::new(NoFaults),
            metrics,
            unsafe_scale_downs: Vec::new(),
            unavailable_allowance: 0,
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

    pub fn observe(&mut self) -> Observed {
        let revisions = self
            .pods
            .keys()
            .map(|revision| RevisionObservation {
                revision: revision.clone(),
                replicas: self.replicas(revision),
                ready: self.ready(revision),
                available: self.ready(revision),
            })
            .collect();
        let unreadable = self.weight.is_some() && self.faults.weight_unreadable();
        let healthy = |role: &str| self.services.get(role).map_or(0, |r| self.ready(r));
        let traffic = self.weight.map(|weight| TrafficObservation {
            canary_weight: if unreadable { None } else { Some(weight) },
            stable_healthy_targets: healthy("stable"),
            canary_healthy_targets: healthy("canary"),
        });
        let analysis_runs = self
            .runs
            .iter()
            .map(|(name, run)| AnalysisRunObservation { name: name.clone(), phase: run.status.phase, message: run.status.message.clone() })
            .collect();
        let services = ServiceSelection {
            stable: self.services.get("stable").cloned(),
            canary: self.services.get("canary").cloned(),
            missing: Vec::new(),
        };
        Observed { revisions, traffic, analysis_runs, services }
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

    /// Applies an action; false when it changed nothing (adapters skip such calls).
    fn apply(&mut self, action: &Action) -> bool {
        match action {
            Action::Scale { revision, replicas } => {
                if *replicas == 0 && self.replicas(revision) > 0 {
                    self.check_retirement(revision);
                }
                let ready_after = self.ready_after;
                let now = self.now;
                let extra: Vec<Duration> = {
                    let current = self.replicas(revision);
                    (current..*replicas).map(|_| self.faults.readiness_delay(revision)).collect()
                };
                let pods = self.pods.entry(revision.clone()).or_insert(Pods { ready_at: Vec::new() });
                let target = (*replicas).max(0) as usize;
                if target == pods.ready_at.len() {
                    return false;
                }
                if target < pods.ready_at.len() {
                    // Like a ReplicaSet: pods not yet ready go first.
                    pods.ready_at.sort();
                    pods.ready_at.truncate(target);
                } else {
                    pods.ready_at.extend(extra.into_iter().map(|d| after(now, ready_after + d)));
                }
            }
            Action::SetWeight { canary_weight } => {
                let changed = self.weight != Some(*canary_weight);
                self.weight = Some(*canary_weight);
                return changed;
            }
            Action::PointService { role, revision } => {
                return self.services.insert(role_key(*role), revision.clone()).as_ref() != Some(revision);
            }
            Action::MarkStable { revision } => {
                return self.primary.replace(revision.clone()).as_ref() != Some(revision);
            }
            Action::CreateAnalysisRun { name, revision, analysis, .. } => {
                let templates: Result<Vec<_>, String> = analysis
                    .templates
                    .iter()
                    .map(|t| {
                        self.templates
                            .get(&t.template_name)
                            .cloned()
                            .map(|spec| (t.template_name.clone(), spec))
                            .ok_or_else(|| format!("analysis template {} not found", t.template_name))
                    })
                    .collect();
                let built = templates.and_then(|t| analysis_run::build(&t, &analysis.args).map_err(|e| e.0));
                let started = Some(Time(self.now));
                let run = match built {
                    Ok(spec) => {
                        SimRun { spec, status: AnalysisRunStatus { started_at: started, ..Default::default() }, revision: revision.clone() }
                    }
                    Err(message) => SimRun {
                        spec: AnalysisRunSpec::default(),
                        status: AnalysisRunStatus {
                            phase: AnalysisPhase::Error,
                            message: Some(message),
                            started_at: started,
                            ..Default::default()
                        },
                        revision: revision.clone(),
                    },
                };
                if self.runs.contains_key(name) {
                    return false;
                }
                self.runs.insert(name.clone(), run);
            }
            Action::RouteTestTraffic { to } => {
                return self.previews.insert("test", role_key(*to)) != Some(role_key(*to));
            }
            Action::RouteHeader { to } => {
                let changed = self.previews.get("header").copied() != to.map(role_key);
                match to {
                    Some(role) => self.previews.insert("header", role_key(*role)),
                    None => self.previews.remove("header"),
                };
                return changed;
            }
            Action::TerminateAnalysisRun { name } => {
                let Some(run) = self.runs.get_mut(name).filter(|r| !r.spec.terminate) else {
                    return false;
                };
                run.spec.terminate = true;
                analysis_run::settle(&run.spec, &mut run.status);
            }
        }
        true
    }

    /// Traffic first: a revision is retired only once no traffic reaches it (router), or once
    /// the others hold the capacity (replica ratio).
    fn check_retirement(&mut self, revision: &str) {
        let n = self.spec.workload.replicas();
        let serves = |role: &str| self.services.get(role).is_some_and(|r| r == revision);
        let violation = match self.weight {
            Some(weight) if serves("canary") && weight > 0 => {
                Some(format!("retired {revision} while the canary target group had {weight}% of traffic"))
            }
            Some(weight) if serves("stable") && weight < 100 => {
                Some(format!("retired {revision} while the stable target group had {}% of traffic", 100 - weight))
            }
            Some(_) => None,
            None => {
                let others: i32 = self.pods.keys().filter(|r| *r != revision).map(|r| self.ready(r)).sum();
                (others < n - self.unavailable_allowance)
                    .then(|| format!("retired {revision} with only {others} ready replicas elsewhere of the {n} needed"))
            }
        };
        let previewed = self.previews.iter().find(|(_, role)| serves(role)).map(|(route, _)| *route);
        let violation =
            violation.or_else(|| previewed.map(|route| format!("retired {revision} while the {route} route sent requests to it")));
        if let Some(violation) = violation {
            self.unsafe_scale_downs.push(format!("{}: {violation}", self.elapsed().as_secs()));
        }
    }

    /// One controller pass: observe, decide, apply, write status.
    pub fn pass(&mut self) -> PassOutcome {
        self.measure();
        let observed = self.observe();
        let plan = engine::step(Input {
            name: &self.name,
            generation: Some(self.generation),
            spec: &self.spec,
            status: &self.status,
            commands: &self.commands,
            observed: &observed,
            now: self.now,
        });
        let mut applied = Vec::new();
        for action in &plan.actions {
            if self.faults.crash_after(applied.len()) {
                return PassOutcome::Interrupted { plan: Box::new(plan), applied, reason: "controller crashed".into() };
            }
            if self.faults.action_fails(action, self.now) {
                let reason = format!("{action:?} failed");
                return PassOutcome::Interrupted { plan: Box::new(plan), applied, reason };
            }
            if self.apply(action) {
                applied.push(action.clone());
            }
        }
        if self.faults.crash_after(applied.len()) {
            return PassOutcome::Interrupted { plan: Box::new(plan), applied, reason: "controller crashed before writing status".into() };
        }
        self.status = plan.status.clone();
        PassOutcome::Applied { plan: Box::new(plan), applied }
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
