//! The `Rollout` custom resource.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::DurationString;

/// A Rollout replaces a Deployment (or an ECS service's deployment controller): it brings a new
/// version in by canary, blue/green or rolling steps, shifts traffic and gates each step on analysis.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    validation = Rule::new("size(self.metadata.name) <= 63").message("a Rollout's name is at most 63 characters: it labels every ReplicaSet and pod"),
    status = "RolloutStatus",
    derive = "PartialEq",
    shortname = "sro",
    category = "sluice",
    doc = "A progressive rollout of a Kubernetes or ECS workload",
    // The size the workload should have, not the pods of every revision together: an autoscaler
    // reading the sum during a canary would see the canary's pods as extra and scale up.
    scale(
        spec_replicas_path = ".spec.workload.kubernetes.replicas",
        status_replicas_path = ".status.desiredReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Step", type_ = "integer", json_path = ".status.currentStepIndex"),
    printcolumn(name = "Weight", type_ = "string", json_path = ".status.weight"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.desiredReplicas"),
    printcolumn(name = "Updated", type_ = "integer", json_path = ".status.updatedReplicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Available", type_ = "integer", json_path = ".status.availableReplicas"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("!has(self.strategy.rolling) || !has(self.traffic)").message("a rolling update splits traffic by replica ratio: remove spec.traffic, or use a canary or blueGreen strategy"))]
#[x_kube(validation = Rule::new("!has(self.workload.ecs) || !has(self.strategy.rolling)").message("ECS services roll out through task sets: use a canary or blueGreen strategy (a canary with one setWeight: 100 step is all-at-once)"))]
#[x_kube(validation = Rule::new("!has(self.workload.ecs) || has(self.traffic)").message("an ECS workload needs spec.traffic.alb: traffic moves between the task sets' target groups"))]
#[x_kube(validation = Rule::new("!has(self.strategy.blueGreen) || !has(self.workload.ecs) || (has(self.traffic) && has(self.traffic.alb) && (has(self.traffic.alb.testListenerArn) || has(self.traffic.alb.testRuleArn)))").message("a blueGreen ECS rollout needs traffic.alb.testListenerArn or testRuleArn so the new task set can be tested before promotion"))]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// What runs: exactly one of `kubernetes` or `ecs`.
    pub workload: Workload,
    /// How traffic is split. Without it the split follows the replica ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
    /// How the new version comes in: exactly one of `canary`, `blueGreen` or `rolling`.
    pub strategy: Strategy,
    /// Seconds a rollout may wait for replicas or traffic without progress before it is Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2_592_000))]
    pub progress_deadline_seconds: Option<i32>,
    /// Abort (and roll back) when the progress deadline passes, instead of only reporting it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub progress_deadline_abort: bool,
    /// Holds the rollout where it is until set back to false (`kubectl sluice pause` / `resume`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Replaces every pod that started before this time (`kubectl sluice restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<Time>,
    /// A return to one of the last stable revisions goes straight to 100%, with no steps and
    /// no analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window: Option<RollbackWindow>,
    /// Checks at named stages of every rollout of a new revision, the same for every strategy
    /// and workload; a hook that fails aborts the rollout as a failed analysis does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(validation = Rule::new("self.all(h, self.exists_one(o, o.name == h.name))").message("each hook needs a name of its own"))]
    pub hooks: Vec<LifecycleHook>,
}

/// A check at one stage of a rollout: a Lambda function, a Job, or analysis templates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.lambda) ? 1 : 0) + (has(self.job) ? 1 : 0) + (has(self.analysis) ? 1 : 0) == 1").message("a hook sets exactly one of lambda, job or analysis"))]
#[serde(rename_all = "camelCase")]
pub struct LifecycleHook {
    /// Names the hook in messages and events (a DNS label).
    #[schemars(length(min = 1, max = 40), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    pub stage: LifecycleStage,
    /// A function answering `hookStatus` as ECS lifecycle hooks do (see the `lambda` provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<crate::api::LambdaMetric>,
    /// A Job that must complete (see the `job` provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<crate::api::JobMetric>,
    /// Analysis templates whose run must succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
}

