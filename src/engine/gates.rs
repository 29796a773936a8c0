//! Analysis gates: the analysis run for one purpose, created when missing, and what its verdict
//! lets through. Canary steps, background analysis and blue/green's pre- and post-promotion
//! analysis all go through the one gate, so a verdict reads the same wherever it is measured.

use super::context::Pass;
use super::{Action, AnalysisPurpose, AnalysisRunObservation, EventReason};
use crate::api::{AnalysisPhase, Metric, PauseReason, RolloutAnalysis, RolloutPhase};

/// What an analysis gate lets through.
pub(super) enum Gate {
    Open,
    Shut,
    Abort(String),
}

/// An analysis run's verdict as events, messages and abort reasons say it.
fn analysis_verdict(name: &str, phase: AnalysisPhase, message: Option<String>) -> String {
    match message {
        Some(message) => format!("analysis run {name} {phase}: {message}"),
        None => format!("analysis run {name} {phase}"),
    }
}

impl Pass<'_> {
    /// The gate of the analysis for `purpose`: Successful opens it, Failed or Error aborts,
    /// Inconclusive pauses for a person. Step and promotion gates hold while their run measures,
    /// and a promote passes them (their strategy skips the gate). Background analysis measures
    /// beside the rollout: a run still measuring holds nothing, and a promote on Inconclusive
    /// starts a fresh run (a new attempt) instead of ignoring the data.
    pub fn analysis_gate(&mut self, purpose: AnalysisPurpose, analysis: &RolloutAnalysis, keep_runs: &mut Vec<String>) -> Gate {
        self.gate(purpose, analysis, &[], keep_runs)
    }

    /// The same gate for a run of templates and `metrics` of its own (a hook's).
    pub(super) fn gate(
        &mut self,
        purpose: AnalysisPurpose,
        analysis: &RolloutAnalysis,
        metrics: &[Metric],
        keep_runs: &mut Vec<String>,
    ) -> Gate {
        let (run, phase, message) = self.analysis(purpose, analysis, metrics);
        keep_runs.push(run.clone());
        let verdict = analysis_verdict(&run, phase, message);
        let background = purpose == AnalysisPurpose::Background;
        match phase {
            AnalysisPhase::Successful => Gate::Open,
            AnalysisPhase::Failed | AnalysisPhase::Error => Gate::Abort(verdict),
            AnalysisPhase::Inconclusive if background && self.promote_requested.is_some() => {
                self.promote_requested = None;
                self.status.attempt = self.status.attempt.saturating_add(1);
                self.unpause(PauseReason::InconclusiveAnalysis);
                self.event(EventReason::Resumed, format!("{verdict}; promoted by a person, measuring again"));
                self.promote_applied(format!("revision {}: analysis measures again after its Inconclusive verdict", self.update));
                let (fresh, _, _) = self.analysis(purpose, analysis, metrics);
                keep_runs.push(fresh);
                Gate::Shut
            }
            AnalysisPhase::Inconclusive => {
                if self.pause_started(PauseReason::InconclusiveAnalysis) == self.now() {
                    self.event(EventReason::AnalysisInconclusive, verdict.clone());
                }
                let promote_does = if background { "measure again" } else { "go on" };
                let name = self.input.name;
                self.outcome(
                    RolloutPhase::Paused,
                    format!(
                        "{verdict}; run `kubectl sluice promote {name}` to {promote_does} or `kubectl sluice abort {name}` to roll back"
                    ),
                );
                Gate::Shut
            }
            AnalysisPhase::Pending | AnalysisPhase::Running if background => Gate::Open,
            AnalysisPhase::Pending | AnalysisPhase::Running => {
                let label = self.measuring_label(purpose);
                self.outcome(RolloutPhase::Progressing, format!("{label} analysis run {run} is {phase}"));
                Gate::Shut
            }
        }
    }

    /// How a gate still measuring is named in the message: `step 2:`, `pre-promotion` or
    /// `hook smoke (PostScaleUp):`.
    fn measuring_label(&self, purpose: AnalysisPurpose) -> String {
        match purpose {
            AnalysisPurpose::Step(index) => format!("step {index}:"),
            AnalysisPurpose::Hook(index) => match self.input.spec.hooks.get(index) {
                Some(hook) => format!("hook {} ({}):", hook.name, hook.stage),
                None => purpose.label(),
            },
            other => other.label(),
        }
    }

    pub fn run_name(&self, purpose: AnalysisPurpose) -> String {
        format!("{}-{}-{}-{}", self.input.name, self.update, self.status.attempt, purpose.label())
    }

    fn run(&self, name: &str) -> Option<&AnalysisRunObservation> {
        self.input.observed.analysis_runs.iter().find(|r| r.name == name)
    }

    /// The phase of the analysis run for `purpose`, creating the run when it does not exist yet.
    fn analysis(
        &mut self,
        purpose: AnalysisPurpose,
        analysis: &RolloutAnalysis,
        metrics: &[Metric],
    ) -> (String, AnalysisPhase, Option<String>) {
        let name = self.run_name(purpose);
        match self.run(&name) {
            Some(run) => (name, run.phase, run.message.clone()),
            None => {
                self.actions.push(Action::CreateAnalysisRun {
                    name: name.clone(),
                    revision: self.update.clone(),
                    purpose,
                    analysis: analysis.clone(),
                    metrics: metrics.to_vec(),
                    builtins: self.builtin_args_for(purpose),
                });
                self.event(EventReason::AnalysisStarted, format!("analysis run {name} started"));
                (name, AnalysisPhase::Pending, None)
            }
        }
    }

    /// Stops every unfinished analysis run except those named.
    pub fn terminate_runs_except(&mut self, keep: &[String]) {
        let stale: Vec<String> = self
            .input
            .observed
            .analysis_runs
            .iter()
            .filter(|r| !r.phase.is_completed() && !keep.contains(&r.name))
            .map(|r| r.name.clone())
            .collect();
        for name in stale {
            self.actions.push(Action::TerminateAnalysisRun { name });
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::fixture::{Fixture, STABLE, UPDATE};

    fn canary() -> serde_json::Value {
        json!({"canary": {"steps": [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "success-rate"}]}}]}})
    }

    fn analysis() -> RolloutAnalysis {
        serde_json::from_value(json!({"templates": [{"templateName": "success-rate"}]})).expect("an analysis")
    }

    fn run_of(purpose: &str) -> String {
        format!("web-{UPDATE}-0-{purpose}")
    }

    fn reasons(pass: &Pass<'_>) -> Vec<EventReason> {
        pass.events.iter().map(|e| e.reason).collect()
    }

    #[test]
    fn a_missing_analysis_run_is_created_and_holds_its_step_until_it_has_a_verdict() {
        let fixture = Fixture::new(2, canary()).running(STABLE, 2, 2);
        let mut pass = fixture.pass();
        let mut keep_runs = Vec::new();
        let gate = pass.analysis_gate(AnalysisPurpose::Step(1), &analysis(), &mut keep_runs);
        assert!(matches!(gate, Gate::Shut));
        assert_eq!(keep_runs, [run_of("step-1")]);
        assert!(matches!(&pass.actions[..], [Action::CreateAnalysisRun { name, .. }] if *name == run_of("step-1")));
        assert_eq!(pass.message, format!("step 1: analysis run {} is Pending", run_of("step-1")));
    }

    #[test]
    fn background_analysis_still_measuring_holds_nothing() {
        let fixture = Fixture::new(2, canary()).run(&run_of("background"), AnalysisPhase::Running);
        let mut pass = fixture.pass();
        let gate = pass.analysis_gate(AnalysisPurpose::Background, &analysis(), &mut Vec::new());
        assert!(matches!(gate, Gate::Open));
        assert!(pass.actions.is_empty() && pass.message.is_empty());
    }

    #[test]
    fn a_failed_or_errored_run_aborts_with_its_verdict() {
        for phase in [AnalysisPhase::Failed, AnalysisPhase::Error] {
            let fixture = Fixture::new(2, canary()).run(&run_of("pre-promotion"), phase);
            let mut pass = fixture.pass();
            let gate = pass.analysis_gate(AnalysisPurpose::PrePromotion, &analysis(), &mut Vec::new());
            let expected = format!("analysis run {} {phase}", run_of("pre-promotion"));
            assert!(matches!(gate, Gate::Abort(reason) if reason == expected), "{phase}");
        }
    }

    #[test]
    fn an_inconclusive_run_pauses_for_a_person_and_says_so_once() {
        let mut fixture = Fixture::new(2, canary()).run(&run_of("step-1"), AnalysisPhase::Inconclusive);
        let mut pass = fixture.pass();
        let gate = pass.analysis_gate(AnalysisPurpose::Step(1), &analysis(), &mut Vec::new());
        assert!(matches!(gate, Gate::Shut));
        assert_eq!(pass.phase, RolloutPhase::Paused);
        assert_eq!(
            pass.message,
            format!(
                "analysis run {} Inconclusive; run `kubectl sluice promote web` to go on or `kubectl sluice abort web` to roll back",
                run_of("step-1")
            )
        );
        assert_eq!(reasons(&pass), [EventReason::Paused, EventReason::AnalysisInconclusive]);
        fixture.status.pause_conditions = pass.status.pause_conditions.clone();
        fixture.now = crate::engine::context::later(fixture.now, std::time::Duration::from_secs(10));
        let mut pass = fixture.pass();
        pass.analysis_gate(AnalysisPurpose::Step(1), &analysis(), &mut Vec::new());
        assert!(pass.events.is_empty(), "still paused: nothing new to say");
    }

    #[test]
    fn a_promote_on_inconclusive_background_analysis_measures_again_in_a_new_attempt() {
        let fixture = Fixture::new(2, canary()).run(&run_of("background"), AnalysisPhase::Inconclusive);
        let mut pass = fixture.pass();
        pass.promote_requested = Some(false);
        let mut keep_runs = Vec::new();
        let gate = pass.analysis_gate(AnalysisPurpose::Background, &analysis(), &mut keep_runs);
        assert!(matches!(gate, Gate::Shut));
        assert_eq!(pass.promote_requested, None, "the promote is spent on measuring again");
        assert_eq!(pass.status.attempt, 1);
        let fresh = format!("web-{UPDATE}-1-background");
        assert_eq!(keep_runs, [run_of("background"), fresh.clone()]);
        assert!(matches!(&pass.actions[..], [Action::CreateAnalysisRun { name, .. }] if *name == fresh));
        assert_eq!(reasons(&pass), [EventReason::Resumed, EventReason::AnalysisStarted]);
    }
}
