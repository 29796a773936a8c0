use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::{Rollout, RolloutPhase};
use sluice::engine::tenancy::ALLOWED_AWS_RESOURCES_ANNOTATION;

use crate::controller::{Harness, RELEASE_NAMESPACE};
use crate::support::registrar::{EcsAgent, REGISTRATION_LAG};
use crate::support::scene::{DEADLINE, Scene};
use crate::support::{namespace, path_str, repo, wait_for, xml_value};

pub(crate) fn rollout(replicas: i32, image: &str, strategy: Value) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {
            "workload": {"kubernetes": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}
            }},
            "strategy": strategy
        }
    }))
    .unwrap()
}

impl Scene {
    pub(crate) async fn set_image(&self, image: &str) {
        // A merge patch replaces the container list: the one container with its new image.
        self.patch(
            json!({"spec": {"workload": {"kubernetes": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}}}),
        )
        .await;
    }

    pub(crate) async fn wait_phase(&self, phase: RolloutPhase) -> Rollout {
        let what = format!("phase {phase}");
        self.wait(&what, |r| {
            status_phase(r) == Some(phase) && r.status.as_ref().and_then(|s| s.observed_generation) == r.metadata.generation
        })
        .await
    }

    /// Replica counts by image: (desired, ready).
    async fn replica_sets(&self) -> BTreeMap<String, (i32, i32)> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.ns);
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|rs| {
                let image = rs
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .and_then(|t| t.spec.as_ref())
                    .map(|p| p.containers[0].image.clone().unwrap_or_default())
                    .unwrap_or_default();
                let desired = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                let ready = rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
                (image, (desired, ready))
            })
            .collect()
    }

    /// Pods that are Ready and not being deleted.
    async fn ready_pods(&self) -> i32 {
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let pods = api.list(&ListParams::default()).await.unwrap().items;
        let ready = |pod: &k8s_openapi::api::core::v1::Pod| {
            pod.metadata.deletion_timestamp.is_none()
                && pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        pods.iter().filter(|pod| ready(pod)).count() as i32
    }

    pub(crate) async fn wait_replicas(&self, expected: &[(&str, i32)]) {
        let expected: BTreeMap<String, (i32, i32)> = expected.iter().map(|(i, n)| (i.to_string(), (*n, *n))).collect();
        let what = format!("replica sets {expected:?}");
        wait_for(&what, DEADLINE, || async {
            let current = self.replica_sets().await;
            let matching = expected.iter().all(|(image, counts)| current.get(image).unwrap_or(&(0, 0)) == counts)
                && current.iter().all(|(image, (desired, _))| expected.contains_key(image) || *desired == 0);
            matching.then_some(())
        })
        .await;
    }

    async fn selector(&self, service: &str) -> Option<String> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.ns);
        let service = api.get(service).await.ok()?;
        service.spec?.selector?.get("sluice.dev/revision").cloned()
    }

    pub(crate) async fn events(&self) -> Vec<(String, String, i32)> {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &self.ns);
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Rollout"))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default(), e.series.map_or(1, |s| s.count)))
            .collect()
    }
}

fn status_phase(rollout: &Rollout) -> Option<RolloutPhase> {
    rollout.status.as_ref().and_then(|s| s.phase)
}

fn message(rollout: &Rollout) -> String {
    rollout.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default()
}

pub(crate) fn step(rollout: &Rollout) -> Option<i32> {
    rollout.status.as_ref().and_then(|s| s.current_step_index)
}

pub(crate) fn canary_steps() -> Value {
    json!({"canary": {
        "stableService": "web-stable",
        "canaryService": "web-canary",
        "steps": [{"setWeight": 25}, {"pause": {"duration": "2s"}}, {"setWeight": 50}, {"pause": {}}]
    }})
}

register_test!(10, chart_renders_and_lints);
pub async fn chart_renders_and_lints(h: Arc<Harness>) {
    let chart = repo().join("charts/sluice");
    let lint = h.stack.command("helm").args(["lint", path_str(&chart)]).output().unwrap();
    assert!(lint.status.success(), "helm lint: {}", String::from_utf8_lossy(&lint.stdout));
    for extra in [vec![], vec!["--set", "watchNamespace=shop", "--set", "metrics.serviceMonitor.enabled=true"]] {
        let out = h
            .stack
            .command("helm")
            .args(["template", "sluice", path_str(&chart), "--namespace", RELEASE_NAMESPACE])
            .args(&extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "helm template {extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("readOnlyRootFilesystem: true") && text.contains("runAsNonRoot: true"));
    }
    let bad = h.stack.command("helm").args(["template", "sluice", path_str(&chart), "--set", "replicas=-1"]).output().unwrap();
    assert!(!bad.status.success(), "values.schema.json refuses a negative replica count");

    let observed = h
        .stack
        .command("helm")
        .args(["template", "sluice", path_str(&chart), "--namespace", RELEASE_NAMESPACE])
        .args(["--set", "grafana.dashboard.enabled=true", "--set", "metrics.rolloutLabel=false"])
        .args(["--set", "notifications.webhooksSecret.name=sluice-webhooks", "--set", "notifications.webhooksSecret.key=urls"])
        .output()
        .unwrap();
    assert!(observed.status.success(), "helm template with the dashboard: {}", String::from_utf8_lossy(&observed.stderr));
    let documents: Vec<Value> = serde_saphyr::from_multiple(&String::from_utf8_lossy(&observed.stdout)).unwrap();
    let dashboard = documents.iter().find(|d| d["kind"] == "ConfigMap").expect("the dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(dashboard["data"]["sluice.json"].as_str().unwrap()).expect("the dashboard is JSON");
    let queries = json.to_string();
    for metric in [
        "sluice_reconcile_errors_total",
        "sluice_rollouts",
        "sluice_deployments_total",
        "sluice_lead_time_seconds_bucket",
        "sluice_time_to_restore_seconds_bucket",
    ] {
        assert!(queries.contains(metric), "no panel reads {metric}");
    }
    let deployment = documents.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
    let value = |name: &str| env.iter().find(|e| e["name"] == name).map(|e| e["value"].clone());
    assert_eq!(value("SLUICE_METRICS_ROLLOUT_LABEL"), Some(json!("false")));
    assert_eq!(value("SLUICE_WEBHOOKS_FILE"), Some(json!("/etc/sluice/webhooks/urls")), "webhook URLs come from a Secret, as a file");
    assert!(value("SLUICE_WEBHOOK_URLS").is_none());
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(volumes.contains("sluice-webhooks"), "{volumes}");
    let plain = h.stack.command("helm").args(["template", "sluice", path_str(&chart)]).output().unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("grafana_dashboard"), "the dashboard is optional");
    let bad_url = h
        .stack
        .command("helm")
        .args(["template", "sluice", path_str(&chart), "--set", "notifications.webhooks={https://a.test/hook}"])
        .output()
        .unwrap();
    assert!(!bad_url.status.success(), "webhook URLs in plain values are refused");
    assert!(String::from_utf8_lossy(&bad_url.stderr).contains("notifications.webhooksSecret"), "the refusal says what to set instead");
}

register_test!(20, canary_by_replicas_with_timed_and_manual_pauses);
pub async fn canary_by_replicas_with_timed_and_manual_pauses(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "canary", &["web-stable", "web-canary"]).await;
    s.create(&rollout(4, "web:1", canary_steps())).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.wait_replicas(&[("web:1", 4)]).await;

    s.set_image("web:2").await;
    let paused = s.wait("the manual pause at step 3", |r| status_phase(r) == Some(RolloutPhase::Paused) && step(r) == Some(3)).await;
    assert!(message(&paused).contains("kubectl sluice promote web"), "{}", message(&paused));
    s.wait_replicas(&[("web:1", 2), ("web:2", 2)]).await;
    let update = paused.status.as_ref().unwrap().update_revision.clone();
    assert_eq!(s.selector("web-canary").await, update, "the canary Service selects the new revision");

    s.command("promote", "p-1").await;
    let healthy = s.wait_phase(RolloutPhase::Healthy).await;
    s.wait_replicas(&[("web:2", 4)]).await;
    assert_eq!(healthy.status.as_ref().unwrap().stable_revision, update);
    assert_eq!(s.selector("web-stable").await, update, "the stable Service follows the promotion");
    let events = s.events().await;
    for reason in ["NewRevision", "StepCompleted", "Paused", "Promoted", "Completed"] {
        assert!(events.iter().any(|(r, _, _)| r == reason), "no {reason} event in {events:?}");
    }
}

register_test!(30, canary_aborted_returns_to_stable);
pub async fn canary_aborted_returns_to_stable(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "abort", &["web-stable", "web-canary"]).await;
    s.create(&rollout(4, "web:1", canary_steps())).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.set_image("web:2").await;
    s.wait("the manual pause", |r| step(r) == Some(3)).await;
    s.command("abort", "a-1").await;
    let degraded = s.wait_phase(RolloutPhase::Degraded).await;
    s.wait_replicas(&[("web:1", 4)]).await;
    let text = message(&degraded);
    assert!(text.contains("aborted by `kubectl sluice abort`") && text.contains("kubectl sluice retry web"), "{text}");
    assert!(s.events().await.iter().any(|(r, _, _)| r == "Aborted"));

    s.command("retry", "r-1").await;
    s.wait("the retried canary at its manual pause", |r| step(r) == Some(3) && status_phase(r) == Some(RolloutPhase::Paused)).await;
    s.wait_replicas(&[("web:1", 2), ("web:2", 2)]).await;
}

