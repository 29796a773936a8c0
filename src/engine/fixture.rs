//! Inputs for the engine's unit tests: a spec from JSON and an observed world, owned here so a
//! test can lend them to a pass.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::context::Pass;
use super::{AnalysisRunObservation, Input, Observed, RevisionObservation, TrafficObservation};
use crate::api::{AnalysisPhase, RolloutCommands, RolloutSpec, RolloutStatus};

pub const STABLE: &str = "stable-rev";
pub const UPDATE: &str = "update-rev";
pub const STABLE_GROUP: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-stable/1";
pub const CANARY_GROUP: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-canary/2";

pub struct Fixture {
    pub spec: RolloutSpec,
    pub status: RolloutStatus,
    pub commands: RolloutCommands,
    pub observed: Observed,
    pub now: Timestamp,
}

impl Fixture {
    /// `replicas` of a Kubernetes workload with `strategy`, without a traffic router.
    pub fn new(replicas: i32, strategy: Value) -> Self {
        let spec = json!({
            "workload": {"kubernetes": {"replicas": replicas, "selector": {}, "template": {}}},
            "strategy": strategy,
        });
        Self {
            spec: serde_json::from_value(spec).expect("a spec"),
            status: RolloutStatus { stable_revision: Some(STABLE.into()), ..Default::default() },
            commands: RolloutCommands::default(),
            observed: Observed::default(),
            now: "2026-03-01T12:00:00Z".parse().expect("a time"),
        }
    }

    /// The same behind an ALB that reads back `weight`; each revision's ready replicas are
    /// healthy targets of its group (the stable revision's of the stable group, others' of the
    /// canary group).
    pub fn with_router(replicas: i32, strategy: Value, weight: i32) -> Self {
        let mut fixture = Self::new(replicas, strategy);
        fixture.spec.traffic = serde_json::from_value(json!({"alb": {
            "listenerArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2",
            "stableTargetGroupArn": STABLE_GROUP,
            "canaryTargetGroupArn": CANARY_GROUP,
        }}))
        .expect("traffic");
        fixture.observed.traffic = Some(TrafficObservation { canary_weight: Some(weight), ..Default::default() });
        fixture
    }

    /// The platform runs `revision` with `replicas`, `ready` of them ready.
    pub fn running(mut self, revision: &str, replicas: i32, ready: i32) -> Self {
        let addresses: BTreeSet<String> = (0..ready).map(|i| format!("{revision}-{i}")).collect();
        if let Some(traffic) = &mut self.observed.traffic {
            let group = if revision == STABLE { &mut traffic.stable_healthy } else { &mut traffic.canary_healthy };
            group.extend(addresses.iter().cloned());
        }
        self.observed.revisions.push(RevisionObservation { revision: revision.into(), replicas, ready, available: ready, addresses });
        self
    }

    /// `count` of the revision's ready replicas are not (yet) healthy targets of its group.
    pub fn unregistered(mut self, revision: &str, count: usize) -> Self {
        let traffic = self.observed.traffic.as_mut().expect("a router");
        for group in [&mut traffic.stable_healthy, &mut traffic.canary_healthy] {
            let own: Vec<String> = group.iter().filter(|a| a.starts_with(&format!("{revision}-"))).take(count).cloned().collect();
            own.iter().for_each(|a| {
                group.remove(a);
            });
        }
        self
    }

    /// An analysis run of this name is observed in `phase`.
    pub fn run(mut self, name: &str, phase: AnalysisPhase) -> Self {
        self.observed.analysis_runs.push(AnalysisRunObservation { name: name.into(), phase, message: None });
        self
    }

    pub fn input(&self) -> Input<'_> {
        Input {
            name: "web",
            generation: Some(1),
            spec: &self.spec,
            status: &self.status,
            commands: &self.commands,
            observed: &self.observed,
            commit_time: None,
            now: self.now,
        }
    }

    /// A pass before `begin`, over the fixture's spec as validation parses it.
    pub fn unset_pass(&self) -> Pass<'_> {
        Pass::new(self.input(), super::validate(&self.spec).ok().as_ref())
    }

    /// A pass whose roles are set as `begin` leaves them: `STABLE` serves, `UPDATE` is the candidate.
    pub fn pass(&self) -> Pass<'_> {
        let mut pass = self.unset_pass();
        pass.stable = STABLE.into();
        pass.update = UPDATE.into();
        pass
    }
}
