//! The controller: observe through the adapters, call the engine, apply its plan, write status.
//! It keeps no rollout state of its own: everything lives in each Rollout's status.

mod adapters;
mod analysis_runs;
mod backoff;
pub mod drift;
mod error;
mod leadership;
mod memory;
mod metrics;
mod rollouts;
mod server;
mod tenancy;
mod watched;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::runtime::controller::Controller;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use prometheus_client::registry::Registry;
use tracing::{info, warn};

pub use error::Error;
pub use metrics::Metrics;

use crate::api::Rollout;
use crate::engine::ServiceRole;
use watched::{WatchedRollout, WatchedRun};

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch only this namespace (single-namespace mode); all namespaces when `None`.
    pub namespace: Option<String>,
    pub metrics_addr: SocketAddr,
    /// Take a coordination.k8s.io Lease before acting, so only one replica acts.
    pub leader_election: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    pub identity: String,
    /// Label the delivery metrics with each Rollout's name (one series per Rollout).
    pub metrics_per_rollout: bool,
    /// Notified of every Rollout's events (webhook URLs, SNS topics, EventBridge buses), besides
    /// the destinations in each Rollout's annotation.
    pub webhooks: Vec<crate::notify::Target>,
    /// Where metrics and webhooks may connect (`--allow-host`); see [`crate::egress`].
    pub allowed_hosts: Vec<crate::egress::HostPattern>,
    /// ARN patterns every namespace may use, besides its own `sluice.dev/allowed-aws-resources`.
    pub allowed_aws_resources: Vec<String>,
    /// How often the weight locations of Rollouts behind an ALB are read for changes made
    /// outside Sluice (see [`drift`]); never when `None`.
    pub drift_check_interval: Option<Duration>,
}

/// What every reconcile pass shares; built once.
pub struct Context {
    pub client: Client,
    pub recorder: kube::runtime::events::Recorder,
    pub metrics: Metrics,
    pub replica_sets: Store<ReplicaSet>,
    pub services: Store<Service>,
    /// Deployments, for the Rollouts that adopt one (`deploymentRef`).
    pub deployments: Store<Deployment>,
    pub analysis_runs: Store<WatchedRun>,
    /// Per Rollout: the resourceVersion of its last status write (a pass that sees an older copy
    /// in the watch cache waits for it instead of deciding again from stale status), its phase
    /// for the gauges, and when it asked to be looked at again (how late the next step lands).
    pub memory: Arc<memory::Memory>,
    /// Consecutive failed passes per Rollout: how long the next waits, and when to say so.
    pub failing: Arc<backoff::Failures>,
    /// ALB weights; one client for every rollout.
    pub router: crate::traffic::alb::AlbRouter,
    /// ECS task sets; one client for every rollout.
    pub ecs: crate::platform::ecs::EcsPlatform,
    /// Notifications to webhooks, SNS topics and EventBridge buses, delivered in the background.
    pub notifier: crate::notify::Notifier,
    /// What each namespace's Rollouts may reach.
    pub tenancy: tenancy::Policy,
    /// The Rollouts' own watch cache.
    pub rollouts: Store<WatchedRollout>,
    /// True once every watch cache holds its first full list. A store's own readiness wakes only
    /// the last task that waited on it, so one task waits for them all and says so here.
    pub synced: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    /// Resolves once every watch cache holds its first full list (at once after that).
    pub async fn stores_ready(&self) {
        let mut synced = self.synced.clone();
        // An error means the sender is gone: the controller is stopping.
        let _ = synced.wait_for(|synced| *synced).await;
    }
}

/// How the controller's memory names a Rollout: `namespace/name`.
fn key(object: &impl kube::Resource) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

