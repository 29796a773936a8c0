//! What registers targets with target groups beside Sluice, with the lag a real one has.
//!
//! [`Registrar`] plays the AWS Load Balancer Controller's TargetGroupBinding (target type
//! `ip`): it registers a Service's ready endpoint IPs with a target group `delay` after it
//! first sees them, and deregisters those that leave at once. [`EcsAgent`] plays ECS for task
//! sets, which moto stores but never runs: it starts each task set's tasks (moto's RunTask,
//! `startedBy` the task set's ID, as ECS does) and registers their IPs with the task set's
//! target group `delay` later. moto reports every registered target healthy, so the delay is
//! the whole of registration and health checking.
//!
//! Both poll every 25 ms and stop when dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2 as elbv2;
use elbv2::types::TargetDescription;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};

const POLL: Duration = Duration::from_millis(25);

/// The registration lag the e2e tests run behind: long enough that weight set on readiness
/// alone would land on a group without the revision's targets.
pub const REGISTRATION_LAG: Duration = Duration::from_secs(2);

/// Registers IPs with one target group once they have been wanted for `delay`.
struct Registrations {
    elb: elbv2::Client,
    target_group: String,
    port: i32,
    delay: Duration,
    /// Wanted, not yet registered: since when.
    pending: BTreeMap<String, Instant>,
    registered: BTreeSet<String>,
}

impl Registrations {
    fn new(elb: elbv2::Client, target_group: &str, port: i32, delay: Duration) -> Self {
        Self { elb, target_group: target_group.to_string(), port, delay, pending: BTreeMap::new(), registered: BTreeSet::new() }
    }

    /// Brings the group toward `wanted`: leavers go now, newcomers after the delay.
    async fn sync(&mut self, wanted: &BTreeSet<String>) {
        let leaving: Vec<String> = self.registered.difference(wanted).cloned().collect();
        if !leaving.is_empty() {
            let targets = leaving.iter().map(|ip| TargetDescription::builder().id(ip).port(self.port).build()).collect();
            let gone = self.elb.deregister_targets().target_group_arn(&self.target_group).set_targets(Some(targets)).send().await;
            if gone.is_ok() {
                leaving.iter().for_each(|ip| {
                    self.registered.remove(ip);
                });
            }
        }
        self.pending.retain(|ip, _| wanted.contains(ip));
        for ip in wanted.difference(&self.registered) {
            self.pending.entry(ip.clone()).or_insert_with(Instant::now);
        }
        let due: Vec<String> = self.pending.iter().filter(|(_, since)| since.elapsed() >= self.delay).map(|(ip, _)| ip.clone()).collect();
        if due.is_empty() {
            return;
        }
        let targets = due.iter().map(|ip| TargetDescription::builder().id(ip).port(self.port).build()).collect();
        if self.elb.register_targets().target_group_arn(&self.target_group).set_targets(Some(targets)).send().await.is_ok() {
            for ip in due {
                self.pending.remove(&ip);
                self.registered.insert(ip);
            }
        }
    }
}

/// A TargetGroupBinding: a Service's ready endpoints registered with a target group.
pub struct Registrar {
    task: tokio::task::JoinHandle<()>,
}

impl Registrar {
    pub fn bind(client: kube::Client, namespace: &str, service: &str, elb: elbv2::Client, target_group: &str, delay: Duration) -> Self {
        let slices: Api<EndpointSlice> = Api::namespaced(client, namespace);
        let selector = format!("kubernetes.io/service-name={service}");
        let mut registrations = Registrations::new(elb, target_group, 8080, delay);
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = slices.list(&ListParams::default().labels(&selector)).await {
                    let ready = list
                        .items
                        .iter()
                        .flat_map(|s| s.endpoints.iter())
                        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
                        .flat_map(|e| e.addresses.iter().cloned())
                        .collect();
                    registrations.sync(&ready).await;
                }
                tokio::time::sleep(POLL).await;
            }
        });
        Registrar { task }
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// ECS's part for the task sets of one service: tasks started and registered.
pub struct EcsAgent {
    task: tokio::task::JoinHandle<()>,
}