/// Where in a rollout a hook runs, named as ECS names its deployment lifecycle stages.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum LifecycleStage {
    /// Before the new revision gets any replica.
    #[default]
    PreScaleUp,
    /// Once the new revision's first replicas are ready, before it takes traffic.
    PostScaleUp,
    /// Before test traffic reaches the new revision.
    TestTrafficShift,
    /// After test traffic reaches it.
    PostTestTrafficShift,
    /// Before production traffic first moves to it.
    ProductionTrafficShift,
    /// Once all production traffic is on it, before promotion.
    PostProductionTrafficShift,
    /// After promotion, while the previous revision is still there to roll back to.
    PostPromotion,
}

impl LifecycleStage {
    /// In the order a rollout passes them.
    pub const ALL: [Self; 7] = [
        Self::PreScaleUp,
        Self::PostScaleUp,
        Self::TestTrafficShift,
        Self::PostTestTrafficShift,
        Self::ProductionTrafficShift,
        Self::PostProductionTrafficShift,
        Self::PostPromotion,
    ];
}

impl std::fmt::Display for LifecycleStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// How many of the last stable revisions a rollback may return to at once.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RollbackWindow {
    #[schemars(range(min = 1, max = 10))]
    pub revisions: i32,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.kubernetes) != has(self.ecs)").message("set exactly one of workload.kubernetes or workload.ecs"))]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesWorkload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs: Option<EcsWorkload>,
}

/// Pods, run as one ReplicaSet per revision owned by the Rollout: from the Rollout's own
/// template, or from the template of a Deployment it adopts (`deploymentRef`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.template) != has(self.deploymentRef)").message("set exactly one of workload.kubernetes.template (with selector) or workload.kubernetes.deploymentRef"))]
#[x_kube(validation = Rule::new("has(self.deploymentRef) || has(self.selector)").message("workload.kubernetes.selector is required with a template: the labels of the pods it runs"))]
#[x_kube(validation = Rule::new("!has(self.deploymentRef) || !has(self.selector)").message("workload.kubernetes.selector comes from the Deployment that deploymentRef names: remove it"))]
#[x_kube(validation = Rule::new("!has(self.template) || !has(self.template.spec) || self.template.spec.containers.all(c, has(c.image) && size(c.image) > 0)").message("every container needs an image: set workload.kubernetes.template.spec.containers[].image"))]
#[serde(rename_all = "camelCase")]
pub struct KubernetesWorkload {
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 100_000))]
    pub replicas: i32,
    /// The pods' labels; with `deploymentRef`, the Deployment's.
    #[serde(default, skip_serializing_if = "is_empty_selector")]
    pub selector: LabelSelector,
    /// The pods of each revision; with `deploymentRef`, the Deployment's.
    #[serde(default, skip_serializing_if = "is_empty_template")]
    pub template: PodTemplateSpec,
    /// An existing Deployment in the Rollout's namespace whose pod template the Rollout rolls
    /// out, instead of a template of its own. Its template is never edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_ref: Option<DeploymentRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86_400))]
    pub min_ready_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1_000))]
    pub revision_history_limit: Option<i32>,
}

/// `maxSurge` / `maxUnavailable`: a count up to 100,000 or a percentage up to 9999%. The length
/// bound keeps the CEL rule cheap enough for the API server's cost budget.
fn count_or_percent(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "nullable": true,
        "maxLength": 12,
        "x-kubernetes-validations": [{
            "rule": "string(self).matches('^([0-9]{1,5}|100000|[0-9]{1,4}%)$')",
            "message": "a count from 0 to 100000 or a percentage from 0% to 9999%"
        }]
    })
}

fn one() -> i32 {
    1
}

fn is_empty_selector(selector: &LabelSelector) -> bool {
    *selector == LabelSelector::default()
}

fn is_empty_template(template: &PodTemplateSpec) -> bool {
    *template == PodTemplateSpec::default()
}

