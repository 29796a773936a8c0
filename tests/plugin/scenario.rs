//! With the real controller: a canary taken through every step by the plugin alone, the way a
//! person or a pipeline would, and the live view drawn in a real terminal (tmux).

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use serde_json::json;
use sluice::api::{COMMANDS_ANNOTATION, CommandOutcome, Rollout, RolloutPhase, RolloutStatus};

use crate::support::{namespace, wait_for};
use crate::world::{PLUGIN, World, canary, create, get, rollout};

const DEADLINE: Duration = Duration::from_secs(90);

/// Stops the namespace's controller, also when an assertion fails.
struct ControllerGuard<'a> {
    world: &'a World,
    namespace: String,
}

impl Drop for ControllerGuard<'_> {
    fn drop(&mut self) {
        self.world.stop_controller(&self.namespace);
    }
}

fn status(rollout: &Rollout) -> RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

fn seen(rollout: &Rollout) -> bool {
    status(rollout).observed_generation == rollout.metadata.generation
}

async fn wait(api: &Api<Rollout>, what: &str, check: impl Fn(&Rollout) -> bool) -> Rollout {
    wait_for(what, DEADLINE, || async {
        let rollout = api.get("web").await.ok()?;
        (seen(&rollout) && check(&rollout)).then_some(rollout)
    })
    .await
}

fn revision_of_spec(rollout: &Rollout) -> String {
    sluice::engine::revision::of(&rollout.spec.workload)
}

register_test!(110, a_canary_driven_through_the_plugin);
pub async fn a_canary_driven_through_the_plugin(w: Arc<World>) {
    let client = w.stack.kube().await;
    let ns = namespace(&client, "plugin-canary").await;
    w.start_controller(&ns);
    let _controller = ControllerGuard { world: &w, namespace: ns.clone() };
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns);

    // The first revision goes straight to stable; `status --watch` waits for it and exits 0.
    create(&client, &ns, &rollout("web", "web:1", 2, canary())).await;
    let first = w.spawn_plugin(&ns, &["status", "web", "--watch", "--timeout", "90s"], "first-healthy.out");
    let run = first.finish(DEADLINE + Duration::from_secs(10), "status --watch of the first revision").await;
    run.assert_code(0, "status --watch until Healthy");
    assert!(run.stdout.contains("Phase        Healthy\n"), "the last frame shows Healthy:\n{}", run.stdout);
    let healthy = wait(&api, "the first revision Healthy", |r| status(r).phase == Some(RolloutPhase::Healthy)).await;
    let first_revision = status(&healthy).stable_revision.expect("a stable revision");
    assert_eq!(first_revision, revision_of_spec(&healthy));

    // A new image: the canary stops at the manual pause.
    w.plugin_in(&ns, &["set", "image", "web", "web=web:2"]).assert_code(0, "set image");
    let paused = wait(&api, "the canary paused at step 1", |r| {
        status(r).phase == Some(RolloutPhase::Paused) && status(r).current_step_index == Some(1)
    })
    .await;
    let second_revision = status(&paused).update_revision.expect("an update revision");
    assert_eq!(second_revision, revision_of_spec(&paused));
    w.plugin_in(&ns, &["status", "web"]).assert_code(5, "status of a paused canary");

    live_view_in_a_terminal(&w, &ns, &first_revision, &second_revision).await;

    // promote through the plugin advances the paused canary; a waiting `status --watch` exits 0.
    let watching = w.spawn_plugin(&ns, &["status", "web", "--watch", "--timeout", "90s"], "promoted.out");
    watching.wait_for_output("[>] 1  pause until promoted", Duration::from_secs(30)).await;
    let promoted = w.plugin_in(&ns, &["promote", "web"]);
    promoted.assert_code(0, "promote");
    assert_eq!(
        promoted.stdout,
        format!(
            "rollout {ns}/web: promote requested for revision {second_revision}\npromote applied: revision {second_revision}: step 1 (pause until promoted) is skipped\n"
        )
    );
    let run = watching.finish(DEADLINE + Duration::from_secs(10), "status --watch through the promotion").await;
    run.assert_code(0, "status --watch until the promoted canary is Healthy");
    assert!(run.stdout.contains("\nPhase        Healthy\n"), "the last frame shows Healthy:\n{}", run.stdout);
    let promoted = wait(&api, "the second revision stable", |r| status(r).phase == Some(RolloutPhase::Healthy)).await;
    assert_eq!(status(&promoted).stable_revision.as_deref(), Some(second_revision.as_str()));

    // undo at rest goes back to the previous revision, exactly: its ReplicaSet is reused.
    let undone = w.plugin_in(&ns, &["undo", "web"]);
    undone.assert_code(0, "undo at rest");
    assert_eq!(
        undone.stdout,
        format!("rollout {ns}/web: spec returned to revision {first_revision} (the template of ReplicaSet web-{first_revision})\n")
    );
    let back = wait(&api, "the first revision rolling out again", |r| {
        status(r).update_revision.as_deref() == Some(first_revision.as_str()) && status(r).phase == Some(RolloutPhase::Paused)
    })
    .await;
    assert_eq!(revision_of_spec(&back), first_revision);

    // abort: Degraded, and `status` says so with its own exit code.
    w.plugin_in(&ns, &["abort", "web"]).assert_code(0, "abort");
    let aborted = wait(&api, "the canary aborted", |r| status(r).phase == Some(RolloutPhase::Degraded)).await;
    assert!(status(&aborted).abort);
    w.plugin_in(&ns, &["status", "web"]).assert_code(3, "status of an aborted canary");
    w.plugin_in(&ns, &["status", "web", "--watch", "--timeout", "30s"]).assert_code(3, "status --watch of an aborted canary");

    // retry starts the same revision again from the first step.
    w.plugin_in(&ns, &["retry", "web"]).assert_code(0, "retry");
    let retried =
        wait(&api, "the retried canary paused again", |r| status(r).attempt == 1 && status(r).phase == Some(RolloutPhase::Paused)).await;
    assert_eq!(status(&retried).update_revision.as_deref(), Some(first_revision.as_str()));

    // undo mid-canary returns to the stable revision: at rest again at once.
    let undone = w.plugin_in(&ns, &["undo", "web"]);
    undone.assert_code(0, "undo mid-canary");
    assert!(undone.stdout.contains(&format!("spec returned to revision {second_revision}")), "{}", undone.stdout);
    w.plugin_in(&ns, &["status", "web", "--timeout", "90s"]).assert_code(0, "status --timeout until Healthy after undo");
    let settled = api.get("web").await.unwrap();
    assert_eq!(status(&settled).stable_revision.as_deref(), Some(second_revision.as_str()));
    assert_eq!(revision_of_spec(&settled), second_revision);
}

