//! Amazon ECS: each revision is a task set of a service with the EXTERNAL deployment controller.
//!
//! Sluice does what CodeDeploy does for such a service: it creates one task set per revision
//! (`externalId` = the revision), scales it as a percentage of the service's desiredCount,
//! makes the stable one PRIMARY and deletes retired ones. Task sets are always addressed by ARN
//! (AWS takes an id too; moto matches only ARNs for UpdateServicePrimaryTaskSet).
//!
//! Counting rules (what [`EcsPlatform::observe`] reports per revision):
//! * `replicas` = ⌈scale % × the service's desiredCount / 100⌉, AWS's own formula for a task
//!   set's computedDesiredCount (computed here, so it is right also before AWS recomputes).
//! * `ready` = `available` = the task set's runningCount (at most `replicas`) when AWS reports
//!   any count (computedDesiredCount, runningCount or pendingCount above 0); otherwise, when the
//!   task set's stabilityStatus is STEADY_STATE, `replicas` (nothing left to start; moto always
//!   reports this and no counts); otherwise 0. Whether targets take traffic is the load
//!   balancer's health, read by the ALB router.
//!
//! Task sets without an `externalId` were not made by Sluice: they are listed in
//! [`EcsState::unmanaged_task_sets`] and never touched. DRAINING task sets are being deleted
//! and are not reported.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_ecs as ecs;
use ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentControllerType, LaunchType, LoadBalancer, NetworkConfiguration, Scale, ScaleUnit,
    StabilityStatus, TaskSet,
};

use crate::api::{EcsLaunchType, EcsWorkload};
use crate::engine::{RevisionObservation, ServiceRole};
use crate::ports::{Effect, Platform, PlatformObservation, PortError};
use crate::traffic::AwsFailure;

/// How often an ECS rollout in motion is looked at: task sets send no watch events.
pub const POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the platform did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{replicas} tasks for revision {revision:?} is out of range: 0 to desiredCount {desired_count}")]
    ReplicasOutOfRange { revision: String, replicas: i32, desired_count: i32 },
    #[error("a revision name is needed: it becomes the task set's externalId")]
    EmptyRevision,
    #[error("ECS service {service:?} does not exist in cluster {cluster:?} (or is not ACTIVE): check workload.ecs")]
    ServiceMissing { cluster: String, service: String },
    #[error(
        "ECS service {service:?} uses the {controller} deployment controller; Sluice drives task sets and needs EXTERNAL: \
         create the service with deploymentController type EXTERNAL"
    )]
    NotExternal { service: String, controller: String },
    #[error("ECS service {service:?} has no task set of revision {revision:?}: scale it up first")]
    NoTaskSet { service: String, revision: String },
    #[error(
        "no target group of traffic.alb is free for revision {revision:?}: the task sets are registered with {registered}; \
         both groups serve other task sets, or the stable one is not in traffic.alb: retire one or fix traffic.alb"
    )]
    NoTargetGroup { revision: String, registered: String },
    #[error(transparent)]
    Aws(#[from] AwsFailure),
}

impl PlatformError {
    /// A bounded label for metrics and events: throttled, aws_5xx, not_found, invalid, timeout, unexpected.
    pub fn category(&self) -> &'static str {
        match self {
            Self::ReplicasOutOfRange { .. } | Self::EmptyRevision | Self::NotExternal { .. } | Self::NoTargetGroup { .. } => "invalid",
            Self::ServiceMissing { .. } | Self::NoTaskSet { .. } => "not_found",
            Self::Aws(failure) => failure.category(),
        }
    }
}

/// The service and its task sets, as read.
#[derive(Clone, Debug, PartialEq)]
pub struct EcsState {
    /// The service's desiredCount: task sets are scaled as a percentage of it.
    pub service_desired_count: i32,
    /// Sluice's task sets (those with an externalId), not DRAINING.
    pub task_sets: Vec<TaskSetState>,
    /// ARNs of task sets without an externalId: not Sluice's, left alone.
    pub unmanaged_task_sets: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaskSetState {
    /// The revision (the task set's externalId).
    pub revision: String,
    pub arn: String,
    /// The task set's ID: its tasks' `startedBy`.
    pub id: String,
    pub primary: bool,
    /// The target group the task set is registered with.
    pub target_group: Option<String>,
    pub scale_percent: f64,
    pub observation: RevisionObservation,
}

impl EcsState {
    /// One observation per revision, for the engine.
    pub fn revisions(&self) -> Vec<RevisionObservation> {
        self.task_sets.iter().map(|t| t.observation.clone()).collect()
    }

