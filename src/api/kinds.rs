//! The spec's "exactly one of" unions as enums. The schema stores each union as a struct of
//! optional fields (that is what the API server's CEL rules can check); everything that acts on
//! a Rollout parses them once, here, and matches on the enum.

use super::{
    BlueGreenStrategy, CanaryStep, CanaryStrategy, DurationString, EcsWorkload, KubernetesWorkload, RollingStrategy, RolloutAnalysis,
    SetCanaryScale, SetHeaderRoute, Strategy, Workload,
};

/// What runs the revisions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WorkloadKind<'a> {
    Kubernetes(&'a KubernetesWorkload),
    Ecs(&'a EcsWorkload),
}

/// How a new revision comes in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StrategyKind<'a> {
    Canary(&'a CanaryStrategy),
    BlueGreen(&'a BlueGreenStrategy),
    Rolling(&'a RollingStrategy),
}

/// One canary step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepKind<'a> {
    /// Percent of traffic for the canary.
    SetWeight(i32),
    /// For the duration, or until promoted without one.
    Pause(Option<&'a DurationString>),
    Analysis(&'a RolloutAnalysis),
    SetCanaryScale(CanaryScale),
    SetHeaderRoute(&'a SetHeaderRoute),
}

/// How a `setCanaryScale` step sizes the canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanaryScale {
    Replicas(i32),
    /// A percentage of the full replica count.
    Weight(i32),
    /// Back to the share the traffic weight gives.
    MatchTrafficWeight,
}

/// A union with none or several of its fields set: the message names the fields to choose from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("set exactly one of {0}")]
pub struct NotExactlyOne(pub &'static str);

impl Workload {
    pub fn kind(&self) -> Result<WorkloadKind<'_>, NotExactlyOne> {
        match (&self.kubernetes, &self.ecs) {
            (Some(kubernetes), None) => Ok(WorkloadKind::Kubernetes(kubernetes)),
            (None, Some(ecs)) => Ok(WorkloadKind::Ecs(ecs)),
            _ => Err(NotExactlyOne("workload.kubernetes or workload.ecs")),
        }
    }

    /// Replicas (or ECS tasks) at full capacity; 0 for a workload that is neither.
    pub fn replicas(&self) -> i32 {
        match self.kind() {
            Ok(WorkloadKind::Kubernetes(kubernetes)) => kubernetes.replicas,
            Ok(WorkloadKind::Ecs(ecs)) => ecs.desired_count,
            Err(_) => 0,
        }
    }
}

impl Strategy {
    pub fn kind(&self) -> Result<StrategyKind<'_>, NotExactlyOne> {
        match (&self.canary, &self.blue_green, &self.rolling) {
            (Some(canary), None, None) => Ok(StrategyKind::Canary(canary)),
            (None, Some(blue_green), None) => Ok(StrategyKind::BlueGreen(blue_green)),
            (None, None, Some(rolling)) => Ok(StrategyKind::Rolling(rolling)),
            _ => Err(NotExactlyOne("strategy.canary, strategy.blueGreen or strategy.rolling")),
        }
    }
}

impl CanaryStep {
    pub fn kind(&self) -> Result<StepKind<'_>, NotExactlyOne> {
        let kind = match (self.set_weight, &self.pause, &self.analysis, &self.set_canary_scale, &self.set_header_route) {
            (Some(weight), None, None, None, None) => StepKind::SetWeight(weight),
            (None, Some(pause), None, None, None) => StepKind::Pause(pause.duration.as_ref()),
            (None, None, Some(analysis), None, None) => StepKind::Analysis(analysis),
            (None, None, None, Some(scale), None) => StepKind::SetCanaryScale(scale.kind()?),
            (None, None, None, None, Some(route)) => StepKind::SetHeaderRoute(route),
            _ => return Err(NotExactlyOne("setWeight, pause, analysis, setCanaryScale or setHeaderRoute")),
        };
        Ok(kind)
    }
}

impl SetCanaryScale {
    pub fn kind(&self) -> Result<CanaryScale, NotExactlyOne> {
        match (self.replicas, self.weight, self.match_traffic_weight) {
            (Some(replicas), None, false) => Ok(CanaryScale::Replicas(replicas)),
            (None, Some(weight), false) => Ok(CanaryScale::Weight(weight)),
            (None, None, true) => Ok(CanaryScale::MatchTrafficWeight),
            _ => Err(NotExactlyOne("setCanaryScale.replicas, setCanaryScale.weight or setCanaryScale.matchTrafficWeight: true")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Pause;

    #[test]
    fn a_union_with_none_or_two_of_its_fields_set_is_refused_with_the_fields_to_choose_from() {
        let neither = Workload { kubernetes: None, ecs: None };
        assert_eq!(neither.kind().unwrap_err().to_string(), "set exactly one of workload.kubernetes or workload.ecs");
        assert_eq!(neither.replicas(), 0);
        let two = Strategy { canary: Some(CanaryStrategy::default()), rolling: Some(RollingStrategy::default()), blue_green: None };
        assert!(two.kind().is_err());
        let step = CanaryStep { set_weight: Some(10), pause: Some(Pause::default()), ..Default::default() };
        assert_eq!(step.kind().unwrap_err(), NotExactlyOne("setWeight, pause, analysis, setCanaryScale or setHeaderRoute"));
    }

    #[test]
    fn each_step_parses_to_the_one_thing_it_asks_for() {
        let weight = CanaryStep { set_weight: Some(20), ..Default::default() };
        assert_eq!(weight.kind(), Ok(StepKind::SetWeight(20)));
        let until_promoted = CanaryStep { pause: Some(Pause::default()), ..Default::default() };
        assert_eq!(until_promoted.kind(), Ok(StepKind::Pause(None)));
        let scale = SetCanaryScale { match_traffic_weight: true, ..Default::default() };
        let step = CanaryStep { set_canary_scale: Some(scale), ..Default::default() };
        assert_eq!(step.kind(), Ok(StepKind::SetCanaryScale(CanaryScale::MatchTrafficWeight)));
        let empty = CanaryStep { set_canary_scale: Some(SetCanaryScale::default()), ..Default::default() };
        assert!(empty.kind().is_err(), "setCanaryScale with nothing in it");
    }
}
