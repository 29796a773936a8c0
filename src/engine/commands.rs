//! People's requests (promote, abort, retry): which ones a pass acts on, and the answer each
//! gets in `status.commandResults`, so `kubectl sluice` can say what became of it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::EventReason;
use super::conditions;
use super::context::Pass;
use crate::api::{CommandOutcome, CommandRequest, CommandResult};

/// The most of a request's id and revision an answer repeats. Whoever can annotate the Rollout
/// writes both; the plugin's ids are about 30 characters and revisions 10, so only a hostile
/// request is cut, and the status stays small.
const MAX_ECHOED: usize = 64;

impl Pass<'_> {
    /// Reads the requests not acted on yet; answers at once those that cannot apply.
    pub(super) fn take_commands(&mut self) {
        let requested = self.input.commands.clone();
        let mut handled = self.status.handled_commands.clone().unwrap_or_default();
        let is_new =
            |request: &Option<CommandRequest>, handled: &Option<String>| request.clone().filter(|r| handled.as_ref() != Some(&r.id));
        if let Some(retry) = is_new(&requested.retry, &handled.retry) {
            handled.retry = Some(retry.id.clone());
            let answer = match self.refusal(&retry) {
                Some(refused) => refused,
                None if !self.status.abort => {
                    (CommandOutcome::Ignored, format!("revision {} is not aborted: nothing to retry", self.update))
                }
                None => {
                    self.restart_attempt();
                    self.event(EventReason::Retried, format!("retrying revision {} from the first step", self.update));
                    (CommandOutcome::Applied, format!("revision {} starts again from the first step", self.update))
                }
            };
            self.answer(|results| &mut results.retry, &retry.id, answer);
        }
        if let Some(abort) = is_new(&requested.abort, &handled.abort) {
            handled.abort = Some(abort.id.clone());
            let answer = match self.refusal(&abort) {
                Some(refused) => refused,
                None if self.status.abort => (CommandOutcome::Ignored, format!("revision {} is already aborted", self.update)),
                None => {
                    self.abort_requested = true;
                    (CommandOutcome::Applied, format!("revision {} is aborted: traffic goes back to revision {}", self.update, self.stable))
                }
            };
            self.answer(|results| &mut results.abort, &abort.id, answer);
        }
        if let Some(promote) = is_new(&requested.promote, &handled.promote) {
            handled.promote = Some(promote.id.clone());
            let refused = match self.refusal(&promote) {
                Some(refused) => Some(refused),
                None if self.status.abort => {
                    Some((CommandOutcome::Ignored, format!("revision {} was aborted: `kubectl sluice retry` tries it again", self.update)))
                }
                None => None,
            };
            match refused {
                Some(answer) => self.answer(|results| &mut results.promote, &promote.id, answer),
                None => {
                    self.promote_requested = Some(promote.full);
                    self.promote_unanswered = Some(promote.id.clone());
                }
            }
        }
        self.status.handled_commands = Some(handled);
    }

    /// Why a request cannot apply to this pass's revisions at all, if it cannot.
    fn refusal(&self, request: &CommandRequest) -> Option<(CommandOutcome, String)> {
        if let Some(typed_for) = request.revision.as_ref().filter(|r| **r != self.update) {
            return Some((
                CommandOutcome::Superseded,
                format!(
                    "it was for revision {}, which revision {} has replaced",
                    crate::text::truncate(typed_for, MAX_ECHOED),
                    self.update
                ),
            ));
        }
        if !self.at_rest() {
            return None;
        }
        let since = self.status.conditions.iter().find(|c| c.type_ == conditions::COMPLETED && c.status == "True");
        Some((
            CommandOutcome::Ignored,
            match since {
                Some(completed) => format!(
                    "revision {} was already promoted at {}",
                    self.update,
                    completed.last_transition_time.0.strftime("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => format!("revision {} is already stable", self.update),
            },
        ))
    }

    /// A strategy acted on the promote request.
    pub(super) fn promote_applied(&mut self, message: impl Into<String>) {
        if let Some(id) = self.promote_unanswered.take() {
            self.answer(|results| &mut results.promote, &id, (CommandOutcome::Applied, message.into()));
        }
    }

    /// At the end of the pass: a promote no strategy acted on was ignored, and the status
    /// message says where the rollout stands instead.
    pub(super) fn answer_unused_promote(&mut self) {
        if let Some(id) = self.promote_unanswered.take() {
            let message = format!("revision {} had nothing waiting for a promote: {}", self.update, self.message);
            self.answer(|results| &mut results.promote, &id, (CommandOutcome::Ignored, message));
        }
    }

    fn answer(
        &mut self,
        kind: impl FnOnce(&mut crate::api::CommandResults) -> &mut Option<CommandResult>,
        id: &str,
        (outcome, message): (CommandOutcome, String),
    ) {
        let at = Time(self.now());
        let results = self.status.command_results.get_or_insert_with(Default::default);
        *kind(results) = Some(CommandResult { id: crate::text::truncate(id, MAX_ECHOED), outcome, message, at });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::fixture::Fixture;
    use crate::engine::revision;

    fn canary() -> serde_json::Value {
        json!({"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}})
    }

    fn request(id: &str, revision: &str) -> Option<CommandRequest> {
        Some(CommandRequest { id: id.into(), revision: Some(revision.into()), full: false })
    }

    #[test]
    fn a_command_is_acted_on_once_and_only_for_the_revision_it_names() {
        let mut fixture = Fixture::new(2, canary());
        let update = revision::of(&fixture.spec.workload);
        fixture.commands.promote = request("1", "another-rev");
        let mut pass = fixture.unset_pass();
        pass.begin();
        assert_eq!(pass.promote_requested, None, "typed for another revision");
        fixture.commands.promote = request("2", &update);
        let mut pass = fixture.unset_pass();
        pass.begin();
        assert_eq!(pass.promote_requested, Some(false));
        fixture.status = pass.status.clone();
        let mut pass = fixture.unset_pass();
        pass.begin();
        assert_eq!(pass.promote_requested, None, "an id already handled");
    }

    fn results(fixture: &Fixture) -> crate::api::CommandResults {
        crate::engine::step(fixture.input()).status.command_results.unwrap_or_default()
    }

    #[test]
    fn a_promote_that_moves_the_canary_is_answered_applied() {
        let mut fixture = Fixture::new(2, canary());
        let update = revision::of(&fixture.spec.workload);
        fixture.status.update_revision = Some(update.clone());
        fixture.status.current_step_index = Some(1);
        fixture.commands.promote = request("p-1", &update);
        let promote = results(&fixture).promote.expect("answered");
        assert_eq!((promote.id.as_str(), promote.outcome), ("p-1", CommandOutcome::Applied));
        assert!(promote.message.contains("step 1"), "{}", promote.message);
    }

    #[test]
    fn a_request_for_a_replaced_revision_is_answered_superseded() {
        let mut fixture = Fixture::new(2, canary());
        let update = revision::of(&fixture.spec.workload);
        fixture.commands.abort = request("a-1", "0123456789");
        let abort = results(&fixture).abort.expect("answered");
        assert_eq!(abort.outcome, CommandOutcome::Superseded);
        assert_eq!(abort.message, format!("it was for revision 0123456789, which revision {update} has replaced"));
        assert!(!crate::engine::step(fixture.input()).status.abort, "nothing was aborted");
    }

    #[test]
    fn an_abort_after_the_promotion_is_answered_ignored_with_the_time_it_was_promoted() {
        let mut fixture = Fixture::new(2, canary());
        let update = revision::of(&fixture.spec.workload);
        fixture.status.stable_revision = Some(update.clone());
        fixture.status.update_revision = Some(update.clone());
        let promoted_at: jiff::Timestamp = "2026-03-01T21:04:10Z".parse().unwrap();
        conditions::set(&mut fixture.status.conditions, conditions::COMPLETED, true, "RolloutCompleted", "", promoted_at);
        fixture.commands.abort = request("a-2", &update);
        let plan = crate::engine::step(fixture.input());
        let abort = plan.status.command_results.unwrap().abort.expect("answered");
        assert_eq!(abort.outcome, CommandOutcome::Ignored);
        assert_eq!(abort.message, format!("revision {update} was already promoted at 2026-03-01 21:04:10 UTC"));
        assert!(!plan.status.abort, "nothing was aborted");
    }

    #[test]
    fn a_hostile_request_of_huge_strings_gets_a_short_answer() {
        let mut fixture = Fixture::new(2, canary());
        let huge = "x".repeat(200_000);
        fixture.commands.abort = Some(CommandRequest { id: huge.clone(), revision: Some(huge), full: false });
        let abort = results(&fixture).abort.expect("answered");
        assert_eq!(abort.outcome, CommandOutcome::Superseded);
        assert!(abort.id.len() < 200 && abort.message.len() < 300, "{} / {}", abort.id.len(), abort.message.len());
    }

    #[test]
    fn retry_without_an_abort_and_promote_of_an_aborted_revision_are_answered_ignored() {
        let mut fixture = Fixture::new(2, canary());
        let update = revision::of(&fixture.spec.workload);
        fixture.commands.retry = request("r-1", &update);
        assert_eq!(results(&fixture).retry.unwrap().outcome, CommandOutcome::Ignored);
        fixture.status.abort = true;
        fixture.commands.retry = None;
        fixture.commands.promote = request("p-2", &update);
        let promote = results(&fixture).promote.unwrap();
        assert_eq!(promote.outcome, CommandOutcome::Ignored);
        assert!(promote.message.contains("was aborted"), "{}", promote.message);
        fixture.commands.retry = request("r-2", &update);
        fixture.commands.promote = None;
        assert_eq!(results(&fixture).retry.unwrap().outcome, CommandOutcome::Applied);
    }

    #[test]
    fn a_promote_no_strategy_acts_on_is_answered_ignored_with_where_the_rollout_stands() {
        let mut fixture = Fixture::new(2, json!({"rolling": {}}));
        let update = revision::of(&fixture.spec.workload);
        fixture.commands.promote = request("p-3", &update);
        let promote = results(&fixture).promote.unwrap();
        assert_eq!(promote.outcome, CommandOutcome::Ignored, "a rolling update has no step to skip");
        assert!(promote.message.starts_with(&format!("revision {update} had nothing waiting for a promote: ")), "{}", promote.message);
    }
}