    /// The revision of the PRIMARY task set.
    pub fn primary_revision(&self) -> Option<&str> {
        self.task_sets.iter().find(|t| t.primary).map(|t| t.revision.as_str())
    }

    pub fn task_set(&self, revision: &str) -> Option<&TaskSetState> {
        self.task_sets.iter().find(|t| t.revision == revision)
    }

    /// The target group a revision's task set is registered with.
    pub fn target_group_of(&self, revision: &str) -> Option<&str> {
        self.task_set(revision).and_then(|t| t.target_group.as_deref())
    }

    /// The revision whose task set is registered with a target group.
    pub fn revision_on(&self, target_group: &str) -> Option<&str> {
        self.task_sets.iter().find(|t| t.target_group.as_deref() == Some(target_group)).map(|t| t.revision.as_str())
    }
}

/// Drives task sets of EXTERNAL services. Build once from the shared `SdkConfig` and keep it.
#[derive(Debug)]
pub struct EcsPlatform {
    client: ecs::Client,
    calls: AtomicU64,
}

impl EcsPlatform {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        EcsPlatform { client: ecs::Client::new(config), calls: AtomicU64::new(0) }
    }

    /// ECS operations called so far (each counted once, whatever the SDK retried).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Reads the service and its task sets: one DescribeServices and one DescribeTaskSets, at
    /// the same time.
    pub async fn observe(&self, workload: &EcsWorkload) -> Result<EcsState, PlatformError> {
        let (desired_count, task_sets) = futures::try_join!(self.service_desired_count(workload), self.describe_task_sets(workload))?;
        Ok(state(desired_count, &task_sets))
    }

    /// The private IPs of each task set's RUNNING tasks, by task set ID: what ECS registers with
    /// the task set's target group (awsvpc tasks are registered by IP). One ListTasks per task
    /// set (ECS starts a task set's tasks with its ID as `startedBy`) and one DescribeTasks per
    /// 100 tasks.
    pub async fn task_addresses(
        &self,
        workload: &EcsWorkload,
        task_set_ids: &[&str],
    ) -> Result<BTreeMap<String, BTreeSet<String>>, PlatformError> {
        let listed = futures::future::try_join_all(task_set_ids.iter().map(|id| self.running_tasks(workload, id))).await?;
        let arns: Vec<String> = listed.into_iter().flatten().collect();
        let mut addresses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for chunk in arns.chunks(100) {
            self.count();
            let out = self
                .client
                .describe_tasks()
                .cluster(&workload.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| aws("DescribeTasks", &e))?;
            for task in out.tasks().iter().filter(|t| t.last_status() == Some("RUNNING")) {
                let Some(started_by) = task.started_by() else { continue };
                let ips = task
                    .attachments()
                    .iter()
                    .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
                    .flat_map(|a| a.details())
                    .filter(|d| d.name() == Some("privateIPv4Address"))
                    .filter_map(|d| d.value().map(str::to_string));
                addresses.entry(started_by.to_string()).or_default().extend(ips);
            }
        }
        Ok(addresses)
    }