fn version(object: &impl kube::Resource) -> Option<u64> {
    object.resource_version().and_then(|v| v.parse().ok())
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The readable Rollouts in `object`'s namespace that `names_it` says refer to it by name.
fn rollouts_referring<K: kube::Resource>(
    rollouts: &Store<WatchedRollout>,
    object: &K,
    names_it: impl Fn(&Rollout, Option<&str>) -> bool,
) -> Vec<reflector::ObjectRef<WatchedRollout>> {
    let (namespace, name) = (object.meta().namespace.as_deref(), object.meta().name.as_deref());
    rollouts
        .state()
        .iter()
        .filter_map(|watched| match watched.as_ref() {
            WatchedRollout::Readable(rollout) => Some(rollout),
            WatchedRollout::Unreadable(_) => None,
        })
        .filter(|rollout| rollout.metadata.namespace.as_deref() == namespace && names_it(rollout, name))
        .map(|rollout| reflector::ObjectRef::new(&rollout.name_any()).within(namespace.unwrap_or_default()))
        .collect()
}

/// The Rollouts that adopt this Deployment: a change to its template is a new revision.
fn rollouts_adopting(rollouts: &Store<WatchedRollout>, deployment: &Deployment) -> Vec<reflector::ObjectRef<WatchedRollout>> {
    rollouts_referring(rollouts, deployment, |rollout, name| crate::platform::adoption::adopted_name(rollout) == name)
}

fn rollouts_naming(rollouts: &Store<WatchedRollout>, service: &Service) -> Vec<reflector::ObjectRef<WatchedRollout>> {
    rollouts_referring(rollouts, service, |rollout, name| {
        [ServiceRole::Stable, ServiceRole::Canary]
            .into_iter()
            .any(|role| crate::platform::kubernetes::service_name(rollout, role).as_deref() == name)
    })
}

/// Runs one object's pass with its panics contained: a panic becomes that object's error (its
/// status and events say so), and every other object goes on being served.
pub(crate) async fn contained<F>(pass: F) -> Result<kube::runtime::controller::Action, Error>
where
    F: Future<Output = Result<kube::runtime::controller::Action, Error>>,
{
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(pass).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let text = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            Err(Error::Panicked(text.unwrap_or_else(|| "no message".into())))
        }
    }
}

fn rollouts_in(rollouts: &Store<WatchedRollout>, namespace: &str) -> Vec<reflector::ObjectRef<WatchedRollout>> {
    rollouts
        .state()
        .iter()
        .filter(|rollout| rollout.namespace().as_deref() == Some(namespace))
        .map(|rollout| reflector::ObjectRef::new(&rollout.name_any()).within(namespace))
        .collect()
}

/// A deleted Rollout is forgotten, and after a relist every Rollout the list no longer holds
/// (deleted while the watch was down).
fn forget_deleted(
    event: &watcher::Event<WatchedRollout>,
    memory: &memory::Memory,
    failing: &backoff::Failures,
    metrics: &Metrics,
    rollouts: &Store<WatchedRollout>,
) {
    match event {
        watcher::Event::Delete(rollout) => {
            let key = key(rollout);
            memory.forget(&key, metrics);
            failing.retain(|other| *other != key);
        }
        watcher::Event::InitDone => {
            let listed: std::collections::HashSet<String> = rollouts.state().iter().map(|r| key(r.as_ref())).collect();
            memory.retain(|key| listed.contains(key), metrics);
            failing.retain(|key| listed.contains(key));
        }
        _ => {}
    }
}

/// Watch caches keep no managedFields: nothing here reads them, and they are a large share of
/// every object written with server-side apply.
fn without_managed_fields<K: kube::Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
}

/// SIGTERM (a pod being deleted) or SIGINT. Run as a container's first process, the controller
/// has no default action for either, so a standby must listen for them itself or it is killed
/// only when the grace period ends. (The leader's controllers stop on them through kube-runtime.)
async fn stop_requested() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            warn!(%error, "cannot listen for SIGTERM; only SIGINT stops a standby");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs until the process is stopped (or, with leader election, until leadership is lost).
pub async fn run(settings: Settings) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    crate::aws::install_crypto_provider();
    // One Kubernetes client and one AWS config for everything the controller calls.
    let client = Client::try_default().await?;
    let aws = crate::aws::sdk_config().await;
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry, settings.metrics_per_rollout);
    let readiness = server::Readiness::default();
    let server = tokio::spawn(server::serve(settings.metrics_addr, Arc::new(registry), readiness.clone()));
    let result = match lead(&settings, &client, &readiness, &metrics).await {
        Ok(Start::Alone) => serve(&settings, client, &aws, metrics, readiness, None).await,
        Ok(Start::Elected(leadership)) => serve(&settings, client, &aws, metrics, readiness, Some(*leadership)).await,
        Ok(Start::Stopped) => Ok(()),
        Err(error) => Err(error.into()),
    };
    server.abort();
    result
}

/// How the controller comes to act.
enum Start {
    /// Without leader election.
    Alone,
    Elected(Box<leadership::Leadership>),
    /// Stopped while waiting to lead.
    Stopped,
}