/// The tmux server of these tests, apart from any a person runs.
const TMUX_SOCKET: &str = "sluice-plugin-tests";

fn tmux(args: &[&str]) -> Output {
    Command::new("tmux").args(["-L", TMUX_SOCKET]).args(args).env("TERM", "xterm-256color").output().expect("tmux runs")
}

/// A detached tmux session, killed by its name on drop.
struct TmuxSession {
    name: String,
}

impl Drop for TmuxSession {
    fn drop(&mut self) {
        let _ = tmux(&["kill-session", "-t", &self.name]);
    }
}

async fn live_view_in_a_terminal(w: &World, ns: &str, stable: &str, canary: &str) {
    let version = Command::new("tmux").arg("-V").output();
    assert!(version.is_ok_and(|o| o.status.success()), "tmux is needed for this test: `e2e/stack install` installs it");
    let name = format!("watch-{ns}");
    let command = format!("env KUBECONFIG='{}' '{PLUGIN}' status web -n {ns} --watch", w.stack.kubeconfig.display());
    let started = tmux(&["new-session", "-d", "-s", &name, "-x", "120", "-y", "40", &command]);
    assert!(started.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&started.stderr));
    let session = TmuxSession { name };

    let expected = [
        "  [x] 0  setWeight 50".to_string(),
        "  [>] 1  pause until promoted".to_string(),
        "Weight       [###############---------------]  50%".to_string(),
        format!("  {canary}  canary  ReplicaSet web-{canary}  1/1 ready  web=web:2, log=fluent:1"),
        format!("  {stable}  stable  ReplicaSet web-{stable}  1/1 ready  web=web:1, log=fluent:1"),
    ];
    let screen = wait_for("the live view drawn in tmux", Duration::from_secs(30), || {
        let captured = tmux(&["capture-pane", "-p", "-t", &session.name]);
        let text = String::from_utf8_lossy(&captured.stdout).into_owned();
        let drawn = expected.iter().all(|line| text.contains(line.as_str()));
        async move { drawn.then_some(text) }
    })
    .await;
    assert!(screen.starts_with("Rollout      "), "the screen was cleared before the frame:\n{screen}");
    assert!(!screen.contains('\u{1b}'), "no escape sequence shows:\n{screen}");
    drop(session);
    let gone = tmux(&["has-session", "-t", &format!("watch-{ns}")]);
    assert!(!gone.status.success(), "the tmux session was killed");
}