    async fn running_tasks(&self, workload: &EcsWorkload, task_set_id: &str) -> Result<Vec<String>, PlatformError> {
        let mut arns = Vec::new();
        let mut token = None;
        loop {
            self.count();
            let out = self
                .client
                .list_tasks()
                .cluster(&workload.cluster)
                .started_by(task_set_id)
                .desired_status(ecs::types::DesiredStatus::Running)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| aws("ListTasks", &e))?;
            arns.extend(out.task_arns().iter().cloned());
            match out.next_token() {
                Some(next) => token = Some(next.to_string()),
                None => return Ok(arns),
            }
        }
    }

    /// Makes `revision` run `replicas` of the service's current desiredCount: creates its task
    /// set when missing (registered with `target_group`, which the engine chose), updates its
    /// scale when it differs, deletes it at 0. Scales are percentages of the desiredCount, which
    /// is left as it is (Service Auto Scaling may have set it). Also deletes duplicate task sets
    /// of a revision (left by a create AWS applied but answered with an error). Calling it again
    /// changes nothing more.
    pub async fn scale(
        &self,
        workload: &EcsWorkload,
        revision: &str,
        replicas: i32,
        target_group: Option<&str>,
    ) -> Result<(), PlatformError> {
        if revision.is_empty() {
            return Err(PlatformError::EmptyRevision);
        }
        let (desired_count, task_sets) = futures::try_join!(self.service_desired_count(workload), self.describe_task_sets(workload))?;
        if !(0..=desired_count).contains(&replicas) {
            // The desiredCount changed since the pass looked: the next pass decides again.
            return Err(PlatformError::ReplicasOutOfRange { revision: revision.to_string(), replicas, desired_count });
        }
        let state = state(desired_count, &task_sets);
        let mut own: Vec<&TaskSet> = live(&task_sets).filter(|t| t.external_id() == Some(revision)).collect();
        // Keep the primary one, else the oldest; delete the others.
        own.sort_by_key(|t| (!is_primary(t), t.created_at().map(|d| (d.secs(), d.subsec_nanos()))));
        for duplicate in own.iter().skip(1) {
            self.delete(workload, duplicate).await?;
        }
        match (own.first(), replicas) {
            (None, 0) => Ok(()),
            (Some(task_set), 0) => self.delete(workload, task_set).await,
            (Some(task_set), _) => {
                let current = task_set.scale().map_or(0, |s| tasks_for(s.value(), desired_count));
                if current == replicas {
                    return Ok(());
                }
                self.count();
                self.client
                    .update_task_set()
                    .cluster(&workload.cluster)
                    .service(&workload.service)
                    .task_set(task_set.task_set_arn().unwrap_or_default())
                    .scale(percent_scale(replicas, desired_count))
                    .send()
                    .await
                    .map_err(|e| aws("UpdateTaskSet", &e))?;
                Ok(())
            }
            (None, _) => {
                let Some(target_group) = target_group else {
                    let registered: Vec<String> = state
                        .task_sets
                        .iter()
                        .map(|t| format!("{} on {}", t.revision, t.target_group.as_deref().unwrap_or("none")))
                        .collect();
                    return Err(PlatformError::NoTargetGroup { revision: revision.to_string(), registered: registered.join(", ") });
                };
                self.create(workload, revision, target_group, percent_scale(replicas, desired_count)).await
            }
        }
    }

    /// Sets the service's desiredCount (the spec's, when it changed there); the task sets keep
    /// their percentages of it.
    pub async fn set_desired_count(&self, workload: &EcsWorkload, desired_count: i32) -> Result<bool, PlatformError> {
        if self.service_desired_count(workload).await? == desired_count {
            return Ok(false);
        }
        self.count();
        self.client
            .update_service()
            .cluster(&workload.cluster)
            .service(&workload.service)
            .desired_count(desired_count)
            .send()
            .await
            .map_err(|e| aws("UpdateService", &e))?;
        Ok(true)
    }

    /// Makes the revision's task set the service's PRIMARY task set (UpdateServicePrimaryTaskSet,
    /// by ARN); nothing is changed when it is already.
    pub async fn mark_stable(&self, workload: &EcsWorkload, revision: &str) -> Result<(), PlatformError> {
        let task_sets = self.describe_task_sets(workload).await?;
        let mut own: Vec<&TaskSet> = live(&task_sets).filter(|t| t.external_id() == Some(revision)).collect();
        own.sort_by_key(|t| (!is_primary(t), t.created_at().map(|d| (d.secs(), d.subsec_nanos()))));
        let Some(task_set) = own.first() else {
            return Err(PlatformError::NoTaskSet { service: workload.service.clone(), revision: revision.to_string() });
        };
        if is_primary(task_set) {
            return Ok(());
        }
        self.count();
        self.client
            .update_service_primary_task_set()
            .cluster(&workload.cluster)
            .service(&workload.service)
            .primary_task_set(task_set.task_set_arn().unwrap_or_default())
            .send()
            .await
            .map_err(|e| aws("UpdateServicePrimaryTaskSet", &e))?;
        Ok(())
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    async fn service_desired_count(&self, workload: &EcsWorkload) -> Result<i32, PlatformError> {
        self.count();
        let out = self
            .client
            .describe_services()
            .cluster(&workload.cluster)
            .services(&workload.service)
            .send()
            .await
            .map_err(|e| missing_service(aws("DescribeServices", &e), workload))?;
        let Some(service) = out.services().iter().find(|s| s.status() == Some("ACTIVE")) else {
            return Err(PlatformError::ServiceMissing { cluster: workload.cluster.clone(), service: workload.service.clone() });
        };
        let controller = service.deployment_controller().map_or(DeploymentControllerType::Ecs, |d| d.r#type().clone());
        if controller != DeploymentControllerType::External {
            return Err(PlatformError::NotExternal { service: workload.service.clone(), controller: controller.as_str().to_string() });
        }
        Ok(service.desired_count())
    }

    async fn describe_task_sets(&self, workload: &EcsWorkload) -> Result<Vec<TaskSet>, PlatformError> {
        self.count();
        let out = self
            .client
            .describe_task_sets()
            .cluster(&workload.cluster)
            .service(&workload.service)
            .send()
            .await
            .map_err(|e| missing_service(aws("DescribeTaskSets", &e), workload))?;
        Ok(out.task_sets().to_vec())
    }

    async fn create(&self, workload: &EcsWorkload, revision: &str, target_group: &str, scale: Scale) -> Result<(), PlatformError> {
        let load_balancer = LoadBalancer::builder()
            .target_group_arn(target_group)
            .container_name(&workload.load_balancer.container_name)
            .container_port(workload.load_balancer.container_port)
            .build();
        let network = workload.network_configuration.as_ref().map(|n| {
            let vpc = AwsVpcConfiguration::builder()
                .set_subnets(Some(n.subnets.clone()))
                .set_security_groups((!n.security_groups.is_empty()).then(|| n.security_groups.clone()))
                .assign_public_ip(if n.assign_public_ip { AssignPublicIp::Enabled } else { AssignPublicIp::Disabled })
                .build()
                // Only a missing subnet list fails to build, and it is always set here.
                .expect("subnets are set");
            NetworkConfiguration::builder().awsvpc_configuration(vpc).build()
        });
        let launch_type = workload.launch_type.map(|l| match l {
            EcsLaunchType::Fargate => LaunchType::Fargate,
            EcsLaunchType::Ec2 => LaunchType::Ec2,
        });
        self.count();
        self.client
            .create_task_set()
            .cluster(&workload.cluster)
            .service(&workload.service)
            .external_id(revision)
            .task_definition(&workload.task_definition)
            .set_launch_type(launch_type)
            .set_network_configuration(network)
            .load_balancers(load_balancer)
            .scale(scale)
            .send()
            .await
            .map_err(|e| aws("CreateTaskSet", &e))?;
        Ok(())
    }

    async fn delete(&self, workload: &EcsWorkload, task_set: &TaskSet) -> Result<(), PlatformError> {
        self.count();
        let result = self
            .client
            .delete_task_set()
            .cluster(&workload.cluster)
            .service(&workload.service)
            .task_set(task_set.task_set_arn().unwrap_or_default())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already gone: what was asked for.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_task_set_not_found_exception()) => Ok(()),
            Err(e) => Err(aws("DeleteTaskSet", &e).into()),
        }
    }
}