/// With leader election, waits to lead.
async fn lead(
    settings: &Settings,
    client: &Client,
    readiness: &server::Readiness,
    metrics: &Metrics,
) -> Result<Start, kube_lease_manager::LeaseManagerError> {
    if !settings.leader_election {
        return Ok(Start::Alone);
    }
    readiness.standby();
    let leadership = tokio::select! {
        acquired = leadership::acquire(client, &settings.lease_name, &settings.lease_namespace, &settings.identity) => acquired?,
        () = stop_requested() => {
            info!("stopped while waiting to become the leader");
            return Ok(Start::Stopped);
        }
    };
    readiness.starting();
    metrics.leader.set(1);
    Ok(Start::Elected(Box::new(leadership)))
}

type Watch<K> = futures::stream::BoxStream<'static, Result<K, watcher::Error>>;

/// A watch of `api` into a cache of its own: the cache, and the objects it touches.
fn watch<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, Watch<K>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config).default_backoff().modify(without_managed_fields).reflect(writer).touched_objects().boxed();
    (store, stream)
}

/// The Rollouts' watch: its cache, the Rollouts it applies, and whether it has listed once.
struct RolloutWatch {
    store: Store<WatchedRollout>,
    stream: futures::stream::BoxStream<'static, Result<WatchedRollout, watcher::Error>>,
    /// The Rollouts' store wakes one waiter when it is ready, and the controller's runner is that
    /// one: readiness learns of the first list from the watch itself.
    listed: tokio::sync::watch::Receiver<bool>,
}

/// Watches the Rollouts, forgetting what the controller remembers of those deleted.
fn watch_rollouts(
    api: Api<WatchedRollout>,
    config: watcher::Config,
    memory: Arc<memory::Memory>,
    failing: Arc<backoff::Failures>,
    metrics: Metrics,
) -> RolloutWatch {
    let (store, writer) = reflector::store();
    let (listed_tx, listed) = tokio::sync::watch::channel(false);
    let watched = store.clone();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(without_managed_fields)
        .reflect(writer)
        .inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) {
                listed_tx.send_replace(true);
            }
            forget_deleted(event, &memory, &failing, &metrics, &watched)
        })
        .applied_objects()
        .boxed();
    RolloutWatch { store, stream, listed }
}