register_test!(40, blue_green_switches_and_scales_down_after_the_delay);
pub async fn blue_green_switches_and_scales_down_after_the_delay(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "bluegreen", &["web-active", "web-preview"]).await;
    let strategy = json!({"blueGreen": {
        "activeService": "web-active", "previewService": "web-preview",
        "autoPromotionSeconds": 3, "scaleDownDelaySeconds": 3, "previewReplicaCount": 1
    }});
    s.create(&rollout(3, "web:1", strategy)).await;
    let first = s.wait_phase(RolloutPhase::Healthy).await;
    let blue = first.status.as_ref().unwrap().stable_revision.clone();
    s.set_image("web:2").await;
    let previewing = s.wait("the preview", |r| r.status.as_ref().is_some_and(|s| s.update_revision != s.stable_revision)).await;
    let green = previewing.status.as_ref().unwrap().update_revision.clone();
    wait_for("the preview Service to select green", DEADLINE, || async { (s.selector("web-preview").await == green).then_some(()) }).await;
    assert_eq!(s.selector("web-active").await, blue, "production stays on blue before promotion");
    s.wait_phase(RolloutPhase::Healthy).await;
    assert_eq!(s.selector("web-active").await, green, "promoted: the active Service selects green");
    s.wait_replicas(&[("web:2", 3)]).await;
}

register_test!(50, rolling_update_within_surge_and_unavailable);
pub async fn rolling_update_within_surge_and_unavailable(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "rolling", &[]).await;
    s.create(&rollout(3, "web:1", json!({"rolling": {"maxSurge": 1, "maxUnavailable": 0}}))).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.set_image("web:2").await;
    // Never more than replicas + maxSurge pods, never fewer than replicas ready.
    wait_for("the rolling update", DEADLINE, || {
        let s = &s;
        async move {
            let sets = s.replica_sets().await;
            let total: i32 = sets.values().map(|(d, _)| d).sum();
            // Ready pods, not ReplicaSet status: that status is recomputed from
            // kube-controller-manager's cache and can briefly count fewer than are ready.
            let ready = s.ready_pods().await;
            assert!(total <= 4, "surge exceeded: {sets:?}");
            assert!(ready >= 3 || total < 3, "availability dropped: {ready} ready pods, {sets:?}");
            (sets.get("web:2") == Some(&(3, 3)) && sets.get("web:1").is_none_or(|(d, _)| *d == 0)).then_some(())
        }
    })
    .await;
    s.wait_phase(RolloutPhase::Healthy).await;
}

register_test!(60, new_image_mid_canary_restarts_the_steps);
pub async fn new_image_mid_canary_restarts_the_steps(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "midcanary", &["web-stable", "web-canary"]).await;
    s.create(&rollout(4, "web:1", canary_steps())).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.set_image("web:2").await;
    s.wait("the manual pause", |r| step(r) == Some(3)).await;
    s.set_image("web:3").await;
    s.wait("web:3 at the manual pause", |r| {
        step(r) == Some(3) && r.status.as_ref().and_then(|s| s.observed_generation) == r.metadata.generation
    })
    .await;
    s.wait_replicas(&[("web:1", 2), ("web:3", 2)]).await;
    let events = s.events().await;
    assert!(events.iter().any(|(r, _, _)| r == "NewRevision"), "{events:?}");
    s.command("promote", "p-1").await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.wait_replicas(&[("web:3", 4)]).await;
}

register_test!(70, rollout_deleted_mid_canary);
pub async fn rollout_deleted_mid_canary(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "delete", &["web-stable", "web-canary"]).await;
    s.create(&rollout(2, "web:1", canary_steps())).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.set_image("web:2").await;
    s.wait("the manual pause", |r| step(r) == Some(3)).await;
    s.rollouts.delete("web", &DeleteParams::foreground()).await.expect("delete accepted");
    wait_for("the rollout to be gone", DEADLINE, || async { s.rollouts.get_opt("web").await.ok().and_then(|r| r.is_none().then_some(())) })
        .await;
    wait_for("its ReplicaSets to be collected", DEADLINE, || async { s.replica_sets().await.is_empty().then_some(()) }).await;
}

register_test!(80, controller_killed_at_random_moments_converges);
pub async fn controller_killed_at_random_moments_converges(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "sigkill", &["web-stable", "web-canary"]).await;
    let strategy = json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "steps": [{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {"duration": "1s"}}, {"setWeight": 75}, {"pause": {"duration": "1s"}}]
    }});
    s.create(&rollout(4, "web:1", strategy)).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.set_image("web:2").await;
    // Five kills at moments spread over the canary, each followed by a restart.
    let moments_ms = [150u64, 700, 400, 1200, 300];
    for (i, pause) in moments_ms.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(*pause)).await;
        h.kill("main");
        h.start("main", &[]);
        let _ = i;
    }
    s.wait_phase(RolloutPhase::Healthy).await;
    s.wait_replicas(&[("web:2", 4)]).await;
    let sets = s.replica_sets().await;
    assert_eq!(sets.len(), 2, "one ReplicaSet per revision, none duplicated: {sets:?}");
    let events = s.events().await;
    for (reason, note, count) in &events {
        if reason == "StepCompleted" {
            assert_eq!(*count, 1, "step applied twice: {note}");
        }
    }
    let steps: Vec<&String> = events.iter().filter(|(r, _, _)| r == "StepCompleted").map(|(_, n, _)| n).collect();
    assert!(steps.len() <= 6, "at most one completion per step: {steps:?}");
}

register_test!(180, leader_killed_the_follower_takes_over);
pub async fn leader_killed_the_follower_takes_over(h: Arc<Harness>) {
    h.kill("main");
    h.start("leader-a", &["--leader-election", "--lease-name", "sluice-e2e"]);
    let client = h.stack.kube().await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client, RELEASE_NAMESPACE);
    let holder = |name: &'static str| {
        let leases = leases.clone();
        async move {
            let lease = leases.get("sluice-e2e").await.ok()?;
            (lease.spec?.holder_identity? == name).then_some(())
        }
    };
    wait_for("leader-a to hold the lease", DEADLINE, || holder("leader-a")).await;
    h.start("leader-b", &["--leader-election", "--lease-name", "sluice-e2e"]);
    let s = Scene::new(&h.stack, "leader", &["web-stable", "web-canary"]).await;
    s.create(&rollout(2, "web:1", canary_steps())).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    h.kill("leader-a");
    wait_for("leader-b to take the lease", Duration::from_secs(60), || holder("leader-b")).await;
    s.set_image("web:2").await;
    s.wait("the canary under the new leader", |r| step(r) == Some(3)).await;
    s.command("promote", "p-1").await;
    s.wait_phase(RolloutPhase::Healthy).await;
    h.kill("leader-b");
    h.start("main", &[]);
}

/// An AnalysisTemplate reading `sluice_e2e_error_ratio{namespace=NS}` from the stack's Prometheus.
async fn error_rate_template(h: &Harness, s: &Scene) {
    let api: Api<sluice::api::AnalysisTemplate> = Api::namespaced(s.client.clone(), &s.ns);
    let template: sluice::api::AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "error-rate"},
        "spec": {
            "args": [{"name": "namespace"}],
            "metrics": [{
                "name": "error-rate", "interval": "2s", "count": 2,
                "successCondition": "result < 0.05",
                "provider": {"prometheus": {"address": h.stack.prometheus_url, "query": "sluice_e2e_error_ratio{namespace=\"{{args.namespace}}\"}", "timeout": "5s"}}
            }]
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &template).await.expect("template created");
}

/// Keeps pushing the error ratio until the returned flag is set; Prometheus looks back 5 minutes.
async fn push_error_ratio(h: &Harness, ns: &str, value: f64) {
    let now = jiff::Timestamp::now().as_millisecond();
    h.stack.push_sample("sluice_e2e_error_ratio", &[("namespace", ns)], value, now).await;
}

fn analysis_ref(ns: &str) -> Value {
    json!({"templates": [{"templateName": "error-rate"}], "args": [{"name": "namespace", "value": ns}]})
}

register_test!(140, prometheus_analysis_with_good_numbers_promotes);
pub async fn prometheus_analysis_with_good_numbers_promotes(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "goodnumbers", &["web-stable", "web-canary"]).await;
    error_rate_template(&h, &s).await;
    push_error_ratio(&h, &s.ns, 0.01).await;
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
        "steps": [{"setWeight": 50}, {"analysis": analysis_ref(&s.ns)}]}});
    s.create(&rollout(2, "web:1", strategy)).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.set_image("web:2").await;
    s.wait("the analysis step", |r| step(r) == Some(1)).await;
    push_error_ratio(&h, &s.ns, 0.01).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.wait_replicas(&[("web:2", 2)]).await;
    let runs: Api<sluice::api::AnalysisRun> = Api::namespaced(s.client.clone(), &s.ns);
    let run = &runs.list(&ListParams::default()).await.unwrap().items[0];
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, sluice::api::AnalysisPhase::Successful);
    assert_eq!(status.metric_results[0].measurements[0].value.as_deref(), Some("0.01"), "the measured value is kept in the run");
}

register_test!(150, prometheus_error_rate_turning_bad_rolls_back);
pub async fn prometheus_error_rate_turning_bad_rolls_back(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "badnumbers", &["web-stable", "web-canary"]).await;
    error_rate_template(&h, &s).await;
    push_error_ratio(&h, &s.ns, 0.01).await;
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
        "analysis": analysis_ref(&s.ns),
        "steps": [{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {}}]}});
    s.create(&rollout(4, "web:1", strategy)).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.set_image("web:2").await;
    s.wait("step 2 reached", |r| step(r).is_some_and(|i| i >= 3)).await;
    push_error_ratio(&h, &s.ns, 0.3).await;
    let degraded = s.wait_phase(RolloutPhase::Degraded).await;
    let text = message(&degraded);
    assert!(text.contains("metric error-rate") && text.contains("0.3"), "{text}");
    s.wait_replicas(&[("web:1", 4)]).await;
}

