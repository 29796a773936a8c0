//! The ports: what one pass ([`crate::pass`]) needs of the world, one trait per concern. Every
//! backend implements them (Kubernetes and ECS the [`Platform`], the ALB and the replica ratio the
//! [`TrafficRouter`], the controller's API client and the simulated world the rest), and nothing
//! above them knows which backend it talks to.
//!
//! Each port is bound to one Rollout when it is built, so its calls name revisions, roles and
//! target groups, never the Rollout's spec.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::analysis::condition::MeasuredValue;
pub use crate::analysis::run::Resumed;
use crate::api::{AnalysisArg, AnalysisRunSpec, AnalysisRunStatus, AnalysisTemplateRef, AnalysisTemplateSpec, Metric, RolloutStatus};
use crate::engine::{
    AdoptedObservation, AnalysisPurpose, AnalysisRunObservation, Event, RevisionObservation, ServiceSelection, TargetGroups,
    TrafficObservation,
};

/// A port call that failed, as its adapter reported it.
#[derive(Debug, thiserror::Error)]
#[error("{port}: {source}")]
pub struct PortError {
    /// Which backend failed, as people know it: "Kubernetes API", "ECS", "ALB".
    pub port: &'static str,
    /// A bounded label for metrics (throttled, not_found, invalid, …).
    pub category: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl PortError {
    pub fn new(port: &'static str, category: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { port, category, source: source.into() }
    }
}

/// A bounded label for a failed Kubernetes API call.
pub fn kube_category(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(status) if status.code == 409 => "conflict",
        kube::Error::Api(status) if status.code == 403 => "forbidden",
        kube::Error::Api(status) if status.code == 404 => "not_found",
        _ => "kubernetes",
    }
}

/// A failed Kubernetes API call, as a port reports it.
pub fn kube_failure(error: kube::Error) -> PortError {
    PortError::new("Kubernetes API", kube_category(&error), error)
}

/// Whether a call changed anything: adapters skip what is already so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Changed,
    Unchanged,
}

impl Effect {
    pub fn changed(self) -> bool {
        self == Self::Changed
    }
}

/// What the platform runs, read before a pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlatformObservation {
    pub revisions: Vec<RevisionObservation>,
    /// Which revision each role's Service selects (empty where no Service steers traffic).
    pub services: ServiceSelection,
    /// The target group each revision is registered with, where the platform registers revisions
    /// itself (ECS task sets); empty where Services steer traffic.
    pub registrations: BTreeMap<String, String>,
    /// The workload the Rollout adopted and runs beside its own revisions (a Deployment named
    /// by `deploymentRef`); `None` where nothing is adopted or it was not found.
    pub adopted: Option<AdoptedObservation>,
    /// The workload's full size as the platform holds it, where something besides the Rollout
    /// may set it (an ECS service's desiredCount, which Service Auto Scaling changes); `None`
    /// where the spec alone says.
    pub capacity: Option<i32>,
    /// Pods of each revision that started before `spec.restartAt`, while a restart is asked
    /// for and not done; empty otherwise, and where pods are not replaced one by one (ECS).
    pub stale_pods: BTreeMap<String, i32>,
}

/// Where revisions run: Kubernetes ReplicaSets, ECS task sets.
#[async_trait]
pub trait Platform: Send + Sync {
    async fn observe(&self) -> Result<PlatformObservation, PortError>;
    /// The revision runs `replicas` (created when missing, registered with `target_group` where
    /// the platform registers revisions itself).
    async fn scale(&self, revision: &str, replicas: i32, target_group: Option<&str>) -> Result<Effect, PortError>;
    /// The role's traffic reaches this revision (a Service's selector; nothing where the target
    /// groups follow the revisions).
    async fn point_traffic(&self, role: crate::engine::ServiceRole, revision: &str) -> Result<Effect, PortError>;
    /// The revision serves production (ECS: the PRIMARY task set).
    async fn mark_stable(&self, revision: &str) -> Result<Effect, PortError>;
    /// Deletes retired revisions beyond the history the spec keeps, never those in `keep`.
    async fn retire(&self, keep: &[&str]) -> Result<(), PortError>;
    /// The adopted workload runs `replicas` of its own; the count it had before is kept, for
    /// [`Platform::release_adopted`].
    async fn scale_adopted(&self, replicas: i32) -> Result<Effect, PortError>;
    /// The Rollout is going: the adopted workload gets back the replicas it had before.
    async fn release_adopted(&self) -> Result<Effect, PortError>;
    /// The workload's full size where the platform holds it ([`PlatformObservation::capacity`]).
    async fn set_capacity(&self, replicas: i32) -> Result<Effect, PortError>;
    /// Replaces `count` of the revision's pods that started before `started_before`, oldest first.
    async fn restart(&self, revision: &str, started_before: Timestamp, count: i32) -> Result<Effect, PortError>;
    /// How often to look again while a rollout moves, where the platform sends no watch events.
    fn poll_interval(&self) -> Option<Duration> {
        None
    }
}

