//! Frames of the status view on fixed rollout states, compared with tests/snapshots/status-*.txt.
//! After an intended change of the view, `SLUICE_UPDATE_SNAPSHOTS=1 cargo test --lib plugin`
//! rewrites the files; review the diff before committing it.

use std::path::PathBuf;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Event;
use serde_json::{Value, json};

use super::{StatusState, render};
use crate::api::{AnalysisRun, Rollout};

const NOW: &str = "2026-03-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// An RFC 3339 time `seconds` before NOW.
fn ago(seconds: i64) -> String {
    (now() - jiff::SignedDuration::from_secs(seconds)).to_string()
}

fn assert_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.txt"));
    if std::env::var_os("SLUICE_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no snapshot {}; write it with SLUICE_UPDATE_SNAPSHOTS=1 and review it", path.display()));
    assert!(actual == expected, "the {name} frame differs from {}:\n--- expected\n{expected}\n--- actual\n{actual}", path.display());
}

fn kubernetes_workload(replicas: i32) -> Value {
    json!({"kubernetes": {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "shop/web:2"}]}}
    }})
}

fn rollout(workload: Value, strategy: Value, status: Value) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop", "generation": 4, "creationTimestamp": ago(86_400)},
        "spec": {"workload": workload, "strategy": strategy},
        "status": status
    }))
    .unwrap()
}

fn replica_set(revision: &str, desired: i32, ready: i32, image: &str) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": format!("web-{revision}"), "namespace": "shop",
            "labels": {"sluice.dev/rollout": "web", "sluice.dev/revision": revision}},
        "spec": {"replicas": desired, "selector": {"matchLabels": {"app": "web", "sluice.dev/revision": revision}},
            "template": {"metadata": {"labels": {"app": "web", "sluice.dev/revision": revision}},
                "spec": {"containers": [{"name": "web", "image": image}]}}},
        "status": {"replicas": desired, "readyReplicas": ready}
    }))
    .unwrap()
}

fn analysis_run(name: &str, revision: &str, status: Value) -> AnalysisRun {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": ago(120),
            "labels": {"sluice.dev/rollout": "web", "sluice.dev/revision": revision}},
        "spec": {"metrics": [{"name": "error-rate", "provider": {"prometheus": {"address": "http://prometheus:9090", "query": "errors"}}}]},
        "status": status
    }))
    .unwrap()
}

fn measurement(value: &str, phase: &str, seconds_ago: i64) -> Value {
    json!({"phase": phase, "value": value, "startedAt": ago(seconds_ago), "finishedAt": ago(seconds_ago)})
}

fn event(name: &str, kind: &str, reason: &str, message: &str, seconds_ago: i64, count: Option<i32>) -> Event {
    let mut event = json!({
        "metadata": {"name": name, "namespace": "shop"},
        "involvedObject": {"kind": "Rollout", "name": "web", "namespace": "shop"},
        "type": kind, "reason": reason, "message": message,
        "eventTime": format!("{}", ago(seconds_ago)),
    });
    if let Some(count) = count {
        event["series"] = json!({"count": count, "lastObservedTime": ago(seconds_ago)});
    }
    serde_json::from_value(event).unwrap()
}

fn canary_steps() -> Value {
    json!({"canary": {"steps": [
        {"setWeight": 20}, {"pause": {"duration": "30s"}},
        {"analysis": {"templates": [{"templateName": "error-rate"}]}},
        {"setWeight": 50}, {"pause": {}}
    ]}})
}

fn canary_mid_step_with_analysis() -> StatusState {
    let status = json!({
        "phase": "Progressing", "observedGeneration": 4, "currentStepIndex": 2,
        "stableRevision": "3f2a9c01bd", "updateRevision": "9b1c2d3e4f",
        "canaryWeight": 20, "verifiedWeight": 20,
        "desiredReplicas": 5, "replicas": 6, "updatedReplicas": 1, "readyReplicas": 6, "availableReplicas": 6,
        "message": "analysis run web-9b1c2d3e4f-0-step-2 Running"
    });
    StatusState {
        rollout: rollout(kubernetes_workload(5), canary_steps(), status),
        replica_sets: vec![
            replica_set("3f2a9c01bd", 5, 5, "shop/web:1"),
            replica_set("9b1c2d3e4f", 1, 1, "shop/web:2"),
            replica_set("77aa00bb11", 0, 0, "shop/web:0"),
        ],
        analysis_runs: vec![
            analysis_run(
                "web-9b1c2d3e4f-0-step-2",
                "9b1c2d3e4f",
                json!({"phase": "Running", "metricResults": [{
                    "name": "error-rate", "phase": "Running", "count": 4, "successful": 3, "failed": 1,
                    "measurements": [measurement("0.009", "Successful", 80), measurement("0.081", "Failed", 60),
                        measurement("0.012", "Successful", 40), measurement("0.010", "Successful", 20)]
                }]}),
            ),
            analysis_run("web-77aa00bb11-0-step-2", "77aa00bb11", json!({"phase": "Successful"})),
        ],
        events: vec![
            event("e1", "Normal", "NewRevision", "rolling out revision 9b1c2d3e4f over stable 3f2a9c01bd", 400, None),
            event("e2", "Normal", "WeightSet", "canary weight is 20%", 300, None),
            event("e3", "Normal", "StepCompleted", "step 0 (setWeight 20) completed", 290, None),
            event("e4", "Normal", "Paused", "paused: CanaryPauseStep", 280, None),
            event("e5", "Normal", "StepCompleted", "step 1 (pause 30s) completed", 250, None),
            event("e6", "Normal", "AnalysisStarted", "analysis run web-9b1c2d3e4f-0-step-2 started", 240, Some(2)),
        ],
    }
}