/// A Deployment the Rollout adopts: its template becomes the Rollout's revisions, and its own
/// pods give way as `scaleDown` says. Deleting the Rollout gives it its replicas back.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default)]
    pub scale_down: ScaleDown,
}

/// When the adopted Deployment's own pods go.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum ScaleDown {
    /// The Deployment keeps its replicas (the safe default, as in Argo Rollouts).
    #[default]
    Never,
    /// To 0 once the Rollout is Healthy on a revision of its own.
    OnSuccess,
    /// Down as the Rollout's pods become available, so the two together never run below the
    /// Rollout's replicas.
    Progressively,
}

impl ScaleDown {
    /// As written in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::OnSuccess => "onSuccess",
            Self::Progressively => "progressively",
        }
    }
}

/// One replica when none is written, as in Argo Rollouts and Kubernetes (and the serde default).
impl Default for KubernetesWorkload {
    fn default() -> Self {
        Self {
            replicas: one(),
            selector: LabelSelector::default(),
            template: PodTemplateSpec::default(),
            deployment_ref: None,
            min_ready_seconds: None,
            revision_history_limit: None,
        }
    }
}

/// An ECS service whose deployment controller is EXTERNAL; each revision is a task set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EcsWorkload {
    /// Cluster name or ARN.
    #[schemars(length(min = 1))]
    pub cluster: String,
    /// Service name or ARN; the service must use the EXTERNAL deployment controller.
    #[schemars(length(min = 1))]
    pub service: String,
    /// Task definition ARN (family:revision) of the version to run.
    #[schemars(length(min = 1))]
    pub task_definition: String,
    /// Tasks the service runs at full capacity; task sets are scaled as a percentage of it.
    #[schemars(range(min = 1, max = 10_000))]
    pub desired_count: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<EcsLaunchType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<EcsNetworkConfiguration>,
    /// The container and port registered with the target groups named in `traffic.alb`.
    pub load_balancer: EcsLoadBalancer,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcsLaunchType {
    #[serde(rename = "FARGATE")]
    Fargate,
    #[serde(rename = "EC2")]
    Ec2,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EcsNetworkConfiguration {
    #[schemars(length(min = 1))]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub assign_public_ip: bool,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EcsLoadBalancer {
    #[schemars(length(min = 1))]
    pub container_name: String,
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: i32,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.alb)").message("traffic needs a router: set traffic.alb, or leave traffic out to split by replica ratio"))]
#[serde(rename_all = "camelCase")]
pub struct Traffic {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alb: Option<AlbTraffic>,
}

/// Weighted target groups on an Application Load Balancer: a listener or listener rule named by
/// ARN, or the rules the AWS Load Balancer Controller makes from Ingresses (`ingresses`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.ingresses) || has(self.listenerArn) != has(self.ruleArn)").message("set exactly one of traffic.alb.listenerArn (its default action) or traffic.alb.ruleArn, or name Ingresses in traffic.alb.ingresses"))]
#[x_kube(validation = Rule::new("has(self.ingresses) || (has(self.stableTargetGroupArn) && has(self.canaryTargetGroupArn))").message("traffic.alb needs stableTargetGroupArn and canaryTargetGroupArn (or ingresses, whose target groups the AWS Load Balancer Controller makes)"))]
#[x_kube(validation = Rule::new("!has(self.ingresses) || !(has(self.listenerArn) || has(self.ruleArn) || has(self.stableTargetGroupArn) || has(self.canaryTargetGroupArn) || has(self.testListenerArn) || has(self.testRuleArn))").message("traffic.alb.ingresses leaves the listener, its rules and target groups to the AWS Load Balancer Controller: remove the ARNs, or remove ingresses"))]
#[x_kube(validation = Rule::new("!has(self.ingresses) || has(self.servicePort)").message("traffic.alb.ingresses needs servicePort: the port of the stable and canary Services the Ingress forwards to"))]
#[x_kube(validation = Rule::new("!(has(self.stableTargetGroupArn) && has(self.canaryTargetGroupArn)) || self.stableTargetGroupArn != self.canaryTargetGroupArn").message("traffic.alb.stableTargetGroupArn and canaryTargetGroupArn must be different target groups"))]
#[x_kube(validation = Rule::new("!(has(self.testListenerArn) && has(self.testRuleArn))").message("set at most one of traffic.alb.testListenerArn or testRuleArn"))]
#[serde(rename_all = "camelCase")]
pub struct AlbTraffic {
    /// Ingresses in the Rollout's namespace, managed by the AWS Load Balancer Controller, whose
    /// rules forward through the action `alb.ingress.kubernetes.io/actions.<stable Service>`:
    /// Sluice writes that action's weights and reads what reached ELBv2 back. All of them move
    /// together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 10), inner(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")))]
    pub ingresses: Vec<String>,
    /// With `ingresses`: the port of the stable and canary Services the action forwards to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub service_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:elasticloadbalancing:"))]
    pub listener_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:elasticloadbalancing:"))]
    pub rule_arn: Option<String>,
    /// Required without `ingresses`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:elasticloadbalancing:"))]
    pub stable_target_group_arn: String,
    /// Required without `ingresses`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:elasticloadbalancing:"))]
    pub canary_target_group_arn: String,
    /// A listener whose default action sends all its traffic to the new version (blue/green preview).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:elasticloadbalancing:"))]
    pub test_listener_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:elasticloadbalancing:"))]
    pub test_rule_arn: Option<String>,
    /// Percent of a revision's ready replicas that must be healthy targets of its target group,
    /// matched by IP address, before weight moves onto that group. Default 100: every ready
    /// replica is registered and healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub healthy_targets_percent: Option<i32>,
    /// An abort steps the canary weight down on this schedule instead of sending all traffic
    /// home at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradual_abort: Option<GradualAbort>,
}

impl AlbTraffic {
    /// Whether the AWS Load Balancer Controller owns the rules (`ingresses`).
    pub fn through_ingresses(&self) -> bool {
        !self.ingresses.is_empty()
    }
}

/// How an abort lowers the canary weight: `weightStep` points at once, then as many again every
/// `interval`, down to 0.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GradualAbort {
    #[schemars(range(min = 1, max = 100))]
    pub weight_step: i32,
    pub interval: DurationString,
}

