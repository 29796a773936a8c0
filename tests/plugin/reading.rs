//! list, get and status against statuses written by hand (no controller), so every phase and
//! exit code can be set up exactly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::namespace;
use crate::world::{World, canary, create, rollout, write_status};

fn paused_at_step_1() -> serde_json::Value {
    json!({
        "phase": "Paused", "observedGeneration": 1, "currentStepIndex": 1,
        "stableRevision": "3f2a9c01bd", "updateRevision": "9b1c2d3e4f",
        "canaryWeight": 50, "verifiedWeight": 50,
        "desiredReplicas": 4, "replicas": 4, "updatedReplicas": 2, "readyReplicas": 4, "availableReplicas": 4,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-03-01T12:00:00Z"}],
        "message": "paused at step 1"
    })
}

fn healthy(generation: i64) -> serde_json::Value {
    json!({
        "phase": "Healthy", "observedGeneration": generation, "currentStepIndex": 2,
        "stableRevision": "3f2a9c01bd", "updateRevision": "3f2a9c01bd",
        "canaryWeight": 0, "verifiedWeight": 0,
        "desiredReplicas": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2,
        "message": "revision 3f2a9c01bd is stable: 2/2 ready"
    })
}

register_test!(10, list_shows_each_rollout_and_all_namespaces);
pub async fn list_shows_each_rollout_and_all_namespaces(w: Arc<World>) {
    let client = w.stack.kube().await;
    let (shop, admin) = (namespace(&client, "plugin-list").await, namespace(&client, "plugin-list").await);
    create(&client, &shop, &rollout("web", "web:2", 4, canary())).await;
    write_status(&client, &shop, "web", paused_at_step_1()).await;
    create(&client, &shop, &rollout("api", "api:1", 2, json!({"rolling": {}}))).await;
    create(&client, &admin, &rollout("console", "console:1", 2, canary())).await;
    write_status(&client, &admin, "console", healthy(1)).await;

    let listed = w.plugin_in(&shop, &["list"]);
    listed.assert_code(0, "list");
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows:\n{}", listed.stdout);
    assert!(lines[0].starts_with("NAME") && lines[0].contains("PHASE") && lines[0].contains("WEIGHT"), "{}", listed.stdout);
    let web: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(web, ["web", "canary", "Paused", "1/2", "50", "3f2a9c01bd", "9b1c2d3e4f", "4/4", "2"], "{}", listed.stdout);
    let api: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(api[..4], ["api", "rolling", "-", "-"], "a rollout the controller has not seen yet:\n{}", listed.stdout);

    let everywhere = w.plugin(&["list", "-A"]);
    everywhere.assert_code(0, "list -A");
    assert!(everywhere.stdout.starts_with("NAMESPACE"), "{}", everywhere.stdout);
    let row = |ns: &str, name: &str| everywhere.stdout.lines().any(|l| l.split_whitespace().take(2).eq([ns, name]));
    assert!(row(&shop, "web") && row(&shop, "api") && row(&admin, "console"), "{}", everywhere.stdout);
    let console = everywhere.stdout.lines().find(|l| l.starts_with(admin.as_str())).unwrap();
    assert!(console.contains("Healthy"), "{console}");
}

register_test!(20, get_shows_one_rollout_and_says_when_it_is_missing);
pub async fn get_shows_one_rollout_and_says_when_it_is_missing(w: Arc<World>) {
    let client = w.stack.kube().await;
    let ns = namespace(&client, "plugin-get").await;
    create(&client, &ns, &rollout("web", "web:2", 4, canary())).await;
    write_status(&client, &ns, "web", paused_at_step_1()).await;

    let got = w.plugin_in(&ns, &["get", "web"]);
    got.assert_code(0, "get");
    for expected in [
        "Phase:     Paused\n",
        "Step:      1/2\n",
        "Weight:    desired 50%, verified 50%\n",
        "Revisions: stable 3f2a9c01bd, update 9b1c2d3e4f\n",
        "Replicas:  4 desired, 4 current, 2 updated, 4 ready, 4 available\n",
    ] {
        assert!(got.stdout.contains(expected), "{expected:?} in:\n{}", got.stdout);
    }

    let missing = w.plugin_in(&ns, &["get", "nothing"]);
    missing.assert_code(1, "get of a missing rollout");
    assert!(missing.stderr.contains(&format!("rollout {ns}/nothing not found")), "{}", missing.stderr);
    let promote_missing = w.plugin_in(&ns, &["promote", "nothing"]);
    promote_missing.assert_code(1, "promote of a missing rollout");
    assert!(promote_missing.stderr.contains("not found"), "{}", promote_missing.stderr);
}