/// Leads until stopped or until leadership is lost.
async fn serve(
    settings: &Settings,
    client: Client,
    aws: &aws_config::SdkConfig,
    metrics: Metrics,
    readiness: server::Readiness,
    leadership: Option<leadership::Leadership>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Most-recent list semantics: a restarted controller must not decide from a stale cache.
    let wc = watcher::Config::default();
    let namespace = &settings.namespace;
    let (replica_sets, rs_stream) =
        watch(api::<ReplicaSet>(&client, namespace), wc.clone().labels(crate::platform::kubernetes::ROLLOUT_LABEL));
    let (services, svc_stream) = watch(api::<Service>(&client, namespace), wc.clone());
    let (deployments, deploy_stream) = watch(api::<Deployment>(&client, namespace), wc.clone());
    let (analysis_runs, ar_stream) = watch(api::<WatchedRun>(&client, namespace), wc.clone());
    // The allow-lists of AWS resources live on Namespaces, which tenants normally cannot edit.
    let ns_config = match namespace {
        Some(ns) => wc.clone().fields(&format!("metadata.name={ns}")),
        None => wc.clone(),
    };
    let (namespaces, ns_stream) = watch(Api::<Namespace>::all(client.clone()), ns_config);
    let memory = Arc::new(memory::Memory::default());
    let failing = Arc::new(backoff::Failures::default());
    let rollouts = watch_rollouts(api::<WatchedRollout>(&client, namespace), wc.clone(), memory.clone(), failing.clone(), metrics.clone());
    let RolloutWatch { store: watched, stream: rollout_stream, listed: rollouts_listed } = rollouts;

    let reporter = Reporter { controller: "sluice".into(), instance: Some(settings.identity.clone()) };
    let egress = Arc::new(crate::egress::Egress::new(
        crate::egress::Policy::new(settings.allowed_hosts.clone()),
        Some(client.clone()),
        crate::egress::DEFAULT_MAX_ANSWER,
    ));
    let measure = Arc::new(crate::analysis::providers::Providers::new(aws, Some(client.clone()), egress.clone()));
    let reach = crate::notify::Reach {
        egress,
        publisher: Arc::new(crate::notify::Publisher::new(aws)),
        allowed: Arc::new(tenancy::Policy::new(namespaces.clone(), &settings.allowed_aws_resources)),
    };
    let (notifier, notified) = crate::notify::Notifier::start(settings.webhooks.clone(), metrics.notifications.clone(), reach);
    // A delivery done or a retry due: that Rollout's pass updates its outbox.
    let notified = futures::stream::unfold(notified, |mut notified| async move {
        let (namespace, name) = notified.recv().await?;
        Some((reflector::ObjectRef::new(&name).within(&namespace), notified))
    });
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let caches = Caches {
        replica_sets: replica_sets.clone(),
        services: services.clone(),
        deployments: deployments.clone(),
        analysis_runs: analysis_runs.clone(),
        namespaces: namespaces.clone(),
    };
    let synced = tokio::spawn(announce_synced(caches, synced_tx, rollouts_listed, readiness));
    let context = Arc::new(Context {
        recorder: kube::runtime::events::Recorder::new(client.clone(), reporter),
        client: client.clone(),
        metrics: metrics.clone(),
        replica_sets,
        services,
        deployments,
        analysis_runs,
        memory,
        failing,
        router: crate::traffic::alb::AlbRouter::new(aws),
        ecs: crate::platform::ecs::EcsPlatform::new(aws),
        notifier,
        rollouts: watched.clone(),
        synced: synced_rx,
        tenancy: tenancy::Policy::new(namespaces, &settings.allowed_aws_resources),
    });

    let drift_checks = match settings.drift_check_interval {
        Some(interval) => drift::checks(interval, context.clone()),
        None => futures::stream::pending().boxed(),
    };
    let rollouts = Controller::for_stream(rollout_stream, watched.clone())
        .owns_stream(rs_stream)
        .owns_stream(ar_stream)
        // A role Service created or changed wakes the Rollouts that name it.
        .watches_stream(svc_stream, {
            let watched = watched.clone();
            move |service| rollouts_naming(&watched, &service)
        })
        // An adopted Deployment changed: its template may be a new revision.
        .watches_stream(deploy_stream, {
            let watched = watched.clone();
            move |deployment| rollouts_adopting(&watched, &deployment)
        })
        // A Namespace's allow-list changed: its Rollouts are checked again.
        .watches_stream(ns_stream, move |namespace| rollouts_in(&watched, &namespace.name_any()))
        .reconcile_on(futures::stream::select(notified, drift_checks))
        .shutdown_on_signal()
        .run(rollouts::reconcile, rollouts::error_policy, context.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                // The runtime's error only names the object; its causes carry the server's message.
                warn!(error = %crate::egress::describe(&error), "rollout reconcile failed");
            }
        });
    let runner = Controller::new(api::<WatchedRun>(&client, namespace), wc)
        .shutdown_on_signal()
        .run(
            analysis_runs::reconcile,
            analysis_runs::error_policy,
            Arc::new(analysis_runs::Runner { context: context.clone(), measure, failing: Default::default() }),
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(error = %crate::egress::describe(&error), "analysis run reconcile failed");
            }
        });

    let lost = async move {
        match leadership {
            Some(leadership) => Some(leadership.lost().await),
            None => futures::future::pending().await,
        }
    };
    let lost = tokio::select! {
        _ = futures::future::join(rollouts, runner) => None,
        lost = lost => lost,
    };
    synced.abort();
    if let Some(lost) = lost {
        metrics.leader.set(0);
        warn!(reason = %lost, "no longer leading; stopping so a restart starts as a follower");
        return Err(Box::new(lost));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

/// The watch caches a pass reads, besides the Rollouts' own.
struct Caches {
    replica_sets: Store<ReplicaSet>,
    services: Store<Service>,
    deployments: Store<Deployment>,
    analysis_runs: Store<WatchedRun>,
    namespaces: Store<Namespace>,
}

/// Ready once every watch has listed: before that no pass runs (see [`Context::stores_ready`]),
/// and /readyz says so only once the Rollouts' own cache is in too.
async fn announce_synced(
    caches: Caches,
    synced: tokio::sync::watch::Sender<bool>,
    mut rollouts_listed: tokio::sync::watch::Receiver<bool>,
    readiness: server::Readiness,
) {
    // One at a time, from this task alone: a store wakes only one waiter. An error means the
    // controller is stopping.
    let _ = caches.replica_sets.wait_until_ready().await;
    let _ = caches.services.wait_until_ready().await;
    let _ = caches.deployments.wait_until_ready().await;
    let _ = caches.analysis_runs.wait_until_ready().await;
    let _ = caches.namespaces.wait_until_ready().await;
    let _ = synced.send(true);
    let _ = rollouts_listed.wait_for(|listed| *listed).await;
    info!("watch caches synced");
    readiness.ready();
}
