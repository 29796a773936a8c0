//! promote, abort, retry: a request written into the Rollout's `sluice.dev/commands` annotation,
//! which the controller acts on once per id and only for the revision it names. An annotation, so
//! a person needs `patch rollouts` and never `rollouts/status`, the controller's own.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::cluster::{Cluster, FIELD_MANAGER};
use super::describe::qualified_name;
use super::error::PluginError;
use super::spec_edit::ATTEMPTS;
use super::verdict::exit;
use crate::api::{COMMANDS_ANNOTATION, CommandOutcome, CommandRequest, CommandResult, Rollout, RolloutCommands};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Promote { full: bool },
    Abort,
    Retry,
}

impl Request {
    /// The field in the `sluice.dev/commands` annotation.
    pub fn field(self) -> &'static str {
        match self {
            Request::Promote { .. } => "promote",
            Request::Abort => "abort",
            Request::Retry => "retry",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Request::Promote { full: false } => "promote",
            Request::Promote { full: true } => "full promotion",
            Request::Abort => "abort",
            Request::Retry => "retry",
        }
    }
}

/// The revision the request is for, or why the controller would ignore it.
pub fn target_revision(request: Request, rollout: &Rollout) -> Result<String, PluginError> {
    let name = qualified_name(rollout);
    let status = rollout.status.clone().unwrap_or_default();
    let Some(update) = status.update_revision.clone() else {
        return Err(PluginError::NoStatus {
            namespace: rollout.metadata.namespace.clone().unwrap_or_default(),
            name: rollout.metadata.name.clone().unwrap_or_default(),
        });
    };
    let at_rest = status.stable_revision.as_ref() == Some(&update);
    let seen = status.observed_generation.is_some() && status.observed_generation == rollout.metadata.generation;
    match request {
        _ if at_rest && !seen => Err(PluginError::refused(
            &name,
            "the controller has not seen the latest spec yet; run the command again once `kubectl sluice status` shows the new revision",
        )),
        Request::Promote { .. } | Request::Abort if at_rest => Err(PluginError::refused(
            &name,
            format!("revision {update} is stable and nothing is rolling out: nothing to {}", request.field()),
        )),
        Request::Promote { .. } if status.abort => Err(PluginError::refused(
            &name,
            format!(
                "revision {update} was aborted: `kubectl sluice retry` tries it again, `kubectl sluice undo` returns to the stable version"
            ),
        )),
        Request::Abort if status.abort => Err(PluginError::refused(&name, format!("revision {update} is already aborted"))),
        Request::Retry if !status.abort => Err(PluginError::refused(&name, format!("revision {update} is not aborted: nothing to retry"))),
        _ => Ok(update),
    }
}

/// Unique per request: the time, for a person reading it, and 32 random bits, so two people
/// promoting in the same millisecond still make two requests.
pub fn request_id(now: Timestamp, random: u32) -> String {
    format!("{}-{random:08x}", now.strftime("%Y%m%dT%H%M%S%.3fZ"))
}

fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    // std seeds each RandomState from the operating system's randomness.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_i128(Timestamp::now().as_nanosecond());
    hasher.finish() as u32
}

/// The requests with this one in place of any earlier request of its kind; the others are kept,
/// since the controller may not have acted on them yet. Requests that cannot be read are
/// replaced: what the controller refuses to read, it never acted on.
pub fn with_request(rollout: &Rollout, request: Request, id: &str, revision: &str) -> RolloutCommands {
    let mut commands = RolloutCommands::of(rollout.annotations()).unwrap_or_default();
    let entry = Some(CommandRequest {
        id: id.to_string(),
        revision: Some(revision.to_string()),
        full: matches!(request, Request::Promote { full: true }),
    });
    match request {
        Request::Promote { .. } => commands.promote = entry,
        Request::Abort => commands.abort = entry,
        Request::Retry => commands.retry = entry,
    }
    commands
}