register_test!(30, context_and_namespace_come_from_the_kubeconfig);
pub async fn context_and_namespace_come_from_the_kubeconfig(w: Arc<World>) {
    let client = w.stack.kube().await;
    let ns = namespace(&client, "plugin-context").await;
    create(&client, &ns, &rollout("web", "web:2", 4, canary())).await;
    write_status(&client, &ns, "web", paused_at_step_1()).await;

    // A kubeconfig with a second context whose namespace is the test's.
    let admin = w.stack.kubectl(&["config", "view", "--raw", "--flatten", "-o", "json"]);
    let mut config: serde_json::Value = serde_json::from_slice(&admin.stdout).expect("kubeconfig as JSON");
    let first = config["contexts"][0]["context"].clone();
    let mut team = first.clone();
    team["namespace"] = json!(ns);
    config["contexts"].as_array_mut().unwrap().push(json!({"name": "team", "context": team}));
    let path = w.stack.dir.join(format!("{ns}.kubeconfig"));
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    let path = path.to_str().unwrap();

    let by_context = w.plugin(&["--kubeconfig", path, "--context", "team", "get", "web"]);
    by_context.assert_code(0, "get with --context");
    assert!(by_context.stdout.contains(&format!("Namespace: {ns}\n")), "{}", by_context.stdout);
    let by_default = w.plugin(&["--kubeconfig", path, "get", "web"]);
    by_default.assert_code(1, "the current context's namespace is another one");
    assert!(by_default.stderr.contains("not found"), "{}", by_default.stderr);
    let flag_wins = w.plugin(&["--kubeconfig", path, "--context", "team", "-n", "default", "get", "web"]);
    flag_wins.assert_code(1, "-n overrides the context's namespace");
    let no_such_context = w.plugin(&["--kubeconfig", path, "--context", "nowhere", "list"]);
    no_such_context.assert_code(1, "an unknown context");
    assert!(no_such_context.stderr.contains("kubeconfig"), "{}", no_such_context.stderr);
}

register_test!(40, status_exit_codes_follow_the_phase);
pub async fn status_exit_codes_follow_the_phase(w: Arc<World>) {
    let client = w.stack.kube().await;
    let ns = namespace(&client, "plugin-status").await;
    create(&client, &ns, &rollout("web", "web:2", 2, canary())).await;

    write_status(&client, &ns, "web", healthy(1)).await;
    let ok = w.plugin_in(&ns, &["status", "web"]);
    ok.assert_code(0, "status of a Healthy rollout");
    assert!(ok.stdout.contains("Phase        Healthy\n") && ok.stdout.contains("  [x] 1  pause until promoted\n"), "{}", ok.stdout);
    assert!(ok.stderr.contains("is Healthy"), "{}", ok.stderr);
    let watched = w.plugin_in(&ns, &["status", "web", "--watch"]);
    watched.assert_code(0, "status --watch returns at once on a Healthy rollout");

    write_status(&client, &ns, "web", healthy(0)).await;
    w.plugin_in(&ns, &["status", "web"]).assert_code(5, "Healthy, but for an older generation");

    write_status(&client, &ns, "web", paused_at_step_1()).await;
    let paused = w.plugin_in(&ns, &["status", "web"]);
    paused.assert_code(5, "status of a paused rollout");
    assert!(paused.stdout.contains("  [>] 1  pause until promoted\n"), "{}", paused.stdout);

    let degraded = json!({"phase": "Degraded", "abort": true, "pauseConditions": null, "abortReason": "analysis failed", "canaryWeight": 0,
        "message": "aborted: traffic is back on stable revision 3f2a9c01bd"});
    write_status(&client, &ns, "web", degraded).await;
    let bad = w.plugin_in(&ns, &["status", "web"]);
    bad.assert_code(3, "status of a Degraded rollout");
    assert!(bad.stdout.contains("Message      aborted: traffic is back on stable revision 3f2a9c01bd"), "{}", bad.stdout);
    w.plugin_in(&ns, &["status", "web", "--timeout", "30s"]).assert_code(3, "status --timeout returns at once on a Degraded rollout");

    w.plugin_in(&ns, &["status", "nothing"]).assert_code(1, "status of a missing rollout");
    w.plugin_in(&ns, &["status", "nothing", "--watch"]).assert_code(1, "status --watch of a missing rollout");
}

register_test!(50, status_times_out_on_a_rollout_that_does_not_finish);
pub async fn status_times_out_on_a_rollout_that_does_not_finish(w: Arc<World>) {
    let client = w.stack.kube().await;
    let ns = namespace(&client, "plugin-timeout").await;
    create(&client, &ns, &rollout("web", "web:2", 4, canary())).await;
    write_status(&client, &ns, "web", paused_at_step_1()).await;
    let started = Instant::now();
    let run = w.plugin_in(&ns, &["status", "web", "--timeout", "2s"]);
    run.assert_code(4, "status --timeout on a paused rollout");
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited the whole timeout");
    assert!(run.stderr.contains("timed out after 2s"), "{}", run.stderr);
    assert!(run.stdout.contains("Phase        Paused (CanaryPauseStep)"), "the view was drawn while waiting:\n{}", run.stdout);
}