/// A kubeconfig for `namespace`'s ServiceAccount `account`, holding a token from the API server.
fn account_kubeconfig(w: &World, namespace: &str, account: &str) -> std::path::PathBuf {
    let token = w.stack.kubectl(&["create", "token", account, "-n", namespace, "--duration=1h"]);
    assert!(token.status.success(), "token: {}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
    let admin = w.stack.kubectl(&["config", "view", "--raw", "--flatten", "--minify", "-o", "json"]);
    let admin: serde_json::Value = serde_json::from_slice(&admin.stdout).expect("admin kubeconfig");
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": account,
        "clusters": [{"name": "stack", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "stack", "user": account, "namespace": namespace}}],
    });
    let path = w.stack.dir.join(format!("{namespace}-{account}.kubeconfig"));
    std::fs::write(&path, serde_json::to_string(&kubeconfig).unwrap()).unwrap();
    path
}

/// What docs/plugin.md asks of a person who promotes: `patch` on rollouts, never rollouts/status.
async fn person_who_may_patch_rollouts(client: &kube::Client, namespace: &str) {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::PostParams;
    let account: ServiceAccount = serde_json::from_value(serde_json::json!({"metadata": {"name": "dev"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), namespace).create(&PostParams::default(), &account).await.unwrap();
    let role: Role = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "rollout-operator"},
        "rules": [
            {"apiGroups": ["sluice.dev"], "resources": ["rollouts"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["sluice.dev"], "resources": ["analysisruns"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["get", "list", "watch"]}
        ]
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), namespace).create(&PostParams::default(), &role).await.unwrap();
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "dev-rollout-operator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rollout-operator"},
        "subjects": [{"kind": "ServiceAccount", "name": "dev", "namespace": namespace}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), namespace).create(&PostParams::default(), &binding).await.unwrap();
}

register_test!(120, promote_needs_patch_on_rollouts_and_the_status_cannot_be_forged);
pub async fn promote_needs_patch_on_rollouts_and_the_status_cannot_be_forged(w: Arc<World>) {
    let client = w.stack.kube().await;
    let ns = namespace(&client, "plugin-rbac").await;
    person_who_may_patch_rollouts(&client, &ns).await;
    let dev = account_kubeconfig(&w, &ns, "dev");
    w.start_controller(&ns);
    let _controller = ControllerGuard { world: &w, namespace: ns.clone() };
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns);
    create(&client, &ns, &rollout("web", "web:1", 2, canary())).await;
    let healthy = wait(&api, "the first revision Healthy", |r| status(r).phase == Some(RolloutPhase::Healthy)).await;
    let first = status(&healthy).stable_revision.unwrap();

    let as_dev = |args: &[&str]| {
        let output = Command::new(PLUGIN).arg("--kubeconfig").arg(&dev).args(args).output().expect("kubectl-sluice runs");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, _, stderr) = as_dev(&["set", "image", "web", "web=web:2"]);
    assert_eq!(code, Some(0), "set image as dev: {stderr}");
    let paused = wait(&api, "the canary paused at step 1", |r| status(r).phase == Some(RolloutPhase::Paused)).await;
    let second = status(&paused).update_revision.unwrap();
    assert_ne!(first, second);

    let (code, stdout, stderr) = as_dev(&["promote", "web"]);
    assert_eq!(code, Some(0), "promote with `patch rollouts` only: {stderr}");
    assert!(stdout.starts_with(&format!("rollout {ns}/web: promote requested for revision {second}\npromote applied: ")), "{stdout}");
    let promoted = wait(&api, "the promoted revision stable", |r| status(r).phase == Some(RolloutPhase::Healthy)).await;
    assert_eq!(status(&promoted).stable_revision.as_deref(), Some(second.as_str()));

    // The same person cannot write the controller's status: RBAC refuses it.
    let forged = w
        .stack
        .command("kubectl")
        .env("KUBECONFIG", &dev)
        .args([
            "patch",
            "rollout",
            "web",
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"stableRevision":"forged"}}"#,
        ])
        .output()
        .unwrap();
    assert!(!forged.status.success(), "a status patch by dev must be refused");
    assert!(String::from_utf8_lossy(&forged.stderr).contains("forbidden"), "{}", String::from_utf8_lossy(&forged.stderr));
    assert_eq!(status(&api.get("web").await.unwrap()).stable_revision.as_deref(), Some(second.as_str()));
}