/// The JSON merge patch of the Rollout: the annotation, guarded by the resourceVersion that was
/// read so a request written meanwhile by someone else is never lost.
pub fn patch(commands: &RolloutCommands, resource_version: Option<&str>) -> Value {
    let text = serde_json::to_string(commands).expect("requests serialize");
    json!({"metadata": {"resourceVersion": resource_version, "annotations": {COMMANDS_ANNOTATION: text}}})
}

/// Writes the request, then waits up to `wait` for the controller's answer and prints it: exit 0
/// when applied, 6 when ignored or superseded, 5 when no answer came in time.
pub async fn request(cluster: &Cluster, name: &str, request: Request, wait: Duration) -> Result<ExitCode, PluginError> {
    let (line, id) = send(cluster, name, request).await?;
    println!("{line}");
    if wait.is_zero() {
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = Instant::now() + wait;
    loop {
        let rollout = cluster.rollout(name).await?;
        if let Some(result) = answer(&rollout, request, &id) {
            println!("{}", answered(request, &result));
            let code = if result.outcome == CommandOutcome::Applied { exit::SUCCESS } else { exit::NOT_APPLIED };
            return Ok(ExitCode::from(code));
        }
        if Instant::now() >= deadline {
            eprintln!(
                "no answer from the controller within {}: the request stays and is acted on when the controller reads it (is it running?)",
                humantime::format_duration(wait)
            );
            return Ok(ExitCode::from(exit::IN_PROGRESS));
        }
        tokio::time::sleep(ANSWER_POLL).await;
    }
}

/// How often the Rollout is read while waiting for the answer.
const ANSWER_POLL: Duration = Duration::from_millis(250);

/// The controller's answer to the request with this id, once it has given one.
pub fn answer(rollout: &Rollout, request: Request, id: &str) -> Option<CommandResult> {
    let results = rollout.status.as_ref()?.command_results.clone()?;
    let result = match request {
        Request::Promote { .. } => results.promote,
        Request::Abort => results.abort,
        Request::Retry => results.retry,
    }?;
    (result.id == id).then_some(result)
}

/// "abort ignored: revision 3589ec9606 was already promoted at 2026-03-01 21:04:10 UTC"
pub fn answered(request: Request, result: &CommandResult) -> String {
    format!("{} {}: {}", request.what(), result.outcome, result.message)
}

async fn send(cluster: &Cluster, name: &str, request: Request) -> Result<(String, String), PluginError> {
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..Default::default() };
    for _ in 0..ATTEMPTS {
        let rollout = cluster.rollout(name).await?;
        let revision = target_revision(request, &rollout)?;
        let id = request_id(Timestamp::now(), random_u32());
        let commands = with_request(&rollout, request, &id, &revision);
        let patch = patch(&commands, rollout.metadata.resource_version.as_deref());
        match cluster.rollouts().patch(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                return Ok((format!("rollout {}: {} requested for revision {revision}", qualified_name(&rollout), request.what()), id));
            }
            Err(kube::Error::Api(status)) if status.is_conflict() => continue,
            Err(other) => return Err(cluster.explain(other, name)),
        }
    }
    Err(PluginError::Conflict { rollout: format!("{}/{name}", cluster.namespace), attempts: ATTEMPTS })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RolloutStatus;

    fn rollout(status: RolloutStatus) -> Rollout {
        let mut rollout: Rollout = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop", "generation": 2},
            "spec": {"workload": {"kubernetes": {"selector": {}, "template": {}}}, "strategy": {"canary": {}}}
        }))
        .unwrap();
        rollout.status = Some(status);
        rollout
    }

    fn rolling_out(abort: bool) -> RolloutStatus {
        RolloutStatus {
            observed_generation: Some(2),
            stable_revision: Some("aaaaaaaaaa".into()),
            update_revision: Some("bbbbbbbbbb".into()),
            abort,
            ..Default::default()
        }
    }

    #[test]
    fn a_request_names_the_update_revision() {
        assert_eq!(target_revision(Request::Promote { full: false }, &rollout(rolling_out(false))).unwrap(), "bbbbbbbbbb");
        assert_eq!(target_revision(Request::Abort, &rollout(rolling_out(false))).unwrap(), "bbbbbbbbbb");
        assert_eq!(target_revision(Request::Retry, &rollout(rolling_out(true))).unwrap(), "bbbbbbbbbb");
    }

    #[test]
    fn requests_the_controller_would_ignore_are_refused() {
        let refusal = |request, status| target_revision(request, &rollout(status)).unwrap_err().to_string();
        assert!(refusal(Request::Retry, rolling_out(false)).contains("not aborted"));
        assert!(refusal(Request::Promote { full: true }, rolling_out(true)).contains("was aborted"));
        assert!(refusal(Request::Abort, rolling_out(true)).contains("already aborted"));
        let at_rest = RolloutStatus { update_revision: Some("aaaaaaaaaa".into()), ..rolling_out(false) };
        assert!(refusal(Request::Promote { full: false }, at_rest.clone()).contains("nothing to promote"));
        let unseen = RolloutStatus { observed_generation: Some(1), ..at_rest };
        assert!(refusal(Request::Promote { full: false }, unseen).contains("not seen the latest spec"));
        assert!(refusal(Request::Abort, RolloutStatus::default()).contains("has no status yet"));
    }

    #[test]
    fn a_request_replaces_its_kind_and_keeps_the_others() {
        let mut rollout = rollout(rolling_out(false));
        let abort = r#"{"abort":{"id":"a-1","revision":"bbbbbbbbbb"},"promote":{"id":"p-0","full":true}}"#;
        rollout.metadata.annotations = Some([(COMMANDS_ANNOTATION.to_string(), abort.to_string())].into());
        let commands = with_request(&rollout, Request::Promote { full: false }, "p-1", "bbbbbbbbbb");
        assert_eq!(commands.abort.as_ref().map(|a| a.id.as_str()), Some("a-1"));
        assert_eq!(commands.promote, Some(CommandRequest { id: "p-1".into(), revision: Some("bbbbbbbbbb".into()), full: false }));
        let written = patch(&commands, Some("42"));
        assert_eq!(written["metadata"]["resourceVersion"], json!("42"));
        let text = written["metadata"]["annotations"][COMMANDS_ANNOTATION].as_str().unwrap();
        let annotations = [(COMMANDS_ANNOTATION.to_string(), text.to_string())].into();
        assert_eq!(RolloutCommands::of(&annotations), Ok(commands), "the controller reads back what was written");
        rollout.metadata.annotations = Some([(COMMANDS_ANNOTATION.to_string(), "not json".to_string())].into());
        let fresh = with_request(&rollout, Request::Retry, "r-1", "bbbbbbbbbb");
        assert_eq!((fresh.retry.map(|r| r.id), fresh.promote), (Some("r-1".to_string()), None));
    }

    #[test]
    fn the_answer_is_the_one_for_this_request_id_and_says_what_became_of_it() {
        let result = |id: &str, outcome| CommandResult {
            id: id.into(),
            outcome,
            message: "revision bbbbbbbbbb was already promoted at 2026-03-01 21:04:10 UTC".into(),
            at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-03-01T21:04:11Z".parse().unwrap()),
        };
        let mut status = rolling_out(false);
        status.command_results =
            Some(crate::api::CommandResults { abort: Some(result("a-1", CommandOutcome::Ignored)), ..Default::default() });
        let rollout = rollout(status);
        assert_eq!(answer(&rollout, Request::Abort, "a-2"), None, "an answer to an earlier request");
        assert_eq!(answer(&rollout, Request::Retry, "a-1"), None, "an answer of another kind");
        let ignored = answer(&rollout, Request::Abort, "a-1").expect("answered");
        assert_eq!(
            answered(Request::Abort, &ignored),
            "abort ignored: revision bbbbbbbbbb was already promoted at 2026-03-01 21:04:10 UTC"
        );
    }

    #[test]
    fn ids_carry_the_time_and_differ_between_requests() {
        let now: Timestamp = "2026-03-01T12:00:00.123Z".parse().unwrap();
        assert_eq!(request_id(now, 0x3f2a9c01), "20260301T120000.123Z-3f2a9c01");
        assert_ne!(random_u32(), random_u32());
    }
}