/// Requests matching every one of `match` go to the new version whatever the weight, from this
/// step until the rollout ends; a later step with the same `name` and no `match` removes it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SetHeaderRoute {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub matches: Vec<HeaderMatch>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeaderMatch {
    #[schemars(length(min = 1, max = 40))]
    pub header_name: String,
    pub header_value: HeaderValueMatch,
}

/// A header's value: exactly, or by its start. ALB reads `*` and `?` as wildcards, so a value
/// may hold neither.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[x_kube(validation = Rule::new("has(self.exact) != has(self.prefix)").message("headerValue sets exactly one of exact or prefix"))]
#[x_kube(validation = Rule::new("(has(self.exact) ? self.exact : self.prefix).matches('^[^*?]*$')").message("a header value may not hold * or ?: the load balancer reads them as wildcards"))]
#[serde(rename_all = "camelCase")]
pub struct HeaderValueMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub prefix: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.canary) ? 1 : 0) + (has(self.blueGreen) ? 1 : 0) + (has(self.rolling) ? 1 : 0) == 1").message("set exactly one of strategy.canary, strategy.blueGreen or strategy.rolling"))]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling: Option<RollingStrategy>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub steps: Vec<CanaryStep>,
    /// Service whose selector follows the stable revision (its pods back the stable target group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_service: Option<String>,
    /// Service whose selector follows the canary revision (its pods back the canary target group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "count_or_percent")]
    pub max_surge: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "count_or_percent")]
    pub max_unavailable: Option<IntOrString>,
    /// Analysis that runs for the whole rollout, from the first step to promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    /// Seconds the old stable revision keeps running after promotion (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 604_800))]
    pub scale_down_delay_seconds: Option<i32>,
    /// Seconds an aborted canary keeps running after its traffic is gone (default 30; -1: it
    /// keeps running until the next revision or a retry, as Argo's 0). Without a router the
    /// canary's pods take traffic, so they always go at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1, max = 604_800))]
    pub abort_scale_down_delay_seconds: Option<i32>,
}