register_test!(160, blue_green_failing_pre_promotion_analysis_is_never_promoted);
pub async fn blue_green_failing_pre_promotion_analysis_is_never_promoted(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "bgfail", &["web-active", "web-preview"]).await;
    error_rate_template(&h, &s).await;
    let strategy = json!({"blueGreen": {"activeService": "web-active", "previewService": "web-preview",
        "prePromotionAnalysis": analysis_ref(&s.ns), "scaleDownDelaySeconds": 0}});
    s.create(&rollout(2, "web:1", strategy)).await;
    let first = s.wait_phase(RolloutPhase::Healthy).await;
    let blue = first.status.as_ref().unwrap().stable_revision.clone();
    push_error_ratio(&h, &s.ns, 0.5).await;
    s.set_image("web:2").await;
    let degraded = s.wait_phase(RolloutPhase::Degraded).await;
    assert!(message(&degraded).contains("pre-promotion"), "{}", message(&degraded));
    assert_eq!(s.selector("web-active").await, blue, "production never left blue");
    assert_eq!(degraded.status.as_ref().unwrap().stable_revision, blue);
    s.wait_replicas(&[("web:1", 2)]).await;
}

register_test!(170, blue_green_promote_runs_post_promotion_analysis_promote_full_skips_it);
/// A blue/green approved by a person: `promote` switches and post-promotion analysis still
/// decides (bad numbers send production back); `promote --full` switches and skips it.
pub async fn blue_green_promote_runs_post_promotion_analysis_promote_full_skips_it(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "bgpost", &["web-active", "web-preview"]).await;
    error_rate_template(&h, &s).await;
    push_error_ratio(&h, &s.ns, 0.5).await;
    let strategy = json!({"blueGreen": {"activeService": "web-active", "previewService": "web-preview",
        "autoPromotionEnabled": false, "postPromotionAnalysis": analysis_ref(&s.ns), "scaleDownDelaySeconds": 0}});
    s.create(&rollout(2, "web:1", strategy)).await;
    let first = s.wait_phase(RolloutPhase::Healthy).await;
    let blue = first.status.as_ref().unwrap().stable_revision.clone();

    s.set_image("web:2").await;
    s.wait_phase(RolloutPhase::Paused).await;
    s.command("promote", "p-1").await;
    let degraded = s.wait_phase(RolloutPhase::Degraded).await;
    assert!(message(&degraded).contains("post-promotion"), "{}", message(&degraded));
    assert_eq!(s.selector("web-active").await, blue, "production is back on blue");
    assert_eq!(degraded.status.as_ref().unwrap().stable_revision, blue);

    s.set_image("web:3").await;
    s.wait("web:3 waiting for approval", |r| {
        status_phase(r) == Some(RolloutPhase::Paused) && r.status.as_ref().is_some_and(|st| st.update_revision != blue && !st.abort)
    })
    .await;
    s.promote_full("p-2").await;
    let healthy = s.wait_phase(RolloutPhase::Healthy).await;
    let status = healthy.status.as_ref().unwrap();
    assert_ne!(status.stable_revision, blue, "promoted despite the bad numbers: --full skips post-promotion analysis");
    assert_eq!(s.selector("web-active").await, status.stable_revision);
    s.wait_replicas(&[("web:3", 2)]).await;
}

register_test!(175, blue_green_approval_before_the_preview_holds_its_pods_until_promoted);
/// `approveBeforePreview` (Flagger's confirm-rollout): the new revision has no pod until a person
/// promotes; then it is previewed and, with auto-promotion, switched by itself.
pub async fn blue_green_approval_before_the_preview_holds_its_pods_until_promoted(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "bgapprove", &["web-active", "web-preview"]).await;
    let strategy = json!({"blueGreen": {"activeService": "web-active", "previewService": "web-preview",
        "approveBeforePreview": true, "scaleDownDelaySeconds": 0}});
    s.create(&rollout(2, "web:1", strategy)).await;
    let first = s.wait_phase(RolloutPhase::Healthy).await;
    let blue = first.status.as_ref().unwrap().stable_revision.clone();

    s.set_image("web:2").await;
    let waiting = s
        .wait("the approval before the preview", |r| {
            r.status.as_ref().is_some_and(|st| st.pause_conditions.iter().any(|p| p.reason == sluice::api::PauseReason::PreviewApproval))
        })
        .await;
    assert_eq!(status_phase(&waiting), Some(RolloutPhase::Paused));
    assert!(message(&waiting).contains("waits for approval before its preview"), "{}", message(&waiting));
    // Another pass (a resync of the Rollout) must not start the preview either.
    s.patch(json!({"metadata": {"annotations": {"e2e/nudge": "1"}}})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.replica_sets().await.get("web:2").map_or(0, |(desired, _)| *desired), 0, "no preview pod before the approval");

    s.command("promote", "approve-1").await;
    let healthy = s.wait_phase(RolloutPhase::Healthy).await;
    let status = healthy.status.as_ref().unwrap();
    assert_ne!(status.stable_revision, blue, "previewed, then promoted by itself");
    assert_eq!(s.selector("web-active").await, status.stable_revision);
    s.wait_replicas(&[("web:2", 2)]).await;
    let answer = status.command_results.as_ref().and_then(|c| c.promote.as_ref()).map(|a| a.message.clone()).unwrap_or_default();
    assert!(answer.contains("is scaled up for its preview"), "the promote's answer: {answer}");
}

/// A load balancer in moto whose listener forwards to two target groups (stable 100, canary 0),
/// each with registered (healthy) targets. Returns (listener, stable, canary).
async fn listener_canary_weight(elb: &aws_sdk_elasticloadbalancingv2::Client, listener: &str, canary: &str) -> i32 {
    crate::support::alb::listener_weights(elb, listener, canary, canary).await.0
}

/// Every distinct value `read` returns, in order, sampled every 50 ms until the returned guard
/// is stopped: the weights a listener went through.
pub(crate) struct Recorder<T> {
    seen: Arc<std::sync::Mutex<Vec<T>>>,
    task: tokio::task::JoinHandle<()>,
}

impl<T: Clone + PartialEq + Send + 'static> Recorder<T> {
    fn start<F, Fut>(read: F) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send,
    {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let value = read().await;
                {
                    let mut seen = sink.lock().unwrap();
                    if seen.last() != Some(&value) {
                        seen.push(value);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Recorder { seen, task }
    }

    pub(crate) fn stop(self) -> Vec<T> {
        self.task.abort();
        self.seen.lock().unwrap().clone()
    }
}

/// The target group the listener rules matching `header` forward to (none when no such rule).
async fn header_rule_targets(elb: &aws_sdk_elasticloadbalancingv2::Client, listener: &str, header: &str) -> Vec<String> {
    let rules = elb.describe_rules().listener_arn(listener).send().await.unwrap();
    rules
        .rules()
        .iter()
        .filter(|rule| {
            rule.conditions()
                .iter()
                .any(|c| c.http_header_config().and_then(|h| h.http_header_name()).is_some_and(|name| name.eq_ignore_ascii_case(header)))
        })
        .flat_map(|rule| rule.actions().iter().filter_map(|a| a.forward_config()).flat_map(|f| f.target_groups()))
        .filter_map(|t| t.target_group_arn().map(String::from))
        .collect()
}

/// Routes `rollout` through `listener`'s weights between the two target groups.
pub(crate) fn behind_alb(rollout: &mut Rollout, listener: &str, stable: &str, canary: &str) {
    rollout.spec.traffic = Some(
        serde_json::from_value(json!({"alb": {"listenerArn": listener, "stableTargetGroupArn": stable, "canaryTargetGroupArn": canary}}))
            .unwrap(),
    );
}

register_test!(90, canary_with_alb_weights);
pub async fn canary_with_alb_weights(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "alb", &["web-stable", "web-canary"]).await;
    let name = format!("e2e-{}", std::process::id());
    let (elb, listener, stable, canary) = h.stack.balancer(&name).await;
    s.allow_aws(&[&listener, &stable, &canary]).await;
    let _targets = s.bind_target_groups(&elb, &stable, &canary, REGISTRATION_LAG);
    // Header routes per step: testers by an exact header from the start, a beta by a prefix
    // from step 3, the testers' route removed at step 4.
    let testers = json!({"name": "testers", "match": [{"headerName": "x-canary", "headerValue": {"exact": "always"}}]});
    let beta = json!({"name": "beta", "match": [{"headerName": "x-beta", "headerValue": {"prefix": "v2"}}]});
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
        "steps": [{"setHeaderRoute": testers}, {"setWeight": 20}, {"pause": {"duration": "3s"}}, {"setHeaderRoute": beta},
            {"setHeaderRoute": {"name": "testers"}}, {"setWeight": 60}, {"pause": {}}]}});
    let mut r = rollout(5, "web:1", strategy);
    behind_alb(&mut r, &listener, &stable, &canary);
    s.create(&r).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    assert!(header_rule_targets(&elb, &listener, "x-canary").await.is_empty(), "no header route at rest");
    let weights = {
        let (elb, listener, canary) = (elb.clone(), listener.clone(), canary.clone());
        Recorder::start(move || {
            let (elb, listener, canary) = (elb.clone(), listener.clone(), canary.clone());
            async move { listener_canary_weight(&elb, &listener, &canary).await }
        })
    };
    s.set_image("web:2").await;
    wait_for("the testers' header route to the canary", DEADLINE, || async {
        (header_rule_targets(&elb, &listener, "x-canary").await == vec![canary.clone()]).then_some(())
    })
    .await;
    let paused =
        s.wait("the manual pause at 60%", |r| step(r) == Some(6) && r.status.as_ref().and_then(|s| s.verified_weight) == Some(60)).await;
    assert_eq!(listener_canary_weight(&elb, &listener, &canary).await, 60, "the listener's canary weight read back from moto");
    assert_eq!(paused.status.as_ref().unwrap().canary_weight, 60);
    assert!(header_rule_targets(&elb, &listener, "x-canary").await.is_empty(), "the testers' route removed by its step");
    assert_eq!(header_rule_targets(&elb, &listener, "x-beta").await, vec![canary.clone()], "requests of the beta reach the canary");
    s.wait_replicas(&[("web:1", 5), ("web:2", 3)]).await;
    s.command("promote", "p-1").await;
    s.wait_phase(RolloutPhase::Healthy).await;
    assert_eq!(
        listener_canary_weight(&elb, &listener, &canary).await,
        0,
        "all traffic back on the stable target group, now the new revision"
    );
    s.wait_replicas(&[("web:2", 5)]).await;
    // Promotion: all traffic to the canary target group, the stable Service moves to the new
    // revision, then all traffic back to the stable target group.
    // Sampled every 50 ms, a weight held for less (100 % lasts only until the stable Service has
    // moved) may be missed; what is seen must be the planned weights, in order.
    let seen = weights.stop();
    let planned = [0, 20, 60, 100, 0];
    let mut rest = planned.iter();
    assert!(seen.iter().all(|w| rest.any(|p| p == w)), "the listener went only through the planned weights, in order: {seen:?}");
    assert!(seen.contains(&20) && seen.contains(&60) && seen.last() == Some(&0), "{seen:?}");
    assert!(header_rule_targets(&elb, &listener, "x-beta").await.is_empty(), "the header routes are removed once promoted");
    let events = s.events().await;
    assert!(events.iter().any(|(r, _, _)| r == "WeightSet"), "{events:?}");
}