fn aws<E>(operation: &'static str, error: &ecs::error::SdkError<E, ecs::config::http::HttpResponse>) -> AwsFailure
where
    E: ecs::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    AwsFailure::from_sdk("ECS", operation, error)
}

fn missing_service(failure: AwsFailure, workload: &EcsWorkload) -> PlatformError {
    match failure.code.as_deref() {
        Some("ServiceNotFoundException" | "ClusterNotFoundException" | "ServiceNotActiveException") => {
            PlatformError::ServiceMissing { cluster: workload.cluster.clone(), service: workload.service.clone() }
        }
        _ => PlatformError::Aws(failure),
    }
}

fn is_primary(task_set: &TaskSet) -> bool {
    task_set.status() == Some("PRIMARY")
}

/// Task sets that are not being deleted.
fn live(task_sets: &[TaskSet]) -> impl Iterator<Item = &TaskSet> {
    task_sets.iter().filter(|t| t.status() != Some("DRAINING"))
}

fn state(desired_count: i32, task_sets: &[TaskSet]) -> EcsState {
    let mut managed: Vec<&TaskSet> = Vec::new();
    let mut unmanaged_task_sets = Vec::new();
    for task_set in live(task_sets) {
        match task_set.external_id().filter(|id| !id.is_empty()) {
            Some(revision) => match managed.iter().position(|t| t.external_id() == Some(revision)) {
                // Duplicates of a revision: report the one `scale` keeps.
                Some(i) if is_primary(task_set) && !is_primary(managed[i]) => managed[i] = task_set,
                Some(_) => {}
                None => managed.push(task_set),
            },
            None => unmanaged_task_sets.push(task_set.task_set_arn().unwrap_or_default().to_string()),
        }
    }
    let task_sets = managed
        .into_iter()
        .map(|t| {
            let scale_percent = t.scale().map_or(0.0, |s| s.value());
            let replicas = tasks_for(scale_percent, desired_count);
            let reports_counts = t.computed_desired_count() > 0 || t.running_count() > 0 || t.pending_count() > 0;
            let ready = if reports_counts {
                t.running_count().min(replicas)
            } else if t.stability_status() == Some(&StabilityStatus::SteadyState) {
                replicas
            } else {
                0
            };
            let revision = t.external_id().unwrap_or_default().to_string();
            TaskSetState {
                observation: RevisionObservation {
                    revision: revision.clone(),
                    replicas,
                    ready,
                    available: ready,
                    addresses: Default::default(),
                },
                revision,
                arn: t.task_set_arn().unwrap_or_default().to_string(),
                id: t.id().unwrap_or_default().to_string(),
                primary: is_primary(t),
                target_group: t.load_balancers().first().and_then(|l| l.target_group_arn()).map(str::to_string),
                scale_percent,
            }
        })
        .collect();
    EcsState { service_desired_count: desired_count, task_sets, unmanaged_task_sets }
}