/// One canary step: exactly one of its fields.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.setWeight) ? 1 : 0) + (has(self.pause) ? 1 : 0) + (has(self.analysis) ? 1 : 0) + (has(self.setCanaryScale) ? 1 : 0) + (has(self.setHeaderRoute) ? 1 : 0) == 1").message("each canary step sets exactly one of setWeight, pause, analysis, setCanaryScale or setHeaderRoute"))]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of traffic for the canary, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("setWeight is a percentage: use a value from 0 to 100"))]
    pub set_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<SetCanaryScale>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<SetHeaderRoute>,
}

/// A pause: for `duration`, or until promoted when no duration is given.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<DurationString>,
}

/// Sizes the canary independently of its traffic weight.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.replicas) ? 1 : 0) + (has(self.weight) ? 1 : 0) + (has(self.matchTrafficWeight) && self.matchTrafficWeight ? 1 : 0) == 1").message("setCanaryScale takes exactly one of replicas, weight or matchTrafficWeight: true"))]
#[serde(rename_all = "camelCase")]
pub struct SetCanaryScale {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100_000))]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("setCanaryScale.weight is a percentage of replicas: use a value from 0 to 100"))]
    pub weight: Option<i32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub match_traffic_weight: bool,
}

/// Analysis templates to run, with the arguments they take.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.args) || self.args.all(a, !a.name.startsWith('sluice.'))").message("argument names starting with `sluice.` are Sluice's own (sluice.canaryRevision, sluice.canaryTargetGroup, ...): every template can use them without passing them; rename the argument"))]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    #[schemars(length(min = 1, max = 10))]
    pub templates: Vec<AnalysisTemplateRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub args: Vec<AnalysisArg>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateRef {
    #[schemars(length(min = 1))]
    pub template_name: String,
    /// Refer to a ClusterAnalysisTemplate instead of a namespaced AnalysisTemplate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_scope: bool,
}

/// An argument for the analysis templates: a value, or where to take it from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!(has(self.value) && has(self.valueFrom))").message("an analysis argument sets value or valueFrom, not both"))]
#[serde(rename_all = "camelCase")]
pub struct AnalysisArg {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ArgValueFrom>,
}

impl AnalysisArg {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: Some(value.into()), value_from: None }
    }
}

/// Where an argument's value comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.secretKeyRef) != has(self.fieldRef)").message("valueFrom sets exactly one of secretKeyRef or fieldRef"))]
#[serde(rename_all = "camelCase")]
pub struct ArgValueFrom {
    /// A key of a Secret in the Rollout's namespace, offered to Sluice (docs/security.md). It is
    /// read each time a measurement is taken and never written into the AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<crate::api::SecretKeyRef>,
    /// A field of the Rollout, read when the run is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    /// `metadata.name`, `metadata.namespace`, `metadata.labels['KEY']`,
    /// `metadata.annotations['KEY']`, or a dotted path into the spec to a text, number or
    /// boolean (`spec.workload.kubernetes.replicas`).
    #[schemars(regex(pattern = r"^(metadata\.(name|namespace|labels\['[^']+'\]|annotations\['[^']+'\])|spec(\.[A-Za-z0-9_-]+)+)$"))]
    pub field_path: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    /// Service that receives production traffic; it selects the stable revision until promotion.
    #[schemars(length(min = 1))]
    pub active_service: String,
    /// Service that selects the new revision before promotion, for tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_service: Option<String>,
    /// Wait for `kubectl sluice promote` before the new revision is scaled up for its preview
    /// (Flagger's confirm-rollout). Promotion then follows the rules below as usual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve_before_preview: Option<bool>,
    /// Promote by itself once the new revision is ready and analysed (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_enabled: Option<bool>,
    /// Seconds to wait after the new revision is ready before promoting by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2_592_000))]
    pub auto_promotion_seconds: Option<i32>,
    /// Replicas of the new revision before promotion (default: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub preview_replica_count: Option<i32>,
    /// Seconds the old revision keeps running after promotion (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 604_800))]
    pub scale_down_delay_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<RolloutAnalysis>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RollingStrategy {
    /// Extra replicas above the desired count during the update (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "count_or_percent")]
    pub max_surge: Option<IntOrString>,
    /// Replicas that may be unavailable during the update (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "count_or_percent")]
    pub max_unavailable: Option<IntOrString>,
    /// Analysis that gates the update while it runs; a failure rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum RolloutPhase {
    #[default]
    Progressing,
    Paused,
    Healthy,
    Degraded,
}

impl std::fmt::Display for RolloutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum PauseReason {
    /// A canary `pause` step.
    CanaryPauseStep,
    /// Analysis ended Inconclusive; a person decides.
    InconclusiveAnalysis,
    /// Blue/green waits for promotion.
    BlueGreenPause,
    /// Blue/green waits for a person before the preview is scaled up (`approveBeforePreview`).
    PreviewApproval,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    pub reason: PauseReason,
    pub start_time: Time,
}

/// A request made by a person (through `kubectl sluice`), written under its own field manager.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandRequest {
    /// Unique per request; the controller acts once per id.
    pub id: String,
    /// The revision the person acted on; a request for another revision is ignored, so a
    /// promote cannot land on a version pushed after it was typed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// For promote: skip every remaining step and analysis.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
}