register_test!(95, an_aborted_canary_kept_by_minus_one_runs_behind_the_alb_until_retried);
/// `abortScaleDownDelaySeconds: -1` (Argo's 0): the abort sends all traffic home at once, and
/// the canary's pods stay, with no scale-down scheduled, until a retry takes them up again.
pub async fn an_aborted_canary_kept_by_minus_one_runs_behind_the_alb_until_retried(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "keepaborted", &["web-stable", "web-canary"]).await;
    let name = format!("e2e-keep-{}", std::process::id());
    let (elb, listener, stable, canary) = h.stack.balancer(&name).await;
    s.allow_aws(&[&listener, &stable, &canary]).await;
    let _targets = s.bind_target_groups(&elb, &stable, &canary, REGISTRATION_LAG);
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
        "abortScaleDownDelaySeconds": -1, "scaleDownDelaySeconds": 0, "steps": [{"setWeight": 50}, {"pause": {}}]}});
    let mut r = rollout(2, "web:1", strategy);
    behind_alb(&mut r, &listener, &stable, &canary);
    s.create(&r).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.set_image("web:2").await;
    s.wait("the manual pause at 50%", |r| step(r) == Some(1) && r.status.as_ref().and_then(|s| s.verified_weight) == Some(50)).await;
    s.wait_replicas(&[("web:1", 2), ("web:2", 1)]).await;

    s.command("abort", "a-1").await;
    let degraded = s.wait_phase(RolloutPhase::Degraded).await;
    assert!(message(&degraded).contains("keeps running (abortScaleDownDelaySeconds: -1)"), "{}", message(&degraded));
    assert_eq!(listener_canary_weight(&elb, &listener, &canary).await, 0, "all traffic home at once");
    assert!(degraded.status.as_ref().unwrap().scale_downs.is_empty(), "no scale-down is scheduled: {:?}", degraded.status);
    // Passes go on (a resync); the aborted canary keeps its pod, where 0 or 30 would take it.
    s.patch(json!({"metadata": {"annotations": {"e2e/nudge": "1"}}})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.replica_sets().await.get("web:2"), Some(&(1, 1)), "the aborted canary still runs");

    s.command("retry", "r-1").await;
    s.wait("the manual pause again", |r| {
        step(r) == Some(1) && r.status.as_ref().is_some_and(|st| !st.abort && st.verified_weight == Some(50))
    })
    .await;
    s.command("promote", "p-1").await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.wait_replicas(&[("web:2", 2)]).await;
}

register_test!(100, the_scale_subresource_holds_an_autoscaler_steady_across_an_alb_canary);
/// What an HorizontalPodAutoscaler sees and does through the scale subresource during a 50 % ALB
/// canary, where the stable stays at full size: it reads the size it asked for (not the pods of
/// both revisions), and a size it writes resizes both revisions in proportion. (The stack has no
/// metrics API for a real HPA; the test reads and writes /scale as the HPA controller does.)
pub async fn the_scale_subresource_holds_an_autoscaler_steady_across_an_alb_canary(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "scale", &["web-stable", "web-canary"]).await;
    let name = format!("e2e-scale-{}", std::process::id());
    let (elb, listener, stable, canary) = h.stack.balancer(&name).await;
    s.allow_aws(&[&listener, &stable, &canary]).await;
    let _targets = s.bind_target_groups(&elb, &stable, &canary, REGISTRATION_LAG);
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
        "steps": [{"setWeight": 50}, {"pause": {}}]}});
    let mut r = rollout(4, "web:1", strategy);
    behind_alb(&mut r, &listener, &stable, &canary);
    s.create(&r).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.set_image("web:2").await;
    s.wait("the pause at 50%", |r| step(r) == Some(1) && r.status.as_ref().and_then(|s| s.verified_weight) == Some(50)).await;
    s.wait_replicas(&[("web:1", 4), ("web:2", 2)]).await;
    let at_pause = s.wait("the status to count both revisions", |r| r.status.as_ref().is_some_and(|s| s.replicas == 6)).await;
    let scale = s.rollouts.get_scale("web").await.expect("scale subresource");
    let status = scale.status.expect("scale status");
    assert_eq!(status.replicas, 4, "the autoscaler reads the size it asked for, not the 6 pods of both revisions");
    assert_eq!(status.selector.as_deref(), at_pause.status.as_ref().and_then(|s| s.selector.as_deref()), "and the pods' selector");

    // The autoscaler writes a new size: both revisions grow in proportion, the weight holds.
    let patch = json!({"spec": {"replicas": 8}});
    s.rollouts.patch_scale("web", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("scale written");
    s.wait_replicas(&[("web:1", 8), ("web:2", 4)]).await;
    wait_for("the scale subresource to report 8", DEADLINE, || async {
        let scale = s.rollouts.get_scale("web").await.ok()?;
        (scale.status?.replicas == 8).then_some(())
    })
    .await;
    let resized = s.rollouts.get("web").await.expect("rollout read");
    assert_eq!(resized.status.as_ref().and_then(|s| s.verified_weight), Some(50), "the weight stays at 50%");
    s.command("promote", "p-1").await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.wait_replicas(&[("web:2", 8)]).await;
}

register_test!(105, restart_replaces_every_old_pod_without_dropping_below_the_replicas);
/// `kubectl sluice restart` (spec.restartAt): every pod that started before it is replaced by
/// eviction, one at a time beside one extra pod, so the ready pods never drop below 3; then the
/// status records the restart done and the extra pod goes.
pub async fn restart_replaces_every_old_pod_without_dropping_below_the_replicas(h: Arc<Harness>) {
    let s = Arc::new(Scene::new(&h.stack, "restart", &["web-stable", "web-canary"]).await);
    s.create(&rollout(3, "web:1", canary_steps())).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.wait_replicas(&[("web:1", 3)]).await;
    let before = s.pod_names().await;
    assert_eq!(before.len(), 3);
    let ready = {
        let s = s.clone();
        Recorder::start(move || {
            let s = s.clone();
            async move { s.ready_pods().await }
        })
    };
    // What `kubectl sluice restart` writes (to the second, as the API server keeps times),
    // after the pods' own creation second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = jiff::Timestamp::now().as_second();
    let at = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::from_second(second).unwrap());
    s.patch(json!({"spec": {"restartAt": at}})).await;
    let done = s.wait("the restart recorded done", |r| r.status.as_ref().and_then(|s| s.restarted_at.as_ref()) == Some(&at)).await;
    assert_eq!(status_phase(&done), Some(RolloutPhase::Healthy));
    s.wait_replicas(&[("web:1", 3)]).await;
    let seen = ready.stop();
    let after = s.pod_names().await;
    assert!(after.iter().all(|pod| !before.contains(pod)), "every old pod is replaced: before {before:?}, after {after:?}");
    assert!(seen.iter().all(|ready| *ready >= 3), "ready pods during the restart: {seen:?}");
    assert!(seen.contains(&4), "the extra pod ran: {seen:?}");
}

register_test!(106, a_rollback_inside_the_window_is_fast_tracked_onto_the_pods_still_running);
/// `rollbackWindow`: web:2 is promoted behind an ALB, and web:1 is asked for again while its
/// ReplicaSet is inside the scale-down delay: web:1 is stable again with no steps, no promote and
/// no new pod, and its NewRevision event says it was fast-tracked.
pub async fn a_rollback_inside_the_window_is_fast_tracked_onto_the_pods_still_running(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "window", &["web-stable", "web-canary"]).await;
    let name = format!("e2e-window-{}", std::process::id());
    let (elb, listener, stable, canary) = h.stack.balancer(&name).await;
    s.allow_aws(&[&listener, &stable, &canary]).await;
    let _targets = s.bind_target_groups(&elb, &stable, &canary, REGISTRATION_LAG);
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary", "scaleDownDelaySeconds": 300,
        "steps": [{"setWeight": 50}, {"pause": {}}]}});
    let mut r = rollout(3, "web:1", strategy);
    behind_alb(&mut r, &listener, &stable, &canary);
    r.spec.rollback_window = Some(sluice::api::RollbackWindow { revisions: 1 });
    s.create(&r).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    let first = s.rollouts.get("web").await.unwrap().status.and_then(|s| s.stable_revision).unwrap();
    s.set_image("web:2").await;
    s.wait("the manual pause", |r| step(r) == Some(1)).await;
    s.command("promote", "p-1").await;
    let promoted = s
        .wait("web:2 stable", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.phase == Some(RolloutPhase::Healthy) && s.stable_revision.as_deref() != Some(first.as_str()))
        })
        .await;
    assert_eq!(promoted.status.as_ref().unwrap().stable_history, vec![first.clone()]);
    s.wait_replicas(&[("web:1", 3), ("web:2", 3)]).await;
    let pods_before = s.pod_names().await;

    s.set_image("web:1").await;
    let back = s
        .wait("web:1 stable again", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.phase == Some(RolloutPhase::Healthy) && s.stable_revision.as_deref() == Some(first.as_str()))
        })
        .await;
    assert!(!back.status.as_ref().unwrap().fast_tracked, "done: at rest again");
    let events = s.events().await;
    assert!(
        events.iter().any(|(reason, note, _)| reason == "NewRevision" && note.contains("fast-tracked to 100% with no steps or analysis")),
        "{events:?}"
    );
    let web1_pods: Vec<&String> = pods_before.iter().filter(|p| p.starts_with(&format!("web-{first}"))).collect();
    let pods_after = s.pod_names().await;
    assert_eq!(web1_pods.len(), 3);
    assert!(web1_pods.iter().all(|p| pods_after.contains(p)), "web:1's own pods took the traffic back: {pods_before:?} -> {pods_after:?}");
}

