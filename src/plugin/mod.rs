//! `kubectl-sluice`, the kubectl plugin: watch rollouts and act on them. Every action is a write
//! to the Rollout (a request in its annotations, or a change of its spec), never a call to the
//! controller, so it works with any number of controller replicas and survives their restarts.
//! See docs/plugin.md.

pub mod args;
mod cluster;
mod describe;
mod error;
mod image;
mod requests;
mod spec_edit;
mod status;
mod table;
mod undo;
pub mod verdict;
pub mod view;

use std::process::ExitCode;

use jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;

pub use args::PluginCli;
pub use error::PluginError;
/// What promote, abort, retry, pause and resume write, for other front ends to write the same:
/// the Argo CD resource actions in `deploy/argocd` are tested against these.
pub use requests::{Request, patch as request_patch, request_id, target_revision, with_request};
pub use spec_edit::{merge_patch, set_paused};

use args::{PluginCommand, SetCommand};
use cluster::Cluster;
use describe::qualified_name;
use verdict::exit;

pub fn run(cli: PluginCli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start: {error}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(exit::ERROR)
        }
    }
}

async fn dispatch(cli: PluginCli) -> Result<ExitCode, PluginError> {
    let cluster = cluster::connect(&cli.connection).await?;
    let done = |line: String| {
        println!("{line}");
        Ok(ExitCode::SUCCESS)
    };
    match cli.command {
        PluginCommand::List { all_namespaces } => {
            let api = if all_namespaces { Api::all(cluster.client.clone()) } else { cluster.rollouts() };
            let rollouts = api.list(&ListParams::default()).await.map_err(|e| cluster.explain(e, ""))?;
            if rollouts.items.is_empty() {
                let place = if all_namespaces { "any namespace".to_string() } else { format!("namespace {}", cluster.namespace) };
                eprintln!("no rollouts in {place}");
                return Ok(ExitCode::SUCCESS);
            }
            print!("{}", table::list(&rollouts.items, all_namespaces));
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Get { name } => {
            print!("{}", table::get(&cluster.rollout(&name).await?));
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Status { name, watch, timeout } => {
            if watch || timeout.is_some() {
                status::watch(&cluster, &name, timeout).await
            } else {
                status::once(&cluster, &name).await
            }
        }
        PluginCommand::Promote { name, full, answer } => requests::request(&cluster, &name, Request::Promote { full }, answer.wait).await,
        PluginCommand::Abort { name, answer } => requests::request(&cluster, &name, Request::Abort, answer.wait).await,
        PluginCommand::Retry { name, answer } => requests::request(&cluster, &name, Request::Retry, answer.wait).await,
        PluginCommand::Pause { name } => done(write_paused(&cluster, &name, true).await?),
        PluginCommand::Resume { name } => done(write_paused(&cluster, &name, false).await?),
        PluginCommand::Restart { name } => {
            let now = Timestamp::now();
            let (_, after) = spec_edit::edit(&cluster, &name, |rollout| {
                spec_edit::restart_at(rollout, now).map_err(|message| PluginError::refused(&qualified_name(rollout), message))
            })
            .await?;
            done(format!("rollout {}: restart requested at {now} (spec.restartAt)", qualified_name(&after)))
        }
        PluginCommand::Undo { name, to_revision } => done(undo::undo(&cluster, &name, to_revision.as_deref()).await?),
        PluginCommand::Set(SetCommand::Image { name, images }) => {
            let (before, after) = spec_edit::edit(&cluster, &name, |rollout| {
                image::set_images(rollout, &images).map_err(|message| PluginError::refused(&qualified_name(rollout), message))
            })
            .await?;
            let (from, to) = (crate::engine::revision::of(&before.spec.workload), crate::engine::revision::of(&after.spec.workload));
            let set: Vec<String> = images.iter().map(|(container, image)| format!("{container}={image}")).collect();
            let change = if from == to { format!("unchanged, still revision {to}") } else { format!("revision {from} -> {to}") };
            done(format!("rollout {}: image set: {} ({change})", qualified_name(&after), set.join(", ")))
        }
    }
}

async fn write_paused(cluster: &Cluster, name: &str, paused: bool) -> Result<String, PluginError> {
    let (before, after) = spec_edit::edit(cluster, name, |rollout| Ok(spec_edit::set_paused(rollout, paused))).await?;
    let what = match (before.spec.paused, paused) {
        (true, true) => "already paused",
        (false, true) => "paused",
        (true, false) => "resumed",
        (false, false) => "not paused: nothing to resume",
    };
    Ok(format!("rollout {}: {what}", qualified_name(&after)))
}