/// The annotation holding people's requests (promote, abort, retry) as the JSON of
/// [`RolloutCommands`]. An annotation, so writing one needs `patch rollouts` only: the status is the
/// controller's, and whoever may write it could forge the stable revision or the step.
pub const COMMANDS_ANNOTATION: &str = "sluice.dev/commands";

/// RFC 3339 time of the commit the Rollout's spec was built from, set by the pipeline: where the
/// delivery lead time starts.
pub const COMMIT_TIME_ANNOTATION: &str = "sluice.dev/commit-time";

/// People's requests, written by `kubectl sluice` into the [`COMMANDS_ANNOTATION`] annotation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutCommands {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<CommandRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<CommandRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<CommandRequest>,
}

/// The ids of the last requests the controller acted on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandledCommands {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
}

/// What the controller did with a person's request: the answer `kubectl sluice` waits for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum CommandOutcome {
    /// Acted on.
    Applied,
    /// Not acted on: there was nothing it could do (the message says why).
    Ignored,
    /// Not acted on: it was for a revision that another has replaced since.
    Superseded,
}

impl std::fmt::Display for CommandOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Applied => "applied",
            Self::Ignored => "ignored",
            Self::Superseded => "superseded",
        })
    }
}

/// The controller's answer to one request, by its id.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandResult {
    pub id: String,
    pub outcome: CommandOutcome,
    /// What was done, or why nothing was.
    pub message: String,
    pub at: Time,
}

/// The answer to the last request of each kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandResults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<CommandResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<CommandResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<CommandResult>,
}