register_test!(107, max_unavailable_lets_a_replica_ratio_canary_move_without_extra_pods);
/// `maxSurge: 0, maxUnavailable: 1` on a replica-ratio canary of 4: the stable gives up a pod
/// before the canary's is ready, so there are never more than 4 pods asked for, and never fewer
/// than 3 ready.
pub async fn max_unavailable_lets_a_replica_ratio_canary_move_without_extra_pods(h: Arc<Harness>) {
    let s = Arc::new(Scene::new(&h.stack, "unavailable", &["web-stable", "web-canary"]).await);
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary", "maxSurge": 0, "maxUnavailable": 1,
        "steps": [{"setWeight": 50}, {"pause": {}}]}});
    s.create(&rollout(4, "web:1", strategy)).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.wait_replicas(&[("web:1", 4)]).await;
    let counts = {
        let s = s.clone();
        Recorder::start(move || {
            let s = s.clone();
            async move {
                let asked: i32 = s.replica_sets().await.values().map(|(desired, _)| desired).sum();
                (asked, s.ready_pods().await)
            }
        })
    };
    s.set_image("web:2").await;
    s.wait("the pause at 50%", |r| step(r) == Some(1)).await;
    s.wait_replicas(&[("web:1", 2), ("web:2", 2)]).await;
    let seen = counts.stop();
    assert!(seen.iter().all(|(asked, _)| *asked <= 4), "no pod beyond the 4 replicas: {seen:?}");
    assert!(seen.iter().all(|(_, ready)| *ready >= 3), "at most one missing: {seen:?}");
    // The allowance was used: a stable pod went before the canary's was ready, so the stable
    // stepped 4 → 3 → 2, two writes of its spec after the one that made it (generation 3). The
    // sampler may see the 3 too, but kwok makes pods ready faster than it samples.
    let replica_sets: Api<ReplicaSet> = Api::namespaced(s.client.clone(), &s.ns);
    let stable_writes = replica_sets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .find(|rs| {
            rs.spec
                .as_ref()
                .and_then(|sp| sp.template.as_ref())
                .and_then(|t| t.spec.as_ref())
                .and_then(|p| p.containers[0].image.as_deref())
                == Some("web:1")
        })
        .and_then(|rs| rs.metadata.generation)
        .unwrap_or(0);
    let sampled = seen.iter().any(|(asked, ready)| *asked == 3 || *ready == 3);
    assert!(sampled || stable_writes >= 3, "the stable gave a pod up first: {seen:?}, stable generation {stable_writes}");
}

impl Scene {
    /// Names of the pods not being deleted.
    async fn pod_names(&self) -> Vec<String> {
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let pods = api.list(&ListParams::default()).await.unwrap().items;
        pods.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).filter_map(|p| p.metadata.name).collect()
    }
}

/// An ECS service with the EXTERNAL deployment controller behind an ALB listener that forwards
/// to two target groups (blue 100, green 0). moto runs no tasks: the agent plays ECS, starting
/// each task set's tasks and registering their IPs after [`REGISTRATION_LAG`].
pub(crate) struct EcsWorld {
    pub(crate) elb: aws_sdk_elasticloadbalancingv2::Client,
    pub(crate) ecs: aws_sdk_ecs::Client,
    pub(crate) listener: String,
    pub(crate) blue: String,
    pub(crate) green: String,
    pub(crate) cluster: String,
    /// The ECS service's ARN, as ECS reports it.
    pub(crate) service: String,
    pub(crate) subnet: String,
    pub(crate) group: String,
    _agent: EcsAgent,
}

impl EcsWorld {
    pub(crate) async fn new(h: &Harness, name: &str) -> EcsWorld {
        use aws_sdk_ecs::types::{DeploymentController, DeploymentControllerType};
        let (elb, listener, blue, green) = h.stack.balancer(name).await;
        let vpc = xml_value(&h.stack.ec2(&[("Action", "CreateVpc"), ("CidrBlock", "10.8.0.0/16")]).await, "<vpcId>", "</vpcId>");
        h.stack.ec2(&[("Action", "ModifyVpcAttribute"), ("VpcId", &vpc), ("EnableDnsHostnames.Value", "true")]).await;
        let subnet = xml_value(
            &h.stack
                .ec2(&[("Action", "CreateSubnet"), ("VpcId", &vpc), ("CidrBlock", "10.8.1.0/24"), ("AvailabilityZone", "us-east-1a")])
                .await,
            "<subnetId>",
            "</subnetId>",
        );
        let group = xml_value(
            &h.stack.ec2(&[("Action", "CreateSecurityGroup"), ("GroupName", name), ("GroupDescription", name), ("VpcId", &vpc)]).await,
            "<groupId>",
            "</groupId>",
        );
        let ecs = aws_sdk_ecs::Client::new(&h.stack.aws());
        ecs.create_cluster().cluster_name(name).send().await.unwrap();
        let controller = DeploymentController::builder().r#type(DeploymentControllerType::External).build().unwrap();
        let created = ecs
            .create_service()
            .cluster(name)
            .service_name("orders")
            .desired_count(4)
            .deployment_controller(controller)
            .send()
            .await
            .unwrap();
        let service = created.service().and_then(|s| s.service_arn()).expect("a service ARN").to_string();
        let _agent = EcsAgent::run(&h.stack, name, "orders", REGISTRATION_LAG).await;
        EcsWorld { elb, ecs, listener, blue, green, cluster: name.to_string(), service, subnet, group, _agent }
    }

    pub(crate) async fn task_definition(&self, image: &str) -> String {
        use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, NetworkMode, PortMapping};
        let container = ContainerDefinition::builder()
            .name("app")
            .image(image)
            .memory(256)
            .port_mappings(PortMapping::builder().container_port(8080).build())
            .build();
        let registered = self
            .ecs
            .register_task_definition()
            .family("orders")
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .cpu("256")
            .memory("512")
            .container_definitions(container)
            .send()
            .await
            .unwrap();
        registered.task_definition().unwrap().task_definition_arn().unwrap().to_string()
    }

    pub(crate) fn rollout(&self, task_definition: &str) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
            "spec": {
                "workload": {"ecs": {
                    "cluster": self.cluster, "service": "orders", "taskDefinition": task_definition, "desiredCount": 4,
                    "launchType": "FARGATE",
                    "networkConfiguration": {"subnets": [self.subnet], "securityGroups": [self.group]},
                    "loadBalancer": {"containerName": "app", "containerPort": 8080}
                }},
                "traffic": {"alb": {"listenerArn": self.listener, "stableTargetGroupArn": self.blue, "canaryTargetGroupArn": self.green}},
                "strategy": {"canary": {"scaleDownDelaySeconds": 0, "abortScaleDownDelaySeconds": 0,
                    "steps": [{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {}}]}}
            }
        }))
        .unwrap()
    }

    /// Allows the scene's namespace the listener, the target groups, the service and `more`.
    pub(crate) async fn allow_in(&self, s: &Scene, more: &[&str]) {
        let mut arns = vec![self.listener.as_str(), &self.blue, &self.green, &self.service];
        arns.extend_from_slice(more);
        s.allow_aws(&arns).await;
    }

    /// Weight of each target group on the listener, from one read.
    pub(crate) async fn weights(&self) -> (i32, i32) {
        crate::support::alb::listener_weights(&self.elb, &self.listener, &self.blue, &self.green).await
    }

    /// Task definitions of the service's task sets.
    pub(crate) async fn task_sets(&self) -> Vec<String> {
        let described = self.ecs.describe_task_sets().cluster(&self.cluster).service("orders").send().await.unwrap();
        let mut defs: Vec<String> = described.task_sets().iter().filter_map(|t| t.task_definition().map(String::from)).collect();
        defs.sort();
        defs
    }

    pub(crate) async fn set_task_definition(s: &Scene, arn: &str) {
        let patch = json!({"spec": {"workload": {"ecs": {"taskDefinition": arn}}}});
        s.rollouts.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("task definition set");
    }
}

