//! `sluice simulate`: the timeline a rollout would follow, computed by the real engine against a
//! simulated platform, router and metrics under a virtual clock.

pub mod scenario;
pub mod timeline;
pub mod world;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::{AnalysisTemplateSpec, CommandRequest, Rollout};
use crate::engine::revision;
pub use scenario::Scenario;
use scenario::{Command, ScriptedMetrics, version_of, with_version};
pub use timeline::Timeline;
use world::World;

/// Passes allowed at one instant before the simulation reports that the engine does not settle.
const MAX_PASSES_PER_INSTANT: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("the engine did not settle at {at}: {passes} passes at the same instant")]
    NoProgress { at: String, passes: usize },
}

/// Runs the rollout through the scenario and returns its timeline.
pub fn run(rollout: &Rollout, templates: BTreeMap<String, AnalysisTemplateSpec>, scenario: &Scenario) -> Result<Timeline, SimulateError> {
    let spec = &rollout.spec;
    let name = rollout.metadata.name.clone().unwrap_or_else(|| "rollout".into());
    let version = version_of(spec);
    let stable_version = scenario.stable_version.clone().unwrap_or_else(|| format!("{version}-previous"));
    let stable_spec = with_version(spec, &stable_version);
    let duration = |d: &Option<crate::api::DurationString>, default: u64| {
        d.as_ref().map_or(Ok(Duration::from_secs(default)), |d| d.to_duration()).map_err(|e| SimulateError::Scenario(e.to_string()))
    };
    let until = duration(&scenario.until, 7200)?;
    let metrics = ScriptedMetrics::new(scenario).map_err(SimulateError::Scenario)?;
    let start = Timestamp::from_second(1_767_225_600).expect("valid start"); // 2026-01-01T00:00:00Z
    let mut world = World::at_rest(&name, &stable_spec, start, Box::new(metrics));
    world.templates = templates;
    world.ready_after = duration(&scenario.ready_after, 10)?;

    let mut labels = BTreeMap::new();
    labels.insert(revision::of(&stable_spec.workload), stable_version);
    labels.insert(revision::of(&spec.workload), version.clone());
    let mut timeline = Timeline::new(labels);
    world.set_spec(spec.clone());

    let mut agenda: Vec<(Duration, Happening)> = Vec::new();
    for update in &scenario.updates {
        agenda.push((
            update.at.to_duration().map_err(|e| SimulateError::Scenario(e.to_string()))?,
            Happening::Version(update.version.clone()),
        ));
    }
    for command in &scenario.commands {
        agenda.push((command.at.to_duration().map_err(|e| SimulateError::Scenario(e.to_string()))?, Happening::Command(command.command)));
    }
    agenda.sort_by_key(|(at, _)| *at);
    let mut agenda = agenda.into_iter().peekable();
    let mut command_ids = 0;
    let mut passes_here = 0;

    loop {
        while let Some((_, happening)) = agenda.next_if(|(at, _)| *at <= world.elapsed()) {
            match happening {
                Happening::Version(v) => {
                    let updated = with_version(&world.spec, &v);
                    timeline.label(revision::of(&updated.workload), v.clone());
                    timeline.note(world.elapsed(), format!("spec updated to version {v}"));
                    world.set_spec(updated);
                }
                Happening::Command(command) => {
                    command_ids += 1;
                    timeline.note(world.elapsed(), format!("a person runs `kubectl sluice {}`", command_word(command)));
                    issue(&mut world, command, format!("sim-{command_ids}"));
                }
            }
        }
        let outcome = world.pass();
        let requeue = outcome.next_pass_after();
        timeline.record(&world, &outcome);

        let wake = [
            requeue.map(|r| world.now + SignedDuration::try_from(r).unwrap_or(SignedDuration::ZERO)),
            world.next_change(),
            agenda.peek().map(|(at, _)| world.started + SignedDuration::try_from(*at).unwrap_or(SignedDuration::ZERO)),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(wake) = wake.filter(|w| *w <= world.started + SignedDuration::try_from(until).unwrap_or(SignedDuration::ZERO)) else {
            break;
        };
        if wake <= world.now {
            passes_here += 1;
            if passes_here > MAX_PASSES_PER_INSTANT {
                return Err(SimulateError::NoProgress { at: timeline::clock(world.elapsed()), passes: passes_here });
            }
        } else {
            passes_here = 0;
        }
        world.now = wake.max(world.now);
    }
    timeline.finish(&world);
    Ok(timeline)
}

enum Happening {
    Version(String),
    Command(Command),
}

fn command_word(command: Command) -> &'static str {
    match command {
        Command::Promote => "promote",
        Command::PromoteFull => "promote --full",
        Command::Abort => "abort",
        Command::Retry => "retry",
        Command::Pause => "pause",
        Command::Resume => "resume",
    }
}

/// Writes a person's command into the rollout, as `kubectl sluice` does.
pub fn issue(world: &mut World, command: Command, id: String) {
    let commands = &mut world.commands;
    let revision = world.status.update_revision.clone();
    let request = |full| Some(CommandRequest { id: id.clone(), full, revision: revision.clone() });
    match command {
        Command::Promote => commands.promote = request(false),
        Command::PromoteFull => commands.promote = request(true),
        Command::Abort => commands.abort = request(false),
        Command::Retry => commands.retry = request(false),
        Command::Pause | Command::Resume => {
            let mut spec = world.spec.clone();
            spec.paused = command == Command::Pause;
            world.set_spec(spec);
        }
    }
}