impl EcsAgent {
    /// Runs the task sets of `service` in `cluster`; their tasks' IPs join each task set's
    /// target group `delay` after the task starts.
    pub async fn run(stack: &super::Stack, cluster: &str, service: &str, delay: Duration) -> Self {
        tasks_keep_running(&stack.aws_endpoint).await;
        let config = stack.aws();
        let (ecs, elb) = (aws_sdk_ecs::Client::new(&config), elbv2::Client::new(&config));
        let (cluster, service) = (cluster.to_string(), service.to_string());
        let task = tokio::spawn(async move {
            let mut groups: BTreeMap<String, Registrations> = BTreeMap::new();
            loop {
                let _ = agent_pass(&ecs, &elb, &cluster, &service, delay, &mut groups).await;
                tokio::time::sleep(POLL).await;
            }
        });
        EcsAgent { task }
    }
}

impl Drop for EcsAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type AgentResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// One look: each live task set runs ⌈scale × desiredCount⌉ tasks, deleted and draining ones
/// none; each target group holds the IPs of its task sets' running tasks.
async fn agent_pass(
    ecs: &aws_sdk_ecs::Client,
    elb: &elbv2::Client,
    cluster: &str,
    service: &str,
    delay: Duration,
    groups: &mut BTreeMap<String, Registrations>,
) -> AgentResult {
    use aws_sdk_ecs::types::{DesiredStatus, LaunchType};
    let described = ecs.describe_services().cluster(cluster).services(service).send().await?;
    let desired = described.services().first().map_or(0, |s| s.desired_count());
    let task_sets = ecs.describe_task_sets().cluster(cluster).service(service).send().await?;
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let all = ecs.list_tasks().cluster(cluster).desired_status(DesiredStatus::Running).send().await?;
    let running = match all.task_arns().is_empty() {
        true => Vec::new(),
        false => ecs.describe_tasks().cluster(cluster).set_tasks(Some(all.task_arns().to_vec())).send().await?.tasks().to_vec(),
    };
    let mut live_ids = BTreeSet::new();
    for set in task_sets.task_sets().iter().filter(|t| t.status() != Some("DRAINING")) {
        let id = set.id().unwrap_or_default().to_string();
        live_ids.insert(id.clone());
        let scale = set.scale().map_or(0.0, |s| s.value());
        let count = (scale * f64::from(desired) / 100.0 - 1e-9).ceil().max(0.0) as usize;
        let own: Vec<&aws_sdk_ecs::types::Task> = running.iter().filter(|t| t.started_by() == Some(id.as_str())).collect();
        if own.len() < count {
            let mut run = ecs
                .run_task()
                .cluster(cluster)
                .task_definition(set.task_definition().unwrap_or_default())
                .count((count - own.len()) as i32)
                .started_by(&id)
                .launch_type(LaunchType::Fargate);
            if let Some(network) = set.network_configuration() {
                run = run.network_configuration(network.clone());
            }
            run.send().await?;
        }
        for extra in own.iter().skip(count) {
            ecs.stop_task().cluster(cluster).task(extra.task_arn().unwrap_or_default()).send().await?;
        }
        let Some(group) = set.load_balancers().first().and_then(|l| l.target_group_arn()) else { continue };
        let port = set.load_balancers().first().and_then(|l| l.container_port()).unwrap_or(80);
        groups.entry(group.to_string()).or_insert_with(|| Registrations::new(elb.clone(), group, port, delay));
        let ips = own.iter().take(count).flat_map(|t| task_ip(t));
        wanted.entry(group.to_string()).or_default().extend(ips);
    }
    // Tasks of deleted or draining task sets stop.
    for orphan in running.iter().filter(|t| t.started_by().is_some_and(|by| by.starts_with("ecs-svc/") && !live_ids.contains(by))) {
        ecs.stop_task().cluster(cluster).task(orphan.task_arn().unwrap_or_default()).send().await?;
    }
    for (group, registrations) in groups.iter_mut() {
        registrations.sync(&wanted.remove(group).unwrap_or_default()).await;
    }
    Ok(())
}

fn task_ip(task: &aws_sdk_ecs::types::Task) -> Option<String> {
    task.attachments()
        .iter()
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value().map(str::to_string))
}

/// moto moves a task one step toward STOPPED each time it is described; tasks here run until
/// they are stopped, as a healthy service's do.
pub async fn tasks_keep_running(aws_endpoint: &str) {
    let transition = serde_json::json!({"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1_000_000_000}});
    let url = format!("{aws_endpoint}/moto-api/state-manager/set-transition");
    let answer = reqwest::Client::new().post(url).json(&transition).send().await.expect("moto answers");
    assert!(answer.status().is_success(), "moto took no transition: {}", answer.status());
}