register_test!(110, ecs_canary_promoted_then_aborted);
pub async fn ecs_canary_promoted_then_aborted(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "ecs", &[]).await;
    let world = EcsWorld::new(&h, &format!("ecs-{}", std::process::id())).await;
    world.allow_in(&s, &[]).await;
    let v1 = world.task_definition("orders:1").await;
    s.create(&world.rollout(&v1)).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    assert_eq!(world.task_sets().await, vec![v1.clone()]);
    assert_eq!(world.weights().await, (100, 0), "the first task set serves on blue");

    let v2 = world.task_definition("orders:2").await;
    EcsWorld::set_task_definition(&s, &v2).await;
    s.wait("the manual pause at 50%", |r| step(r) == Some(3) && r.status.as_ref().and_then(|s| s.verified_weight) == Some(50)).await;
    assert_eq!(world.weights().await, (50, 50));
    let mut both = vec![v1.clone(), v2.clone()];
    both.sort();
    assert_eq!(world.task_sets().await, both, "one task set per revision");
    s.command("promote", "p-1").await;
    s.wait_phase(RolloutPhase::Healthy).await;
    assert_eq!(world.weights().await, (0, 100), "green serves the new stable");
    wait_for("the old task set deleted", DEADLINE, || async { (world.task_sets().await == vec![v2.clone()]).then_some(()) }).await;

    let v3 = world.task_definition("orders:3").await;
    EcsWorld::set_task_definition(&s, &v3).await;
    s.wait("v3 at the manual pause", |r| step(r) == Some(3) && r.status.as_ref().and_then(|s| s.verified_weight) == Some(50)).await;
    assert_eq!(world.weights().await, (50, 50), "the canary rides the blue target group now");
    s.command("abort", "a-1").await;
    s.wait_phase(RolloutPhase::Degraded).await;
    assert_eq!(world.weights().await, (0, 100), "all traffic back on the stable task set");
    wait_for("the aborted task set deleted", DEADLINE, || async { (world.task_sets().await == vec![v2.clone()]).then_some(()) }).await;
}

register_test!(115, ecs_desired_count_set_outside_sluice_is_kept_and_task_sets_follow_it);
/// Service Auto Scaling (here: an UpdateService call outside Sluice) raises the service's
/// desiredCount: Sluice keeps it, sizes the canary against it and leaves the task sets as
/// percentages of it; a desiredCount changed in the Rollout is set once.
pub async fn ecs_desired_count_set_outside_sluice_is_kept_and_task_sets_follow_it(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "ecs-count", &[]).await;
    let world = EcsWorld::new(&h, &format!("ecs-count-{}", std::process::id())).await;
    world.allow_in(&s, &[]).await;
    let v1 = world.task_definition("orders:1").await;
    s.create(&world.rollout(&v1)).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    world.ecs.update_service().cluster(&world.cluster).service("orders").desired_count(6).send().await.expect("scaled outside Sluice");

    let v2 = world.task_definition("orders:2").await;
    EcsWorld::set_task_definition(&s, &v2).await;
    let paused =
        s.wait("the manual pause at 50%", |r| step(r) == Some(3) && r.status.as_ref().and_then(|s| s.verified_weight) == Some(50)).await;
    assert_eq!(world.desired_count().await, 6, "the count set outside Sluice is kept");
    assert_eq!(paused.status.as_ref().map(|s| s.desired_replicas), Some(6), "the rollout is sized against it");
    let mut scales = world.scales().await;
    scales.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert_eq!(scales, vec![(v2.clone(), 50.0), (v1.clone(), 100.0)], "task sets stay percentages of the service's count");

    // The person changes the Rollout's own desiredCount: that is set, once.
    let patch = json!({"spec": {"workload": {"ecs": {"desiredCount": 8}}}});
    s.rollouts.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("desiredCount changed");
    wait_for("the Rollout's new desiredCount on the service", DEADLINE, || async { (world.desired_count().await == 8).then_some(()) })
        .await;
    s.command("promote", "p-1").await;
    s.wait_phase(RolloutPhase::Healthy).await;
    assert_eq!(world.desired_count().await, 8);
}

impl EcsWorld {
    async fn desired_count(&self) -> i32 {
        let described = self.ecs.describe_services().cluster(&self.cluster).services("orders").send().await.unwrap();
        described.services()[0].desired_count()
    }

    /// (task definition, scale in percent) of each task set.
    async fn scales(&self) -> Vec<(String, f64)> {
        let described = self.ecs.describe_task_sets().cluster(&self.cluster).service("orders").send().await.unwrap();
        described
            .task_sets()
            .iter()
            .map(|t| (t.task_definition().unwrap_or_default().to_string(), t.scale().map_or(0.0, |s| s.value())))
            .collect()
    }

    /// Records the production listener's (blue, green) weights as they change.
    pub(crate) fn record_weights(world: &Arc<EcsWorld>) -> Recorder<(i32, i32)> {
        let world = world.clone();
        Recorder::start(move || {
            let world = world.clone();
            async move { world.weights().await }
        })
    }

    /// A second listener (port 8080) forwarding to the same two target groups: the test listener.
    pub(crate) async fn test_listener(&self) -> String {
        use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, ForwardActionConfig, ProtocolEnum, TargetGroupTuple};
        let described = self.elb.describe_listeners().listener_arns(&self.listener).send().await.unwrap();
        let balancer = described.listeners()[0].load_balancer_arn().unwrap().to_string();
        let tuples =
            [(&self.blue, 100), (&self.green, 0)].map(|(arn, w)| TargetGroupTuple::builder().target_group_arn(arn).weight(w).build());
        let forward = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(ForwardActionConfig::builder().set_target_groups(Some(tuples.to_vec())).build())
            .build();
        let created = self
            .elb
            .create_listener()
            .load_balancer_arn(balancer)
            .protocol(ProtocolEnum::Http)
            .port(8080)
            .default_actions(forward)
            .send()
            .await
            .unwrap();
        created.listeners()[0].listener_arn().unwrap().to_string()
    }

    /// The weights of blue and green on the given listener.
    pub(crate) async fn weights_on(&self, listener: &str) -> (i32, i32) {
        crate::support::alb::listener_weights(&self.elb, listener, &self.blue, &self.green).await
    }
}

register_test!(120, ecs_blue_green_previews_on_the_test_listener);
pub async fn ecs_blue_green_previews_on_the_test_listener(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "ecsbg", &[]).await;
    let world = Arc::new(EcsWorld::new(&h, &format!("ecsbg-{}", std::process::id())).await);
    let test_listener = world.test_listener().await;
    world.allow_in(&s, &[&test_listener]).await;
    let v1 = world.task_definition("orders:1").await;
    let mut rollout = world.rollout(&v1);
    let spec = &mut rollout.spec;
    spec.traffic.as_mut().unwrap().alb.as_mut().unwrap().test_listener_arn = Some(test_listener.clone());
    spec.strategy = serde_json::from_value(
        json!({"blueGreen": {"activeService": "orders", "autoPromotionEnabled": false, "scaleDownDelaySeconds": 0}}),
    )
    .unwrap();
    s.create(&rollout).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    assert_eq!(world.weights().await, (100, 0));
    assert_eq!(world.weights_on(&test_listener).await, (100, 0), "at rest the test listener reaches the stable task set");

    let production = EcsWorld::record_weights(&world);
    let v2 = world.task_definition("orders:2").await;
    EcsWorld::set_task_definition(&s, &v2).await;
    s.wait("the preview waiting for promotion", |r| status_phase(r) == Some(RolloutPhase::Paused)).await;
    let mut both = vec![v1.clone(), v2.clone()];
    both.sort();
    assert_eq!(world.task_sets().await, both, "the new task set runs beside the old one");
    wait_for("the test listener to reach the new task set", DEADLINE, || async {
        (world.weights_on(&test_listener).await == (0, 100)).then_some(())
    })
    .await;
    assert_eq!(world.weights().await, (100, 0), "production stays on blue during the preview");

    s.command("promote", "bg-1").await;
    s.wait_phase(RolloutPhase::Healthy).await;
    wait_for("the old task set deleted", DEADLINE, || async { (world.task_sets().await == vec![v2.clone()]).then_some(()) }).await;
    assert_eq!(production.stop(), vec![(100, 0), (0, 100)], "production switched in one step");
    assert_eq!(world.weights_on(&test_listener).await, (0, 100), "the test listener follows the new stable task set");
}

