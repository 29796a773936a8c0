//! promote, abort, retry: a request written into `status.commands`, which the controller acts on
//! once per id and only for the revision it names.

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::cluster::{Cluster, FIELD_MANAGER};
use super::describe::qualified_name;
use super::error::PluginError;
use crate::api::Rollout;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Promote { full: bool },
    Abort,
    Retry,
}

impl Request {
    /// The field under `status.commands`.
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

/// The JSON merge patch of the status subresource. Every field is written, `full: false`
/// included, since a merge patch would otherwise keep the `full` of an earlier request.
pub fn patch(request: Request, id: &str, revision: &str) -> Value {
    let full = matches!(request, Request::Promote { full: true });
    json!({"status": {"commands": {request.field(): {"id": id, "revision": revision, "full": full}}}})
}

pub async fn send(cluster: &Cluster, name: &str, request: Request) -> Result<String, PluginError> {
    let rollout = cluster.rollout(name).await?;
    let revision = target_revision(request, &rollout)?;
    let id = request_id(Timestamp::now(), random_u32());
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..Default::default() };
    cluster
        .rollouts()
        .patch_status(name, &params, &Patch::Merge(&patch(request, &id, &revision)))
        .await
        .map_err(|e| cluster.explain(e, name))?;
    Ok(format!("rollout {}: {} requested for revision {revision}", qualified_name(&rollout), request.what()))
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
    fn the_patch_writes_every_field_of_the_request() {
        assert_eq!(
            patch(Request::Promote { full: false }, "id-1", "bbbbbbbbbb"),
            json!({"status": {"commands": {"promote": {"id": "id-1", "revision": "bbbbbbbbbb", "full": false}}}})
        );
        assert_eq!(patch(Request::Promote { full: true }, "id-2", "r")["status"]["commands"]["promote"]["full"], json!(true));
        assert_eq!(patch(Request::Retry, "id-3", "r")["status"]["commands"]["retry"]["id"], json!("id-3"));
    }

    #[test]
    fn ids_carry_the_time_and_differ_between_requests() {
        let now: Timestamp = "2026-03-01T12:00:00.123Z".parse().unwrap();
        assert_eq!(request_id(now, 0x3f2a9c01), "20260301T120000.123Z-3f2a9c01");
        assert_ne!(random_u32(), random_u32());
    }
}