/// The scale for `replicas` of `desired_count` tasks, in percent truncated to two decimals, so
/// that AWS's ⌈percent × desiredCount / 100⌉ gives exactly `replicas` back (up to 10,000 tasks).
fn percent_scale(replicas: i32, desired_count: i32) -> Scale {
    Scale::builder().unit(ScaleUnit::Percent).value(scale_percent(replicas, desired_count)).build()
}

fn scale_percent(replicas: i32, desired_count: i32) -> f64 {
    let hundredths = i64::from(replicas) * 10_000 / i64::from(desired_count.max(1));
    hundredths as f64 / 100.0
}

/// Tasks a task set runs at `percent` of `desired_count`: AWS rounds up.
fn tasks_for(percent: f64, desired_count: i32) -> i32 {
    (percent * f64::from(desired_count) / 100.0 - 1e-9).ceil().max(0.0) as i32
}

/// The [`Platform`] of one Rollout's task sets.
pub struct TaskSets<'a> {
    pub ecs: &'a EcsPlatform,
    pub workload: &'a EcsWorkload,
}

impl From<PlatformError> for PortError {
    fn from(error: PlatformError) -> Self {
        PortError::new("ECS", error.category(), error)
    }
}

#[async_trait::async_trait]
impl Platform for TaskSets<'_> {
    async fn observe(&self) -> Result<PlatformObservation, PortError> {
        let mut state = self.ecs.observe(self.workload).await?;
        let ids: Vec<&str> = state.task_sets.iter().map(|t| t.id.as_str()).filter(|id| !id.is_empty()).collect();
        let mut addresses = self.ecs.task_addresses(self.workload, &ids).await?;
        for task_set in &mut state.task_sets {
            task_set.observation.addresses = addresses.remove(&task_set.id).unwrap_or_default();
        }
        let registrations = state.task_sets.iter().filter_map(|t| Some((t.revision.clone(), t.target_group.clone()?))).collect();
        // No Services: the target groups follow the task sets.
        Ok(PlatformObservation {
            revisions: state.revisions(),
            services: Default::default(),
            registrations,
            adopted: None,
            capacity: Some(state.service_desired_count),
            stale_pods: Default::default(),
        })
    }

    async fn scale(&self, revision: &str, replicas: i32, target_group: Option<&str>) -> Result<Effect, PortError> {
        self.ecs.scale(self.workload, revision, replicas, target_group).await?;
        Ok(Effect::Changed)
    }

    /// Nothing to point: each task set's target group takes the traffic its role gets.
    async fn point_traffic(&self, _role: ServiceRole, _revision: &str) -> Result<Effect, PortError> {
        Ok(Effect::Unchanged)
    }

    async fn mark_stable(&self, revision: &str) -> Result<Effect, PortError> {
        self.ecs.mark_stable(self.workload, revision).await?;
        Ok(Effect::Changed)
    }

    /// A task set scaled to 0 is deleted: no history is kept.
    async fn retire(&self, _keep: &[&str]) -> Result<(), PortError> {
        Ok(())
    }

    async fn set_capacity(&self, replicas: i32) -> Result<Effect, PortError> {
        let changed = self.ecs.set_desired_count(self.workload, replicas).await?;
        Ok(if changed { Effect::Changed } else { Effect::Unchanged })
    }

    /// Task sets are replaced as a whole, by a new revision: the engine asks no restart of ECS.
    async fn restart(&self, _revision: &str, _started_before: jiff::Timestamp, _count: i32) -> Result<Effect, PortError> {
        Ok(Effect::Unchanged)
    }

    /// An ECS service adopts nothing: it is the workload.
    async fn scale_adopted(&self, _replicas: i32) -> Result<Effect, PortError> {
        Ok(Effect::Unchanged)
    }

    async fn release_adopted(&self) -> Result<Effect, PortError> {
        Ok(Effect::Unchanged)
    }

    fn poll_interval(&self) -> Option<std::time::Duration> {
        Some(POLL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_trip_to_the_same_task_count() {
        for desired in 1..=300 {
            for replicas in 0..=desired {
                let percent = scale_percent(replicas, desired);
                assert!((0.0..=100.0).contains(&percent));
                assert_eq!(tasks_for(percent, desired), replicas, "{replicas} of {desired} as {percent}%");
            }
        }
        assert_eq!(scale_percent(1, 3), 33.33);
        assert_eq!(tasks_for(10.0, 4), 1, "AWS rounds up");
    }

    fn task_set(revision: &str, status: &str, percent: f64, counts: (i32, i32, i32), stability: StabilityStatus) -> TaskSet {
        let (computed, running, pending) = counts;
        TaskSet::builder()
            .external_id(revision)
            .task_set_arn(format!("arn:aws:ecs:us-east-1:123456789012:task-set/c/s/ecs-svc/{revision}-{status}"))
            .status(status)
            .scale(Scale::builder().unit(ScaleUnit::Percent).value(percent).build())
            .computed_desired_count(computed)
            .running_count(running)
            .pending_count(pending)
            .stability_status(stability)
            .load_balancers(LoadBalancer::builder().target_group_arn(format!("tg-{revision}")).build())
            .build()
    }

    #[test]
    fn readiness_comes_from_counts_when_aws_reports_them() {
        let sets = [
            task_set("a", "PRIMARY", 100.0, (10, 7, 3), StabilityStatus::Stabilizing),
            task_set("b", "ACTIVE", 20.0, (0, 0, 0), StabilityStatus::SteadyState),
            task_set("c", "ACTIVE", 20.0, (0, 0, 0), StabilityStatus::Stabilizing),
            task_set("d", "ACTIVE", 50.0, (5, 9, 0), StabilityStatus::SteadyState),
            task_set("e", "DRAINING", 10.0, (1, 1, 0), StabilityStatus::Stabilizing),
        ];
        let state = state(10, &sets);
        let seen: Vec<(&str, i32, i32)> =
            state.task_sets.iter().map(|t| (t.revision.as_str(), t.observation.replicas, t.observation.ready)).collect();
        assert_eq!(
            seen,
            [
                ("a", 10, 7), // counts reported: running tasks are ready
                ("b", 2, 2),  // no counts and STEADY_STATE (moto): nothing left to start
                ("c", 2, 0),  // no counts while stabilizing: not ready yet
                ("d", 5, 5),  // never more ready than asked for
            ],
            "DRAINING task sets are not reported"
        );
        assert_eq!(state.primary_revision(), Some("a"));
        assert_eq!(state.revision_on("tg-d"), Some("d"));
    }

    #[test]
    fn duplicates_report_the_primary_and_foreign_task_sets_are_listed() {
        let mut foreign = task_set("", "ACTIVE", 100.0, (0, 0, 0), StabilityStatus::SteadyState);
        foreign.external_id = None;
        let sets = [
            task_set("a", "ACTIVE", 50.0, (0, 0, 0), StabilityStatus::SteadyState),
            task_set("a", "PRIMARY", 100.0, (0, 0, 0), StabilityStatus::SteadyState),
            foreign,
        ];
        let state = state(4, &sets);
        assert_eq!(
            state.revisions(),
            vec![RevisionObservation { revision: "a".into(), replicas: 4, ready: 4, available: 4, addresses: Default::default() }]
        );
        assert!(state.task_sets[0].primary);
        assert_eq!(state.unmanaged_task_sets.len(), 1);
    }
}