register_test!(130, ecs_canary_under_30_percent_aws_faults);
pub async fn ecs_canary_under_30_percent_aws_faults(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "faults", &[]).await;
    let world = Arc::new(EcsWorld::new(&h, &format!("faults-{}", std::process::id())).await);
    world.allow_in(&s, &[]).await;
    let v1 = world.task_definition("orders:1").await;
    let mut rollout = world.rollout(&v1);
    // Timed pauses only: the first canary runs to the end by itself.
    rollout.spec.strategy.canary.as_mut().unwrap().steps =
        serde_json::from_value(json!([{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {"duration": "1s"}}]))
            .unwrap();
    s.create(&rollout).await;
    s.wait_phase(RolloutPhase::Healthy).await;

    // From here on, 30 % of ELBv2 and ECS calls are throttled or fail with a 5xx.
    let proxy = crate::support::aws_proxy::AwsProxy::start(&h.stack.aws_endpoint, 0.3, 7).await;
    h.kill("main");
    h.start_with_aws("faulty", &[], &proxy.endpoint);
    let production = EcsWorld::record_weights(&world);
    let v2 = world.task_definition("orders:2").await;
    EcsWorld::set_task_definition(&s, &v2).await;
    wait_for("v2 promoted through the faults", Duration::from_secs(180), || async {
        let status = s.rollouts.get("web").await.ok()?.status?;
        let promoted = status.phase == Some(RolloutPhase::Healthy) && status.stable_revision == status.update_revision;
        (promoted && world.weights().await == (0, 100)).then_some(())
    })
    .await;
    wait_for("the old task set deleted", DEADLINE, || async { (world.task_sets().await == vec![v2.clone()]).then_some(()) }).await;

    let mut steps = rollout.spec.strategy.canary.clone().unwrap();
    steps.steps.push(serde_json::from_value(json!({"pause": {}})).unwrap());
    let patch = json!({"spec": {"strategy": {"canary": steps}}});
    s.rollouts.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("manual pause added");
    let v3 = world.task_definition("orders:3").await;
    EcsWorld::set_task_definition(&s, &v3).await;
    s.wait("v3 at the manual pause", |r| step(r) == Some(4) && status_phase(r) == Some(RolloutPhase::Paused)).await;
    s.command("abort", "faults-1").await;
    wait_for("the abort completed through the faults", Duration::from_secs(180), || async {
        let r = s.rollouts.get("web").await.ok()?;
        (status_phase(&r) == Some(RolloutPhase::Degraded) && world.task_sets().await == vec![v2.clone()]).then_some(())
    })
    .await;
    assert_eq!(world.weights().await, (0, 100), "all traffic on the stable task set after the abort");
    let seen = production.stop();
    assert_eq!(
        seen,
        vec![(100, 0), (75, 25), (50, 50), (0, 100), (25, 75), (50, 50), (0, 100)],
        "no weight but the planned ones, in order, ever reached the listener"
    );
    let calls = proxy.calls();
    for service in ["ELBv2", "ECS"] {
        let faults = calls.iter().filter(|c| c.service == service && c.fault.is_some()).count();
        assert!(faults > 0, "{service}: faults were injected ({} calls)", calls.len());
    }

    // An AWS that fails every call: the rollout says so, and stops saying so once it recovers.
    proxy.set_fault_rate(1.0);
    let reconcile_error = |r: &Rollout| r.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "ReconcileError"));
    let failing = s.wait("the ReconcileError condition", reconcile_error).await;
    let condition = failing.status.unwrap().conditions.into_iter().find(|c| c.type_ == "ReconcileError").unwrap();
    assert!(condition.message.starts_with("retrying: "), "{}", condition.message);
    // The event follows the status write: wait for it rather than race it.
    wait_for("the ReconcileFailed event", DEADLINE, || async {
        s.events().await.iter().any(|(reason, _, _)| reason == "ReconcileFailed").then_some(())
    })
    .await;
    assert_eq!(world.weights().await, (0, 100), "a failing AWS leaves the weights where they were");
    proxy.set_fault_rate(0.0);
    s.wait("the condition cleared", |r| !reconcile_error(r)).await;
    h.kill("faulty");
    h.start("main", &[]);
}

