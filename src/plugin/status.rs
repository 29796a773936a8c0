//! `status`: read a rollout and what belongs to it, draw the view once or on every change, and
//! exit with what a pipeline needs to know.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::cluster::Cluster;
use super::error::PluginError;
use super::verdict::{exit, verdict};
use super::view::{StatusState, render};
use crate::api::{AnalysisRun, Rollout};
use crate::platform::kubernetes::ROLLOUT_LABEL;

/// ANSI: cursor home, clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

struct Selectors {
    rollout: String,
    owned: String,
    events: String,
}

fn selectors(name: &str) -> Selectors {
    Selectors {
        rollout: format!("metadata.name={name}"),
        owned: format!("{ROLLOUT_LABEL}={name}"),
        events: format!("involvedObject.kind=Rollout,involvedObject.name={name}"),
    }
}

/// Events of an earlier Rollout of the same name are not this one's.
fn events_of(rollout: &Rollout, events: Vec<Event>) -> Vec<Event> {
    let uid = rollout.uid();
    events.into_iter().filter(|e| e.involved_object.uid.is_none() || e.involved_object.uid == uid).collect()
}

pub async fn read(cluster: &Cluster, name: &str) -> Result<StatusState, PluginError> {
    let rollout = cluster.rollout(name).await?;
    let s = selectors(name);
    let client = &cluster.client;
    let namespace = &cluster.namespace;
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), namespace).list(&ListParams::default().labels(&s.owned)).await?;
    let analysis_runs = Api::<AnalysisRun>::namespaced(client.clone(), namespace).list(&ListParams::default().labels(&s.owned)).await?;
    let events = Api::<Event>::namespaced(client.clone(), namespace).list(&ListParams::default().fields(&s.events)).await?;
    Ok(StatusState {
        events: events_of(&rollout, events.items),
        rollout,
        replica_sets: replica_sets.items,
        analysis_runs: analysis_runs.items,
    })
}

/// One frame, and the verdict as the exit code.
pub async fn once(cluster: &Cluster, name: &str) -> Result<ExitCode, PluginError> {
    let state = read(cluster, name).await?;
    print!("{}", render(&state, Timestamp::now()));
    let verdict = verdict(&state.rollout);
    eprintln!("{}", verdict.describe(&state.rollout));
    Ok(verdict.to_exit())
}

/// One watched kind: a store kept by a reflector, and its stream of changes.
fn watched<K>(api: Api<K>, config: watcher::Config, index: usize) -> (Store<K>, impl Stream<Item = Change> + Send + 'static)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, config).default_backoff()).map(move |event| match event {
        Ok(watcher::Event::InitDone) => Change::Listed(index),
        Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => Change::Listing,
        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => Change::Changed,
        Err(error) => Change::Failed(error.to_string()),
    });
    (reader, stream)
}

enum Change {
    /// The first listing of watched kind `n` is complete.
    Listed(usize),
    /// Part of a (re)listing: its end says when the store is whole again.
    Listing,
    Changed,
    Failed(String),
}

/// Redraws on every change of the Rollout, its ReplicaSets, AnalysisRuns and Events until the
/// rollout is Healthy or Degraded, or `timeout` passes.
pub async fn watch(cluster: &Cluster, name: &str, timeout: Option<Duration>) -> Result<ExitCode, PluginError> {
    // A missing Rollout is an error now, not an empty watch.
    cluster.rollout(name).await?;
    let s = selectors(name);
    let (client, namespace) = (&cluster.client, &cluster.namespace);
    let (rollouts, rollout_changes) =
        watched(Api::<Rollout>::namespaced(client.clone(), namespace), watcher::Config::default().fields(&s.rollout), 0);
    let (replica_sets, rs_changes) =
        watched(Api::<ReplicaSet>::namespaced(client.clone(), namespace), watcher::Config::default().labels(&s.owned), 1);
    let (runs, run_changes) =
        watched(Api::<AnalysisRun>::namespaced(client.clone(), namespace), watcher::Config::default().labels(&s.owned), 2);
    let (events, event_changes) =
        watched(Api::<Event>::namespaced(client.clone(), namespace), watcher::Config::default().fields(&s.events), 3);
    let mut changes =
        futures::stream::select_all([rollout_changes.boxed(), rs_changes.boxed(), run_changes.boxed(), event_changes.boxed()]);

    let terminal = std::io::stdout().is_terminal();
    let draw = async {
        let mut listed = [false; 4];
        let mut last_frame = String::new();
        let mut last_failure = String::new();
        while let Some(change) = changes.next().await {
            match change {
                Change::Listed(index) => listed[index] = true,
                Change::Listing => continue,
                Change::Changed => {}
                Change::Failed(failure) => {
                    // The watch retries by itself; say so once per distinct failure.
                    if failure != last_failure {
                        eprintln!("warning: watch failed, retrying: {failure}");
                        last_failure = failure;
                    }
                    continue;
                }
            }
            if !listed.iter().all(|l| *l) {
                continue;
            }
            let Some(rollout) = rollouts.state().into_iter().find(|r| r.name_any() == name) else {
                return Err(PluginError::NotFound { namespace: namespace.clone(), name: name.to_string() });
            };
            let rollout = (*rollout).clone();
            let state = StatusState {
                events: events_of(&rollout, events.state().iter().map(|e| (**e).clone()).collect()),
                replica_sets: replica_sets.state().iter().map(|r| (**r).clone()).collect(),
                analysis_runs: runs.state().iter().map(|r| (**r).clone()).collect(),
                rollout,
            };
            let frame = render(&state, Timestamp::now());
            if frame != last_frame {
                let mut stdout = std::io::stdout().lock();
                // A terminal shows the latest frame in place; a log or pipe keeps every frame.
                let separator = if terminal {
                    CLEAR
                } else if last_frame.is_empty() {
                    ""
                } else {
                    "\n"
                };
                let _ = write!(stdout, "{separator}{frame}");
                let _ = stdout.flush();
                last_frame = frame;
            }
            let verdict = verdict(&state.rollout);
            if verdict.is_final() {
                eprintln!("{}", verdict.describe(&state.rollout));
                return Ok(verdict.to_exit());
            }
        }
        Err(PluginError::WatchEnded)
    };
    match timeout {
        None => draw.await,
        Some(limit) => match tokio::time::timeout(limit, draw).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let phase = rollouts.state().first().map(|r| super::describe::phase(r)).unwrap_or_else(|| "-".into());
                eprintln!(
                    "rollout {namespace}/{name}: timed out after {} waiting for Healthy (phase {phase})",
                    humantime::format_duration(limit)
                );
                Ok(ExitCode::from(exit::TIMED_OUT))
            }
        },
    }
}