/// How traffic is split between the stable and canary roles: ALB weights, or the replica ratio
/// (where nothing is called).
#[async_trait]
pub trait TrafficRouter: Send + Sync {
    /// The split as read back; `None` where traffic follows the replica ratio. `target_groups`
    /// says which group serves each role now.
    async fn observe(&self, target_groups: Option<&TargetGroups>) -> Result<Option<TrafficObservation>, PortError>;
    /// `reclaim`: the forward action was rewritten outside Sluice after it verified a weight
    /// there, and its terminal action is taken back (see `Action::SetWeight`).
    async fn set_weight(&self, target_groups: &TargetGroups, canary_weight: i32, reclaim: bool) -> Result<Effect, PortError>;
    /// The test listener (or rule) sends all its traffic to `target_group`.
    async fn route_test_traffic(&self, target_group: &str) -> Result<Effect, PortError>;
    /// Requests matching each of `routes` go to `target_group`; `None` removes every header
    /// route Sluice made.
    async fn route_headers(&self, routes: &[crate::api::SetHeaderRoute], target_group: Option<&str>) -> Result<Effect, PortError>;
}

/// A run to create, built from the Rollout's analysis and its templates.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    pub name: String,
    pub revision: String,
    pub purpose: AnalysisPurpose,
    pub spec: AnalysisRunSpec,
    /// Set for a run that could not be built: it is created finished, with the reason.
    pub status: Option<AnalysisRunStatus>,
}

/// The Rollout's analysis runs and the templates they are built from.
#[async_trait]
pub trait AnalysisRuns: Send + Sync {
    async fn observe(&self) -> Result<Vec<AnalysisRunObservation>, PortError>;
    /// The template a Rollout names; `None` when it does not exist.
    async fn template(&self, reference: &AnalysisTemplateRef) -> Result<Option<AnalysisTemplateSpec>, PortError>;
    async fn create(&self, run: NewRun) -> Result<Effect, PortError>;
    async fn terminate(&self, name: &str) -> Result<Effect, PortError>;
}

/// Where a pass leaves its record: the Rollout's status and its events.
#[async_trait]
pub trait Record: Send + Sync {
    /// Writes `status` (skipped when it equals `before`); `events` are what the pass decided, for
    /// what the record keeps of them in the status (the controller's notification outbox).
    async fn write_status(&self, before: &RolloutStatus, status: &RolloutStatus, events: &[Event]) -> Result<(), PortError>;
    /// Best effort: an event that cannot be written never blocks a rollout.
    async fn publish(&self, events: &[Event]);
}

/// Why a measurement could not be taken; recorded as an Error measurement with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The metric cannot be measured as written (a bad duration, JSON path, header or region).
    #[error("{0}")]
    Config(String),
    /// A Secret the metric names cannot be read.
    #[error("{0}")]
    Secret(String),
    /// The provider's server could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// No answer within the timeout.
    #[error("{0}")]
    Timeout(String),
    /// An HTTP answer that is not a success (2xx).
    #[error("{0}")]
    Status(String),
    /// The provider refused the query (bad PromQL, an AWS error).
    #[error("{0}")]
    Query(String),
    /// An answer of an unexpected shape.
    #[error("{0}")]
    Response(String),
    /// What the metric names does not exist (a CloudWatch alarm).
    #[error("{0}")]
    NotFound(String),
    /// The outbound policy does not allow the destination.
    #[error("{0}")]
    Denied(String),
}

impl ProviderError {
    /// A bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Secret(_) => "secret",
            Self::Unreachable(_) => "unreachable",
            Self::Timeout(_) => "timeout",
            Self::Status(_) => "status",
            Self::Query(_) => "query",
            Self::Response(_) => "response",
            Self::NotFound(_) => "not-found",
            Self::Denied(_) => "denied",
        }
    }
}

/// Where a measurement is taken, and what an earlier pass left of it.
#[derive(Clone, Debug)]
pub struct Measuring<'a> {
    /// The rollout's namespace, where its Secrets are and what a measurement makes (a Job) runs.
    pub namespace: &'a str,
    /// The AnalysisRun measured: what a measurement makes is named after it and owned by it.
    pub run: &'a str,
    pub run_uid: &'a str,
    /// The run's arguments that have values, the built-in `sluice.*` ones among them.
    pub args: &'a [AnalysisArg],
    pub now: Timestamp,
    /// Which measurement of the metric this is, from 0.
    pub number: i32,
    /// Of a measurement taken up again (it was in progress): since when, and what it carried.
    pub resumed: Option<Resumed>,
}

impl<'a> Measuring<'a> {
    /// A first attempt at a measurement outside any run (tests, `sluice` commands).
    pub fn at(namespace: &'a str, now: Timestamp) -> Self {
        Self { namespace, run: "", run_uid: "", args: &[], now, number: 0, resumed: None }
    }

    /// When this measurement first started.
    pub fn since(&self) -> Timestamp {
        self.resumed.as_ref().map_or(self.now, |r| r.since)
    }
}

/// Takes one measurement of a metric (Prometheus, CloudWatch, web, a Lambda function, a Job).
#[async_trait]
pub trait Measure: Send + Sync + 'static {
    /// One measurement of `metric` where and when `at` says.
    async fn measure(&self, at: &Measuring<'_>, metric: &Metric) -> Result<MeasuredValue, ProviderError>;
}
