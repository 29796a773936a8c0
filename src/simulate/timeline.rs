//! The printed story of a simulated rollout.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::world::{PassOutcome, World};
use crate::api::RolloutPhase;
use crate::engine::Action;

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// The rollout's state changed.
    State {
        at: Duration,
        line: String,
    },
    Action {
        at: Duration,
        text: String,
    },
    Event {
        at: Duration,
        reason: String,
        message: String,
    },
    Note {
        at: Duration,
        text: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    labels: BTreeMap<String, String>,
    pub entries: Vec<Entry>,
    last_state: String,
    last_message: String,
    /// Every canary weight the router was set to, in order.
    pub weights: Vec<i32>,
    pub final_phase: Option<RolloutPhase>,
    pub final_message: String,
    pub final_replicas: BTreeMap<String, i32>,
    pub ended_at: Duration,
}

pub fn clock(at: Duration) -> String {
    let s = at.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

impl Timeline {
    pub fn new(labels: BTreeMap<String, String>) -> Self {
        Self {
            labels,
            entries: Vec::new(),
            last_state: String::new(),
            last_message: String::new(),
            weights: Vec::new(),
            final_phase: None,
            final_message: String::new(),
            final_replicas: BTreeMap::new(),
            ended_at: Duration::ZERO,
        }
    }

    pub fn label(&mut self, revision: String, version: String) {
        self.labels.entry(revision).or_insert(version);
    }

    fn name(&self, revision: &str) -> String {
        self.labels.get(revision).cloned().unwrap_or_else(|| revision.to_string())
    }

    pub fn note(&mut self, at: Duration, text: String) {
        self.entries.push(Entry::Note { at, text });
    }

    pub fn record(&mut self, world: &World, outcome: &PassOutcome) {
        let at = world.elapsed();
        let applied = match outcome {
            PassOutcome::Applied { applied, .. } | PassOutcome::Interrupted { applied, .. } => applied,
        };
        for action in applied {
            if let Some(text) = self.describe(action) {
                self.entries.push(Entry::Action { at, text });
            }
            if let Action::SetWeight { canary_weight, .. } = action {
                self.weights.push(*canary_weight);
            }
        }
        match outcome {
            PassOutcome::Interrupted { reason, .. } => self.entries.push(Entry::Note { at, text: format!("pass interrupted: {reason}") }),
            PassOutcome::Applied { plan, .. } => {
                for event in &plan.events {
                    self.entries.push(Entry::Event { at, reason: event.reason.to_string(), message: event.message.clone() });
                }
            }
        }
        let state = self.state_line(world);
        if state != self.last_state {
            self.entries.push(Entry::State { at, line: state.clone() });
            self.last_state = state;
        }
        let message = world.status.message.clone().unwrap_or_default();
        if message != self.last_message && !message.is_empty() {
            self.entries.push(Entry::Note { at, text: message.clone() });
            self.last_message = message;
        }
    }

    fn describe(&self, action: &Action) -> Option<String> {
        Some(match action {
            Action::Scale { revision, replicas, .. } => format!("scale {} to {replicas}", self.name(revision)),
            Action::SetWeight { canary_weight, .. } => format!("set canary weight {canary_weight}%"),
            Action::PointService { .. } => return None,
            Action::MarkStable { revision } => format!("mark {} stable", self.name(revision)),
            Action::CreateAnalysisRun { name, .. } => format!("start analysis run {name}"),
            Action::TerminateAnalysisRun { name } => format!("stop analysis run {name}"),
            Action::RouteTestTraffic { to, .. } => format!("test traffic to {}", super::world::role_key(*to)),
            Action::RouteHeaders { target_group: None, .. } => "header routes removed".to_string(),
            Action::RouteHeaders { routes, .. } => {
                let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
                format!("header routes {} to canary", names.join(", "))
            }
            Action::ScaleAdopted { replicas } => format!("scale the adopted Deployment to {replicas}"),
            Action::SetCapacity { replicas } => format!("set the service's desired count to {replicas}"),
            Action::RestartPods { revision, count, .. } => format!("restart {count} pods of {}", self.name(revision)),
        })
    }

    fn state_line(&self, world: &World) -> String {
        let status = &world.status;
        let phase = status.phase.map_or("-".to_string(), |p| p.to_string());
        let steps = world.spec.strategy.canary.as_ref().map(|c| c.steps.len());
        let step = match (status.current_step_index, steps) {
            (Some(i), Some(n)) => format!("step {i}/{n}"),
            _ => "-".into(),
        };
        let weight = match world.weight() {
            Some(w) => format!("weight {w}%"),
            None => format!("weight {}% (replicas)", status.verified_weight.unwrap_or(0)),
        };
        let replicas: Vec<String> = world
            .running()
            .iter()
            .map(|r| {
                let role = if world.serving("stable").as_ref() == Some(r) { "*" } else { "" };
                format!("{}{role} {}/{}", self.name(r), world.ready(r), world.replicas(r))
            })
            .collect();
        format!("{phase:<11} {step:<9} {weight:<20} {}", replicas.join("  "))
    }

    pub fn finish(&mut self, world: &World) {
        self.final_phase = world.status.phase;
        self.final_message = world.status.message.clone().unwrap_or_default();
        self.final_replicas = world.running().into_iter().map(|r| (self.name(&r), world.replicas(&r))).collect();
        self.ended_at = world.elapsed();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "TIME      PHASE       STEP      WEIGHT               REPLICAS (ready/desired, * = stable Service)");
        for entry in &self.entries {
            let _ = match entry {
                Entry::State { at, line } => writeln!(out, "{}  {line}", clock(*at)),
                Entry::Action { at, text } => writeln!(out, "{}    -> {text}", clock(*at)),
                Entry::Event { at, reason, message } => writeln!(out, "{}    ** {reason}: {message}", clock(*at)),
                Entry::Note { at, text } => writeln!(out, "{}    .. {text}", clock(*at)),
            };
        }
        let phase = self.final_phase.map_or("-".to_string(), |p| p.to_string());
        let _ = writeln!(out, "\nended at {} in phase {phase}: {}", clock(self.ended_at), self.final_message);
        out
    }
}