#[test]
fn canary_mid_step_with_analysis_running() {
    let frame = render(&canary_mid_step_with_analysis(), now());
    assert!(frame.contains("  [>] 2  analysis error-rate\n"), "{frame}");
    assert!(frame.contains("[######------------------------]  20%"), "{frame}");
    assert!(frame.contains("latest 0.081 (Failed), 0.012, 0.010"), "{frame}");
    assert!(!frame.contains("web-77aa00bb11"), "a scaled-down old revision and its finished run are left out:\n{frame}");
    assert!(!frame.contains("rolling out revision"), "only the last 5 events are shown:\n{frame}");
    assert_snapshot("status-canary-analysis", &frame);
}

#[test]
fn canary_paused_for_a_person() {
    let status = json!({
        "phase": "Paused", "observedGeneration": 4, "currentStepIndex": 4,
        "stableRevision": "3f2a9c01bd", "updateRevision": "9b1c2d3e4f",
        "canaryWeight": 50, "verifiedWeight": 50,
        "desiredReplicas": 4, "replicas": 4, "updatedReplicas": 2, "readyReplicas": 4, "availableReplicas": 4,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": ago(90)}],
        "message": "paused at step 4 until promoted: run `kubectl sluice promote web` to continue"
    });
    let state = StatusState {
        rollout: rollout(kubernetes_workload(4), canary_steps(), status),
        replica_sets: vec![replica_set("3f2a9c01bd", 2, 2, "shop/web:1"), replica_set("9b1c2d3e4f", 2, 2, "shop/web:2")],
        analysis_runs: vec![analysis_run(
            "web-9b1c2d3e4f-0-step-2",
            "9b1c2d3e4f",
            json!({"phase": "Successful", "metricResults": [{"name": "error-rate", "phase": "Successful", "count": 1, "successful": 1,
                "measurements": [measurement("0.004", "Successful", 200)]}]}),
        )],
        events: vec![event("e1", "Normal", "Paused", "paused: CanaryPauseStep", 90, None)],
    };
    let frame = render(&state, now());
    assert!(frame.contains("Phase        Paused (CanaryPauseStep)\n"), "{frame}");
    assert!(frame.contains("  [>] 4  pause until promoted\n") && frame.contains("  [x] 3  setWeight 50\n"), "{frame}");
    assert!(frame.contains("Analysis (last finished run)\n"), "{frame}");
    assert_snapshot("status-canary-paused", &frame);
}

#[test]
fn degraded_with_its_message() {
    let status = json!({
        "phase": "Degraded", "observedGeneration": 4, "currentStepIndex": 2,
        "stableRevision": "3f2a9c01bd", "updateRevision": "9b1c2d3e4f",
        "canaryWeight": 0, "verifiedWeight": 0, "abort": true, "abortedAt": ago(30),
        "abortReason": "analysis run web-9b1c2d3e4f-0-step-2 Failed: error-rate failed 2 times (limit 1)",
        "desiredReplicas": 5, "replicas": 6, "updatedReplicas": 1, "readyReplicas": 6, "availableReplicas": 6,
        "message": "aborted: traffic is back on stable revision 3f2a9c01bd; the spec still asks for revision 9b1c2d3e4f: run `kubectl sluice retry web` to try it again, or `kubectl sluice undo web` to return the spec to the stable version"
    });
    let state = StatusState {
        rollout: rollout(kubernetes_workload(5), canary_steps(), status),
        replica_sets: vec![replica_set("3f2a9c01bd", 5, 5, "shop/web:1"), replica_set("9b1c2d3e4f", 1, 1, "shop/web:2")],
        analysis_runs: vec![analysis_run(
            "web-9b1c2d3e4f-0-step-2",
            "9b1c2d3e4f",
            json!({"phase": "Failed", "message": "error-rate failed 2 times (limit 1)", "metricResults": [{
                "name": "error-rate", "phase": "Failed", "count": 3, "successful": 1, "failed": 2,
                "measurements": [measurement("0.010", "Successful", 90), measurement("0.090", "Failed", 60), measurement("0.120", "Failed", 35)]}]}),
        )],
        events: vec![
            event("e1", "Warning", "AnalysisFailed", "analysis run web-9b1c2d3e4f-0-step-2 Failed", 31, None),
            event("e2", "Warning", "Aborted", "aborted: analysis run web-9b1c2d3e4f-0-step-2 Failed", 30, None),
        ],
    };
    let frame = render(&state, now());
    assert!(frame.contains("Phase        Degraded (aborted)\n"), "{frame}");
    assert!(frame.contains("  [!] 2  analysis error-rate\n"), "{frame}");
    assert!(frame.contains("Message      aborted: traffic is back on stable revision 3f2a9c01bd"), "{frame}");
    assert_snapshot("status-degraded", &frame);
}