register_test!(125, every_request_gets_an_answer_and_an_ignored_one_fails_the_command);
/// The controller answers each request by its id, and the plugin prints the answer: applied
/// exits 0; ignored, with the reason, exits 6, so a pipeline never takes a dropped request for
/// a done one.
pub async fn every_request_gets_an_answer_and_an_ignored_one_fails_the_command(w: Arc<World>) {
    let client = w.stack.kube().await;
    let ns = namespace(&client, "plugin-answers").await;
    w.start_controller(&ns);
    let _controller = ControllerGuard { world: &w, namespace: ns.clone() };
    let api: Api<Rollout> = Api::namespaced(client.clone(), &ns);
    create(&client, &ns, &rollout("web", "web:1", 2, json!({"rolling": {}}))).await;
    wait(&api, "the first revision Healthy", |r| status(r).phase == Some(RolloutPhase::Healthy)).await;

    // A paused rolling update: nothing waits for a plain promote, so the controller ignores it.
    w.plugin_in(&ns, &["pause", "web"]).assert_code(0, "pause");
    w.plugin_in(&ns, &["set", "image", "web", "web=web:2"]).assert_code(0, "set image");
    let paused = wait(&api, "the update held by spec.paused", |r| status(r).phase == Some(RolloutPhase::Paused)).await;
    let second = status(&paused).update_revision.unwrap();
    let ignored = w.plugin_in(&ns, &["promote", "web"]);
    ignored.assert_code(6, "a promote the controller ignored");
    assert!(
        ignored.stdout.ends_with(&format!("promote ignored: revision {second} had nothing waiting for a promote: paused by spec.paused\n")),
        "{}",
        ignored.stdout
    );

    let full = w.plugin_in(&ns, &["promote", "web", "--full"]);
    full.assert_code(0, "promote --full");
    assert!(
        full.stdout.ends_with(&format!("full promotion applied: revision {second} is promoted in full: every new replica at once\n")),
        "{}",
        full.stdout
    );
    w.plugin_in(&ns, &["resume", "web"]).assert_code(0, "resume");
    wait(&api, "the second revision stable", |r| {
        status(r).phase == Some(RolloutPhase::Healthy) && status(r).stable_revision.as_deref() == Some(second.as_str())
    })
    .await;

    // An abort typed a moment before the promotion landed reaches the controller after it: the
    // answer says it was ignored, and when the revision was promoted.
    let late = json!({"abort": {"id": "late-abort", "revision": second}}).to_string();
    let patch = json!({"metadata": {"annotations": {COMMANDS_ANNOTATION: late}}});
    api.patch("web", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    let answered =
        wait(&api, "the late abort answered", |r| status(r).command_results.and_then(|c| c.abort).is_some_and(|a| a.id == "late-abort"))
            .await;
    let abort = status(&answered).command_results.unwrap().abort.unwrap();
    assert_eq!(abort.outcome, CommandOutcome::Ignored);
    assert!(abort.message.starts_with(&format!("revision {second} was already promoted at ")), "{}", abort.message);
    let after = get(&client, &ns, "web").await;
    assert_eq!((status(&after).phase, status(&after).abort), (Some(RolloutPhase::Healthy), false), "nothing was aborted");
}