register_test!(190, missing_service_holds_the_rollout_until_it_exists);
pub async fn missing_service_holds_the_rollout_until_it_exists(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "nosvc", &["web-stable"]).await;
    s.create(&rollout(2, "web:1", canary_steps())).await;
    let held = s.wait_phase(RolloutPhase::Degraded).await;
    let condition = held.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "InvalidSpec").cloned().expect("InvalidSpec");
    assert!(condition.message.contains("Service web-canary (named in strategy.canary.canaryService)"), "{}", condition.message);
    assert!(s.replica_sets().await.is_empty(), "nothing runs while a Service is missing");
    assert!(s.events().await.iter().any(|(reason, note, _)| reason == "InvalidSpec" && note.contains("web-canary")));
    // Creating the Service is the change that wakes the rollout: no resync brings it back.
    let api: Api<Service> = Api::namespaced(s.client.clone(), &s.ns);
    let service: Service =
        serde_json::from_value(json!({"metadata": {"name": "web-canary"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))
            .unwrap();
    api.create(&PostParams::default(), &service).await.expect("service created");
    let healthy = s.wait_phase(RolloutPhase::Healthy).await;
    assert!(!healthy.status.unwrap().conditions.iter().any(|c| c.type_ == "InvalidSpec"));
    s.wait_replicas(&[("web:1", 2)]).await;
}

/// The Rollout CRD with `spec` left unchecked, as an older, looser schema would have stored it.
async fn loosen_rollout_schema(h: &Harness, loose: bool) {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(h.stack.kube().await);
    let spec = if loose {
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
    } else {
        let generated = serde_json::to_value(sluice::api::crd::rollout()).unwrap();
        generated["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    };
    let patch = json!([{"op": "replace", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec", "value": spec}]);
    crds.patch("rollouts.sluice.dev", &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(patch).unwrap()))
        .await
        .expect("CRD schema replaced");
}

register_test!(200, unreadable_rollout_is_degraded_and_blocks_no_other);
pub async fn unreadable_rollout_is_degraded_and_blocks_no_other(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "unreadable", &["web-stable", "web-canary"]).await;
    s.create(&rollout(2, "web:1", canary_steps())).await;
    s.wait_phase(RolloutPhase::Healthy).await;

    let dynamic: Api<kube::api::DynamicObject> =
        Api::namespaced_with(s.client.clone(), &s.ns, &kube::api::ApiResource::erase::<Rollout>(&()));
    let mut broken = serde_json::to_value(rollout(2, "web:1", canary_steps())).unwrap();
    broken["metadata"]["name"] = json!("broken");
    broken["spec"]["strategy"]["canary"]["steps"] = json!("fast");
    let broken: kube::api::DynamicObject = serde_json::from_value(broken).unwrap();
    loosen_rollout_schema(&h, true).await;
    // The API server takes a moment to serve the new schema.
    wait_for("the loose schema to accept the object", DEADLINE, || async {
        dynamic.create(&PostParams::default(), &broken).await.ok().map(|_| ())
    })
    .await;
    loosen_rollout_schema(&h, false).await;

    let degraded = |object: &kube::api::DynamicObject| {
        let status = &object.data["status"];
        let message = status["conditions"].as_array()?.iter().find(|c| c["type"] == "InvalidSpec")?["message"].as_str()?.to_string();
        (status["phase"] == "Degraded").then_some(message)
    };
    let message =
        wait_for("the unreadable rollout to be Degraded", DEADLINE, || async { degraded(&dynamic.get("broken").await.ok()?) }).await;
    assert!(message.contains("spec.strategy.canary.steps"), "the message names the field at fault: {message}");

    // A fresh list holding the unreadable object, and a rollout progressing beside it.
    h.kill("main");
    h.start("main", &[]);
    s.set_image("web:2").await;
    s.wait("the canary to reach its manual pause", |r| step(r) == Some(3)).await;
    s.command("promote", "unreadable-1").await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.wait_replicas(&[("web:2", 2)]).await;
    let invalid: Vec<_> = s.events().await.into_iter().filter(|(reason, _, _)| reason == "InvalidSpec").collect();
    assert_eq!(invalid.len(), 1, "said once, not once per pass: {invalid:?}");
    assert_eq!(invalid[0].2, 1, "said once, not once per pass: {invalid:?}");

    dynamic.delete("broken", &DeleteParams::default()).await.expect("delete accepted");
    wait_for("the unreadable rollout to be gone", DEADLINE, || async { dynamic.get_opt("broken").await.ok()?.is_none().then_some(()) })
        .await;
}

register_test!(210, imported_manifests_are_accepted_by_the_api_server);
/// `sluice import` output, as printed, is admitted by the real API server: the CRDs' schemas,
/// patterns (the placeholder ARNs) and CEL rules (server-side dry run: nothing is stored).
pub async fn imported_manifests_are_accepted_by_the_api_server(h: Arc<Harness>) {
    let client = h.stack.kube().await;
    let ns = namespace(&client, "import").await;
    let fixtures = repo().join("tests/fixtures/import");
    let mut checked = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let imported = std::process::Command::new(env!("CARGO_BIN_EXE_sluice")).args(["import", "-f", path_str(&path)]).output().unwrap();
        assert!(imported.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&imported.stderr));
        let mut items: Vec<Value> = serde_saphyr::from_multiple(&String::from_utf8(imported.stdout).unwrap()).unwrap();
        for item in &mut items {
            if item["kind"] != "ClusterAnalysisTemplate" {
                item["metadata"]["namespace"] = json!(ns);
            }
        }
        checked += items.len();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
        let mut apply = h
            .stack
            .command("kubectl")
            .args(["apply", "--dry-run=server", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        apply.stdin.take().unwrap().write_all(list.as_bytes()).unwrap();
        let out = apply.wait_with_output().unwrap();
        assert!(out.status.success(), "{} refused: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("(server dry run)"));
    }
    assert!(checked >= 10, "only {checked} objects imported");
}

/// A local web server that records every JSON body POSTed to it, by path.
pub(crate) async fn webhook_receiver() -> (u16, Arc<std::sync::Mutex<Vec<(String, Value)>>>, tokio::task::JoinHandle<()>) {
    use axum::extract::{Json, Path, State};
    type Received = Arc<std::sync::Mutex<Vec<(String, Value)>>>;
    let received: Received = Default::default();
    let app = axum::Router::new()
        .route(
            "/{hook}",
            axum::routing::post(|State(received): State<Received>, Path(hook): Path<String>, Json(body): Json<Value>| async move {
                received.lock().unwrap().push((hook, body));
                "ok"
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (port, received, server)
}

/// The value of one sample line of the controller's /metrics (name with its labels as printed).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

register_test!(220, webhooks_and_delivery_metrics);
/// Webhooks of a real canary: the JSON and the Slack-style URL get every notification in order,
/// while ten URLs that refuse connections do not slow the rollout; then the delivery (DORA)
/// metrics of one promoted and one aborted (then restored) rollout on /metrics.
pub async fn webhooks_and_delivery_metrics(h: Arc<Harness>) {
    let (port, received, server) = webhook_receiver().await;
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut urls: Vec<String> = (0..10).map(|i| format!("http://127.0.0.1:{refused}/dead-{i}")).collect();
    urls.push(format!("http://127.0.0.1:{port}/json"));
    urls.push(format!("slack+http://127.0.0.1:{port}/slack"));
    let s = Scene::new(&h.stack, "notify", &["web-stable", "web-canary"]).await;
    let mut web = rollout(2, "web:1", canary_steps());
    let commit = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    web.metadata.annotations = Some(
        [("sluice.dev/notify-webhook".to_string(), urls.join(",")), ("sluice.dev/commit-time".to_string(), commit.to_string())].into(),
    );
    s.create(&web).await;
    s.wait_phase(RolloutPhase::Healthy).await;

    // Each notification to the refusing URLs takes three attempts and 1.25 s of back-off: had the
    // rollout waited for them, its five notifications before the manual pause would hold it for
    // over a minute, not the 2 s of its timed pause.
    s.set_image("web:2").await;
    wait_for("the manual pause despite ten refusing webhooks", Duration::from_secs(20), || async {
        let r = s.rollouts.get("web").await.ok()?;
        (step(&r) == Some(3) && status_phase(&r) == Some(RolloutPhase::Paused)).then_some(())
    })
    .await;
    s.command("promote", "p-1").await;
    s.wait_phase(RolloutPhase::Healthy).await;

    s.set_image("web:3").await;
    s.wait("the manual pause of web:3", |r| step(r) == Some(3) && status_phase(r) == Some(RolloutPhase::Paused)).await;
    s.command("abort", "a-1").await;
    s.wait_phase(RolloutPhase::Degraded).await;
    s.set_image("web:2").await; // undo: back to the stable version
    s.wait_phase(RolloutPhase::Healthy).await;

    let expected = [
        "Started",
        "Healthy",
        "Started",
        "StepCompleted",
        "Paused", // the timed pause
        "StepCompleted",
        "StepCompleted",
        "Paused", // the manual pause
        "StepCompleted",
        "Promoted",
        "Healthy",
        "Started",
        "StepCompleted",
        "Paused",
        "StepCompleted",
        "StepCompleted",
        "Paused",
        "Aborted",
        "Healthy",
    ];
    let reasons =
        |hook: &str| -> Vec<Value> { received.lock().unwrap().iter().filter(|(h, _)| h == hook).map(|(_, body)| body.clone()).collect() };
    let json_bodies = wait_for("every notification at the JSON hook", DEADLINE, || async {
        let bodies = reasons("json");
        (bodies.len() >= expected.len()).then_some(bodies)
    })
    .await;
    let got: Vec<&str> = json_bodies.iter().map(|b| b["reason"].as_str().unwrap()).collect();
    assert_eq!(got, expected, "{json_bodies:#?}");
    let promoted = &json_bodies[9];
    assert_eq!((promoted["rollout"].as_str(), promoted["namespace"].as_str()), (Some("web"), Some(s.ns.as_str())));
    assert!(promoted["revision"].is_string() && promoted["time"].is_string() && promoted["phase"].is_string(), "{promoted}");
    assert_eq!(json_bodies[7]["step"], 3, "the manual pause is step 3: {}", json_bodies[7]);
    let slack = wait_for("the Slack-style hook", DEADLINE, || async {
        let bodies = reasons("slack");
        (bodies.len() >= expected.len()).then_some(bodies)
    })
    .await;
    assert!(slack.iter().all(|b| b.as_object().unwrap().keys().eq(["text"])), "{slack:?}");
    assert!(slack[17]["text"].as_str().unwrap().contains(&format!("*{}/web* Aborted: ", s.ns)), "{}", slack[17]);

    let labels = format!(r#"namespace="{}",rollout="web""#, s.ns);
    let metrics = wait_for("the refused deliveries counted", DEADLINE, || async {
        let text = h.metrics("main").await;
        (sample(&text, r#"sluice_notifications_total{outcome="failed"}"#)? >= 10.0).then_some(text)
    })
    .await;
    assert_eq!(sample(&metrics, &format!(r#"sluice_deployments_total{{{labels},outcome="promoted"}}"#)), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, &format!(r#"sluice_deployments_total{{{labels},outcome="aborted"}}"#)), Some(1.0));
    assert_eq!(sample(&metrics, &format!("sluice_lead_time_seconds_count{{{labels}}}")), Some(1.0));
    let lead = sample(&metrics, &format!("sluice_lead_time_seconds_sum{{{labels}}}")).unwrap();
    assert!((3600.0..7200.0).contains(&lead), "lead time runs from the commit-time annotation: {lead}");
    assert_eq!(sample(&metrics, &format!("sluice_time_to_restore_seconds_count{{{labels}}}")), Some(1.0));
    // The 2 s timed pause ended and the next step was applied: the controller measured how late.
    let delays = sample(&metrics, "sluice_step_delay_seconds_count").unwrap_or(0.0);
    assert!(delays >= 1.0, "timed steps are measured: {delays}");
    assert!(sample(&metrics, r#"sluice_notifications_total{outcome="delivered"}"#).unwrap() >= 2.0 * expected.len() as f64);
    server.abort();
}

fn invalid_spec(rollout: &Rollout) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    rollout.status.as_ref()?.conditions.iter().find(|c| c.type_ == "InvalidSpec").cloned()
}

register_test!(330, namespace_b_cannot_use_namespace_a_listener);
pub async fn namespace_b_cannot_use_namespace_a_listener(h: Arc<Harness>) {
    let a = Scene::new(&h.stack, "tenant-a", &[]).await;
    let (elb, listener, stable, canary) = h.stack.balancer(&format!("tenant-{}", std::process::id())).await;
    a.allow_aws(&[&listener, &stable, &canary]).await;
    let b = Scene::new(&h.stack, "tenant-b", &["web-stable", "web-canary"]).await;
    let mut r = rollout(2, "web:1", canary_steps());
    r.spec.traffic = Some(
        serde_json::from_value(json!({"alb": {"listenerArn": listener, "stableTargetGroupArn": canary, "canaryTargetGroupArn": stable}}))
            .unwrap(),
    );
    b.create(&r).await;
    let refused = b.wait_phase(RolloutPhase::Degraded).await;
    let condition = invalid_spec(&refused).expect("an InvalidSpec condition");
    assert_eq!(condition.reason, "TenancyRefused");
    assert!(
        condition.message.starts_with(&format!("spec.traffic.alb.listenerArn names {listener}, which namespace {}", b.ns)),
        "{}",
        condition.message
    );
    assert!(condition.message.contains(ALLOWED_AWS_RESOURCES_ANNOTATION), "says how an admin allows it: {}", condition.message);
    let warned = wait_for("the TenancyRefused event", DEADLINE, || async {
        let events = b.events().await;
        let refusals: Vec<_> = events.into_iter().filter(|(reason, _, _)| reason == "TenancyRefused").collect();
        (!refusals.is_empty()).then_some(refusals)
    })
    .await;
    assert_eq!(warned.len(), 1, "one event: {warned:?}");
    assert!(warned[0].1.contains(&listener), "{warned:?}");
    assert!(b.replica_sets().await.is_empty(), "nothing runs in the refused namespace");
    assert_eq!(
        crate::support::alb::listener_weights(&elb, &listener, &stable, &canary).await,
        (100, 0),
        "namespace A's listener untouched"
    );
    assert!(b.selector("web-stable").await.is_none(), "no Service pointed");

    // The admin allows it: the change to the Namespace wakes the Rollout, no resync needed.
    // Its stable group is A's canary one, where its pods are registered.
    let _targets = b.bind_target_groups(&elb, &canary, &stable, REGISTRATION_LAG);
    b.allow_aws(&[&listener, &stable, &canary]).await;
    let healthy = b.wait_phase(RolloutPhase::Healthy).await;
    assert!(invalid_spec(&healthy).is_none());
}

register_test!(340, rollout_naming_another_apps_service_leaves_it_alone);
pub async fn rollout_naming_another_apps_service_leaves_it_alone(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "othersvc", &["web-stable", "web-canary"]).await;
    let services: Api<Service> = Api::namespaced(s.client.clone(), &s.ns);
    let api: Service =
        serde_json::from_value(json!({"metadata": {"name": "api"}, "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]}}))
            .unwrap();
    services.create(&PostParams::default(), &api).await.expect("service created");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(s.client.clone(), &s.ns);
    let pod = serde_json::from_value(json!({"metadata": {"name": "api-0", "labels": {"app": "api"}},
        "spec": {"containers": [{"name": "api", "image": "api:1", "ports": [{"containerPort": 80}]}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.expect("pod created");
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> = Api::namespaced(s.client.clone(), &s.ns);
    let endpoints = || async {
        let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=api")).await.ok()?;
        let ready: usize = list
            .items
            .iter()
            .map(|slice| slice.endpoints.iter().filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true)).count())
            .sum();
        (ready > 0).then_some(ready)
    };
    let before = wait_for("the api Service's endpoint", DEADLINE, endpoints).await;

    let mut strategy = canary_steps();
    strategy["canary"]["stableService"] = json!("api");
    s.create(&rollout(2, "web:1", strategy)).await;
    let refused = s.wait_phase(RolloutPhase::Degraded).await;
    let condition = invalid_spec(&refused).expect("an InvalidSpec condition");
    assert_eq!(condition.reason, "TenancyRefused");
    assert!(
        condition.message.starts_with("Service api (named in strategy.canary.stableService) is not this Rollout's"),
        "{}",
        condition.message
    );
    assert!(condition.message.contains("sluice.dev/rollout=web"), "says what to do: {}", condition.message);
    assert!(s.events().await.iter().any(|(reason, note, _)| reason == "TenancyRefused" && note.contains("Service api")));
    let kept = services.get("api").await.unwrap().spec.unwrap().selector.unwrap();
    assert_eq!(kept, BTreeMap::from([("app".to_string(), "api".to_string())]), "the other app's selector is intact");
    assert_eq!(endpoints().await, Some(before), "and so are its endpoints");
    assert!(s.replica_sets().await.is_empty(), "nothing runs while refused");

    // Naming the Rollout's own Service (it selects the Rollout's pods) is accepted unchanged.
    let patch = json!({"spec": {"strategy": {"canary": {"stableService": "web-stable"}}}});
    s.rollouts.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    s.wait_phase(RolloutPhase::Healthy).await;
    assert!(s.selector("web-stable").await.is_some(), "web-stable now selects the stable revision");
}