/// A revision that leaves service at `at` (scale-down delay after promotion or abort).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledScaleDown {
    pub revision: String,
    pub at: Time,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    /// What is happening and, when a person is needed, what they can do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,
    /// The revision serving production traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// The revision the spec asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// Canary weight the current step asks for.
    #[serde(default)]
    pub canary_weight: i32,
    /// Canary weight read back from the traffic router (or the replica ratio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_weight: Option<i32>,
    /// The target group `verifiedWeight` was read on: the canary role's at the time (ECS swaps
    /// the roles' groups at each promotion), so a later pass knows whether it reads the same split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_target_group: Option<String>,
    /// The weight as `kubectl get` shows it: the verified weight, and the desired one beside it
    /// where they differ ("0 (desired 50)").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<String>,
    /// Replicas (or ECS tasks) at full capacity: what the scale subresource reports as
    /// `status.replicas`, so an autoscaler sees the size it asked for, not every revision's pods.
    #[serde(default)]
    pub desired_replicas: i32,
    /// Replicas of every revision together.
    #[serde(default)]
    pub replicas: i32,
    /// Ready replicas of the revision the spec asks for.
    #[serde(default)]
    pub updated_replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub available_replicas: i32,
    /// Label selector of the pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_conditions: Vec<PauseCondition>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<Time>,
    /// The canary weight read when the abort began: where a gradual abort steps down from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_from_weight: Option<i32>,
    /// Why the candidate was aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
    /// Bumped by each retry so analysis runs of a new attempt get new names.
    #[serde(default)]
    pub attempt: i32,
    /// Promotion is under way: all remaining steps are skipped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promote_full: bool,
    /// Blue/green: a person promoted (not --full): the switch goes ahead without the remaining
    /// gates before it; post-promotion analysis still runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promoted: bool,
    /// Blue/green: a person approved the preview (`approveBeforePreview`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preview_approved: bool,
    /// Blue/green: the new revision became ready at this time (auto-promotion counts from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_ready_at: Option<Time>,
    /// Blue/green: traffic switched to the new revision; post-promotion analysis decides.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub switched: bool,
    /// Last time the rollout moved forward (the progress deadline counts from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale_downs: Vec<ScheduledScaleDown>,
    /// The revisions that were stable before the current one, newest first (at most 10): what
    /// `rollbackWindow` looks at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stable_history: Vec<String>,
    /// The candidate returns to a recent stable revision and goes straight to 100%
    /// (`rollbackWindow`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fast_tracked: bool,
    /// The spec's size last set where the platform holds the size (an ECS service's
    /// desiredCount). Until the spec changes it again, the platform's own size is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_capacity: Option<i32>,
    /// The `spec.restartAt` whose restart is done: every pod that started before it was replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_commands: Option<HandledCommands>,
    /// What became of each request: applied, ignored (and why) or superseded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_results: Option<CommandResults>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Times behind the delivery (DORA) metrics; kept by the controller, never read by the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryStatus>,
    /// Notifications decided but not yet delivered to every destination, oldest first. Written
    /// with the decision, so a controller stopped before delivering sends them after its restart
    /// (with the same id) instead of losing them. Kept by the controller, never read by the engine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub notifications: Vec<PendingNotification>,
}

/// One notification waiting for delivery.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingNotification {
    /// The same for the same decision; receivers drop repeats by it (`Idempotency-Key`).
    pub id: String,
    /// What happened, as people follow a rollout: Started, StepCompleted, Paused, Promoted,
    /// Aborted, Healthy.
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The revision serving production after the decision: what an abort returns to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    /// When it was decided.
    pub time: Time,
}

/// What the delivery metrics need across passes, kept in the status so a restart loses nothing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatus {
    /// The revision on its way to production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// When that revision was first seen; lead time counts from it when the Rollout carries no
    /// `sluice.dev/commit-time` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_seen_at: Option<Time>,
    /// The first abort not yet followed by Healthy; time to restore counts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_since: Option<Time>,
}

impl RolloutStatus {
    /// The verified weight, with the desired weight beside it where they differ: what traffic
    /// does, never only what was asked.
    pub fn weight_shown(&self) -> String {
        match self.verified_weight {
            Some(verified) if verified == self.canary_weight => verified.to_string(),
            Some(verified) => format!("{verified} (desired {})", self.canary_weight),
            None if self.canary_weight == 0 => "-".to_string(),
            None => format!("- (desired {})", self.canary_weight),
        }
    }
}

impl RolloutCommands {
    /// The requests in a Rollout's annotations (none without the annotation), or what is wrong
    /// with them.
    pub fn of(annotations: &std::collections::BTreeMap<String, String>) -> Result<Self, String> {
        match annotations.get(COMMANDS_ANNOTATION) {
            None => Ok(Self::default()),
            Some(text) => serde_json::from_str(text).map_err(|e| {
                format!(
                    "annotation {COMMANDS_ANNOTATION} is not a set of requests ({e}): remove it, then use `kubectl sluice promote|abort|retry`"
                )
            }),
        }
    }
}