#[test]
fn blue_green_waiting_for_promotion() {
    let strategy = json!({"blueGreen": {
        "activeService": "web-active", "previewService": "web-preview", "autoPromotionEnabled": false,
        "prePromotionAnalysis": {"templates": [{"templateName": "smoke"}]}
    }});
    let status = json!({
        "phase": "Paused", "observedGeneration": 4,
        "stableRevision": "3f2a9c01bd", "updateRevision": "9b1c2d3e4f",
        "canaryWeight": 0, "verifiedWeight": 0, "previewReadyAt": ago(100),
        "desiredReplicas": 3, "replicas": 6, "updatedReplicas": 3, "readyReplicas": 6, "availableReplicas": 6,
        "pauseConditions": [{"reason": "BlueGreenPause", "startTime": ago(60)}],
        "message": "preview revision 9b1c2d3e4f is ready; run `kubectl sluice promote web` to switch traffic to it"
    });
    let state = StatusState {
        rollout: rollout(kubernetes_workload(3), strategy, status),
        replica_sets: vec![replica_set("3f2a9c01bd", 3, 3, "shop/web:1"), replica_set("9b1c2d3e4f", 3, 3, "shop/web:2")],
        analysis_runs: vec![],
        events: vec![],
    };
    let frame = render(&state, now());
    assert!(frame.contains("  9b1c2d3e4f  preview  ReplicaSet web-9b1c2d3e4f  3/3 ready  shop/web:2\n"), "{frame}");
    assert!(frame.contains("  3f2a9c01bd  active   ReplicaSet web-3f2a9c01bd  3/3 ready  shop/web:1\n"), "{frame}");
    assert!(frame.contains("  [x] 1  pre-promotion analysis smoke\n  [>] 2  switch the active Service (promotion)\n"), "{frame}");
    assert_snapshot("status-blue-green", &frame);
}

#[test]
fn healthy_at_rest() {
    let status = json!({
        "phase": "Healthy", "observedGeneration": 4, "currentStepIndex": 5,
        "stableRevision": "9b1c2d3e4f", "updateRevision": "9b1c2d3e4f",
        "canaryWeight": 0, "verifiedWeight": 0,
        "desiredReplicas": 5, "replicas": 5, "updatedReplicas": 5, "readyReplicas": 5, "availableReplicas": 5,
        "message": "revision 9b1c2d3e4f is stable: 5/5 ready"
    });
    let state = StatusState {
        rollout: rollout(kubernetes_workload(5), canary_steps(), status),
        replica_sets: vec![replica_set("9b1c2d3e4f", 5, 5, "shop/web:2"), replica_set("3f2a9c01bd", 0, 0, "shop/web:1")],
        analysis_runs: vec![],
        events: vec![event("e1", "Normal", "Completed", "revision 9b1c2d3e4f is stable: 5/5 ready", 7200, None)],
    };
    let frame = render(&state, now());
    assert_eq!(frame.matches("[x]").count(), 5, "{frame}");
    assert!(frame.contains("    2h ago  Normal   Completed  revision 9b1c2d3e4f is stable"), "{frame}");
    assert_snapshot("status-healthy", &frame);
}

#[test]
fn ecs_revisions_come_from_the_status() {
    let workload = json!({"ecs": {
        "cluster": "prod", "service": "checkout", "taskDefinition": "checkout:8", "desiredCount": 10,
        "loadBalancer": {"containerName": "checkout", "containerPort": 8080}
    }});
    let status = json!({
        "phase": "Progressing", "observedGeneration": 3, "currentStepIndex": 0,
        "stableRevision": "a1b2c3d4e5", "updateRevision": "f6e5d4c3b2",
        "canaryWeight": 10, "verifiedWeight": 10,
        "desiredReplicas": 10, "replicas": 11, "updatedReplicas": 1, "readyReplicas": 11, "availableReplicas": 11,
        "message": "setting the canary weight to 10%"
    });
    let state = StatusState {
        rollout: rollout(workload, json!({"canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": "5m"}}]}}), status),
        replica_sets: vec![],
        analysis_runs: vec![],
        events: vec![],
    };
    let frame = render(&state, now());
    assert!(frame.contains("  f6e5d4c3b2  canary  task set   1 ready\n  a1b2c3d4e5  stable  task set  10 ready\n"), "{frame}");
    assert!(frame.contains("Generation   4, observed 3: the controller has not seen the latest spec yet"), "{frame}");
    assert_snapshot("status-ecs", &frame);
}
