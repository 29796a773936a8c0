//! Whether a rollout is done, and the exit code that tells a pipeline.

use std::process::ExitCode;

use kube::ResourceExt;

use crate::api::{Rollout, RolloutPhase};

/// What a pipeline waiting on a rollout wants to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy, for the spec as it is now.
    Healthy,
    /// Degraded (aborted, stuck past its deadline, or an invalid spec), for the spec as it is now.
    Degraded,
    /// Still under way, paused, or the controller has not yet seen the latest spec.
    InProgress,
}

/// The exit codes of `kubectl sluice`; documented in docs/plugin.md.
pub mod exit {
    /// Success; for `status`: the rollout is Healthy.
    pub const SUCCESS: u8 = 0;
    /// Any error: not found, no access, a request refused, a bad kubeconfig.
    pub const ERROR: u8 = 1;
    /// Bad usage (clap's own code).
    pub const USAGE: u8 = 2;
    /// `status`: the rollout is Degraded.
    pub const DEGRADED: u8 = 3;
    /// `status --timeout`: neither Healthy nor Degraded in time.
    pub const TIMED_OUT: u8 = 4;
    /// `status` without --watch: the rollout is still in progress (or paused); promote, abort,
    /// retry: requested, but the controller has not answered in time.
    pub const IN_PROGRESS: u8 = 5;
    /// promote, abort, retry: the controller ignored the request or another revision
    /// superseded it; it says why.
    pub const NOT_APPLIED: u8 = 6;
}

/// A phase counts only once the controller has observed the current generation: right after a
/// spec change the status still describes the previous one.
pub fn verdict(rollout: &Rollout) -> Verdict {
    let Some(status) = &rollout.status else { return Verdict::InProgress };
    if status.observed_generation.is_none() || status.observed_generation != rollout.metadata.generation {
        return Verdict::InProgress;
    }
    match status.phase {
        Some(RolloutPhase::Healthy) => Verdict::Healthy,
        Some(RolloutPhase::Degraded) => Verdict::Degraded,
        Some(RolloutPhase::Progressing | RolloutPhase::Paused) | None => Verdict::InProgress,
    }
}

impl Verdict {
    pub fn is_final(self) -> bool {
        self != Verdict::InProgress
    }

    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Healthy => exit::SUCCESS,
            Verdict::Degraded => exit::DEGRADED,
            Verdict::InProgress => exit::IN_PROGRESS,
        }
    }

    pub fn to_exit(self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }

    /// The closing line of `status`, on stderr so a redirected view stays clean.
    pub fn describe(self, rollout: &Rollout) -> String {
        let name = format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any());
        match self {
            Verdict::Healthy => format!("rollout {name} is Healthy"),
            Verdict::Degraded => format!("rollout {name} is Degraded"),
            Verdict::InProgress => format!("rollout {name} is still in progress"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RolloutStatus;

    fn rollout(generation: i64, observed: Option<i64>, phase: Option<RolloutPhase>) -> Rollout {
        let mut rollout: Rollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop", "generation": generation},
            "spec": {"workload": {"kubernetes": {"selector": {}, "template": {}}}, "strategy": {"rolling": {}}}
        }))
        .unwrap();
        rollout.status = Some(RolloutStatus { observed_generation: observed, phase, ..Default::default() });
        rollout
    }

    #[test]
    fn healthy_and_degraded_count_only_for_the_current_generation() {
        assert_eq!(verdict(&rollout(2, Some(2), Some(RolloutPhase::Healthy))), Verdict::Healthy);
        assert_eq!(verdict(&rollout(2, Some(2), Some(RolloutPhase::Degraded))), Verdict::Degraded);
        assert_eq!(verdict(&rollout(3, Some(2), Some(RolloutPhase::Healthy))), Verdict::InProgress);
        assert_eq!(verdict(&rollout(3, Some(2), Some(RolloutPhase::Degraded))), Verdict::InProgress);
        assert_eq!(verdict(&rollout(1, None, Some(RolloutPhase::Healthy))), Verdict::InProgress);
    }

    #[test]
    fn paused_and_progressing_are_not_done() {
        assert_eq!(verdict(&rollout(2, Some(2), Some(RolloutPhase::Paused))), Verdict::InProgress);
        assert_eq!(verdict(&rollout(2, Some(2), Some(RolloutPhase::Progressing))), Verdict::InProgress);
        assert_eq!(verdict(&rollout(2, Some(2), None)), Verdict::InProgress);
        let mut no_status = rollout(1, None, None);
        no_status.status = None;
        assert_eq!(verdict(&no_status), Verdict::InProgress);
    }

    #[test]
    fn each_outcome_has_its_own_exit_code() {
        let codes =
            [Verdict::Healthy.exit_code(), Verdict::Degraded.exit_code(), Verdict::InProgress.exit_code(), exit::TIMED_OUT, exit::ERROR];
        assert_eq!(codes, [0, 3, 5, 4, 1]);
        assert!(Verdict::Healthy.is_final() && Verdict::Degraded.is_final() && !Verdict::InProgress.is_final());
    }
}
