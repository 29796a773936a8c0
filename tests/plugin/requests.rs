//! promote, abort and retry write requests into the Rollout's `sluice.dev/commands` annotation,
//! under the plugin's field manager, for the revision the rollout is on. No controller runs
//! here (the statuses are written by hand), so they do not wait for its answer (`--wait 0`).

use std::sync::Arc;

use kube::ResourceExt;
use serde_json::{Value, json};
use sluice::api::{COMMANDS_ANNOTATION, CommandRequest, Rollout, RolloutCommands};

use crate::support::namespace;
use crate::world::{World, canary, create, get, rollout, write_status};

fn rolling_out(abort: bool) -> Value {
    json!({
        "phase": if abort { "Degraded" } else { "Paused" }, "observedGeneration": 1, "currentStepIndex": 1,
        "stableRevision": "3f2a9c01bd", "updateRevision": "9b1c2d3e4f", "abort": abort,
        "canaryWeight": 50, "desiredReplicas": 4, "message": "at step 1"
    })
}

fn command(rollout: &Rollout, kind: &str) -> CommandRequest {
    assert!(rollout.annotations().contains_key(COMMANDS_ANNOTATION), "requests written");
    let commands = RolloutCommands::of(rollout.annotations()).expect("requests the controller can read");
    match kind {
        "promote" => commands.promote.clone(),
        "abort" => commands.abort.clone(),
        _ => commands.retry.clone(),
    }
    .unwrap_or_else(|| panic!("no {kind} request in {commands:?}"))
}

register_test!(60, promote_abort_retry_write_requests_for_the_update_revision);
pub async fn promote_abort_retry_write_requests_for_the_update_revision(w: Arc<World>) {
    let client = w.stack.kube().await;
    let ns = namespace(&client, "plugin-requests").await;
    create(&client, &ns, &rollout("web", "web:2", 4, canary())).await;
    write_status(&client, &ns, "web", rolling_out(false)).await;

    let promoted = w.plugin_in(&ns, &["promote", "web", "--full", "--wait", "0"]);
    promoted.assert_code(0, "promote --full");
    assert_eq!(promoted.stdout, format!("rollout {ns}/web: full promotion requested for revision 9b1c2d3e4f\n"));
    let full = command(&get(&client, &ns, "web").await, "promote");
    assert_eq!((full.revision.as_deref(), full.full), (Some("9b1c2d3e4f"), true));

    w.plugin_in(&ns, &["promote", "web", "--wait", "0"]).assert_code(0, "promote");
    let after = get(&client, &ns, "web").await;
    let step = command(&after, "promote");
    assert_eq!((step.revision.as_deref(), step.full), (Some("9b1c2d3e4f"), false), "a later promote is not full");
    assert_ne!(step.id, full.id, "each request has its own id");
    let managers: Vec<(Option<String>, Option<String>)> =
        after.metadata.managed_fields.unwrap_or_default().into_iter().map(|m| (m.manager, m.subresource)).collect();
    assert!(managers.contains(&(Some("kubectl-sluice".into()), None)), "written to the Rollout itself as kubectl-sluice: {managers:?}");

    let aborted = w.plugin_in(&ns, &["abort", "web", "--wait", "0"]);
    aborted.assert_code(0, "abort");
    assert_eq!(aborted.stdout, format!("rollout {ns}/web: abort requested for revision 9b1c2d3e4f\n"));
    assert_eq!(command(&get(&client, &ns, "web").await, "abort").revision.as_deref(), Some("9b1c2d3e4f"));

    write_status(&client, &ns, "web", rolling_out(true)).await;
    w.plugin_in(&ns, &["retry", "web", "--wait", "0"]).assert_code(0, "retry");
    let retried = get(&client, &ns, "web").await;
    assert_eq!(command(&retried, "retry").revision.as_deref(), Some("9b1c2d3e4f"));
    assert_eq!(command(&retried, "promote").id, step.id, "other requests stay as they were");
}

register_test!(70, requests_the_controller_would_ignore_are_refused);
pub async fn requests_the_controller_would_ignore_are_refused(w: Arc<World>) {
    let client = w.stack.kube().await;
    let ns = namespace(&client, "plugin-refused").await;
    create(&client, &ns, &rollout("web", "web:2", 4, canary())).await;

    let unseen = w.plugin_in(&ns, &["promote", "web"]);
    unseen.assert_code(1, "promote before the controller wrote a status");
    assert!(unseen.stderr.contains("has no status yet"), "{}", unseen.stderr);

    write_status(&client, &ns, "web", rolling_out(false)).await;
    let retry = w.plugin_in(&ns, &["retry", "web"]);
    retry.assert_code(1, "retry of a rollout that was not aborted");
    assert!(retry.stderr.contains("not aborted"), "{}", retry.stderr);

    write_status(&client, &ns, "web", json!({"phase": "Healthy", "updateRevision": "3f2a9c01bd", "abort": false})).await;
    let at_rest = w.plugin_in(&ns, &["abort", "web"]);
    at_rest.assert_code(1, "abort of a rollout at rest");
    assert!(at_rest.stderr.contains("nothing to abort"), "{}", at_rest.stderr);
    assert!(!get(&client, &ns, "web").await.annotations().contains_key(COMMANDS_ANNOTATION), "nothing was written");
}
