//! What a careless or hostile author of a Rollout can write: values the API server refuses with
//! a message naming the limit, and, for a cluster whose CRDs predate those limits, the same
//! values slipping through without taking the controller or any other Rollout down.

use std::sync::Arc;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::{Rollout, RolloutPhase};

use crate::controller::Harness;
use crate::scenarios::{canary_steps, rollout, step};
use crate::support::scene::{DEADLINE, Scene};
use crate::support::wait_for;

/// Each hostile spec, named for the field it abuses, with the text the refusal must contain.
fn hostile_specs() -> Vec<(&'static str, Value, &'static str)> {
    let base = || serde_json::to_value(rollout(2, "web:1", canary_steps())).unwrap();
    let mut long_pause = base();
    long_pause["spec"]["strategy"]["canary"]["steps"][1] = json!({"pause": {"duration": "100000000h"}});
    let mut huge_surge = base();
    huge_surge["spec"]["strategy"]["canary"]["maxSurge"] = json!(2147483647);
    let mut huge_percent = serde_json::to_value(rollout(2, "web:1", json!({"rolling": {"maxSurge": "2147483647%"}}))).unwrap();
    huge_percent["metadata"]["name"] = json!("web");
    let mut huge_replicas = base();
    huge_replicas["spec"]["workload"]["kubernetes"]["replicas"] = json!(2147483647);
    let mut no_image = base();
    no_image["spec"]["workload"]["kubernetes"]["template"]["spec"]["containers"] = json!([{"name": "web"}]);
    let mut mismatched = base();
    mismatched["spec"]["workload"]["kubernetes"]["selector"] = json!({"matchLabels": {"app": "other"}});
    let mut long_name = base();
    long_name["metadata"]["name"] = json!("a".repeat(64));
    vec![
        ("pause-duration", long_pause, "8760h"),
        ("canary-max-surge", huge_surge, "100000"),
        ("rolling-max-surge", huge_percent, "9999%"),
        ("replicas", huge_replicas, "100000"),
        ("image", no_image, "needs an image"),
        ("selector", mismatched, "selector.matchLabels"),
        ("name", long_name, "at most 63"),
    ]
}

register_test!(230, hostile_specs_are_refused_with_the_limit);
pub async fn hostile_specs_are_refused_with_the_limit(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "refused", &[]).await;
    let dynamic: Api<DynamicObject> = Api::namespaced_with(s.client.clone(), &s.ns, &kube::api::ApiResource::erase::<Rollout>(&()));
    for (field, spec, limit) in hostile_specs() {
        // Too costly for a CEL rule: the engine refuses it (see the next test).
        if field == "selector" {
            continue;
        }
        let object: DynamicObject = serde_json::from_value(spec).unwrap();
        let refused = dynamic.create(&PostParams::default(), &object).await.expect_err(field);
        let text = refused.to_string();
        assert!(text.contains(limit), "{field}: the refusal names the limit `{limit}`: {text}");
    }
    // The same holds for an interval in an analysis template.
    let templates: Api<DynamicObject> =
        Api::namespaced_with(s.client.clone(), &s.ns, &kube::api::ApiResource::erase::<sluice::api::AnalysisTemplate>(&()));
    let template: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "slow"},
        "spec": {"metrics": [{"name": "m", "interval": "100000000h", "provider": {"web": {"url": "https://example.com/"}}}]}
    }))
    .unwrap();
    let refused = templates.create(&PostParams::default(), &template).await.expect_err("a 100000000h interval");
    assert!(refused.to_string().contains("8760h"), "{refused}");
}

/// Replaces the Rollout CRD's whole schema (root rules included) with an open one, or puts the
/// generated one back: a cluster whose CRDs are older than the controller.
async fn open_rollout_schema(h: &Harness, open: bool) {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(h.stack.kube().await);
    let generated = serde_json::to_value(sluice::api::crd::rollout()).unwrap();
    let mut schema = generated["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    if open {
        schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "status": schema["properties"]["status"].clone(),
        }});
    }
    let patch = json!([{"op": "replace", "path": "/spec/versions/0/schema/openAPIV3Schema", "value": schema}]);
    crds.patch("rollouts.sluice.dev", &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(patch).unwrap()))
        .await
        .expect("CRD schema replaced");
}

register_test!(240, hostile_specs_that_slip_through_harm_no_one);
pub async fn hostile_specs_that_slip_through_harm_no_one(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "slipped", &["web-stable", "web-canary"]).await;
    s.create(&rollout(2, "web:1", canary_steps())).await;
    s.wait_phase(RolloutPhase::Healthy).await;

    let dynamic: Api<DynamicObject> = Api::namespaced_with(s.client.clone(), &s.ns, &kube::api::ApiResource::erase::<Rollout>(&()));
    let mut names = Vec::new();
    open_rollout_schema(&h, true).await;
    for (field, mut spec, _) in hostile_specs() {
        let name = if field == "name" { "b".repeat(70) } else { format!("hostile-{field}") };
        spec["metadata"]["name"] = json!(name);
        // Split by replica ratio: no Service is shared with the Rollout beside them.
        if let Some(canary) = spec["spec"]["strategy"]["canary"].as_object_mut() {
            canary.remove("stableService");
            canary.remove("canaryService");
        }
        let object: DynamicObject = serde_json::from_value(spec).unwrap();
        // The API server takes a moment to serve the open schema.
        wait_for("the open schema to accept the object", DEADLINE, || async {
            dynamic.create(&PostParams::default(), &object).await.ok().map(|_| ())
        })
        .await;
        names.push((field, name));
    }
    open_rollout_schema(&h, false).await;

    // Restarts list every hostile object again; none may crash the process.
    for _ in 0..3 {
        h.kill("main");
        h.start("main", &[]);
        wait_for("the controller to serve /metrics", DEADLINE, || async { h.try_metrics("main").await }).await;
    }
    s.set_image("web:2").await;
    s.wait("the canary to reach its manual pause", |r| step(r) == Some(3)).await;
    s.command("promote", "slipped-1").await;
    s.wait_phase(RolloutPhase::Healthy).await;
    assert!(h.try_metrics("main").await.is_some(), "the controller is still up");

    // Each says why it cannot run; none ran anything.
    for (field, name) in &names {
        let expected = match *field {
            "pause-duration" => Some("8760h"),
            "canary-max-surge" => Some("more than 100000"),
            "rolling-max-surge" => Some("more than 9999%"),
            "replicas" => Some("more than 100000"),
            "image" => Some("has no image"),
            "selector" => Some("template's labels do not have it"),
            "name" => Some("at most 63"),
            _ => None,
        };
        let expected = expected.unwrap_or_else(|| panic!("{field}: an expected message"));
        let message = wait_for(&format!("{field}: an InvalidSpec condition"), DEADLINE, || async {
            let object = dynamic.get(name).await.ok()?;
            let conditions = object.data["status"]["conditions"].as_array()?.clone();
            let invalid = conditions.iter().find(|c| c["type"] == "InvalidSpec" && c["status"] == "True")?;
            Some(invalid["message"].as_str()?.to_string())
        })
        .await;
        assert!(message.contains(expected), "{field}: {message}");
    }
    let metrics = h.try_metrics("main").await.expect("the controller is up");
    assert!(!metrics.contains("category=\"panic\""), "no pass panicked: {metrics}");
}

register_test!(250, analysis_that_cannot_be_built_aborts_with_the_reason);
/// A run whose template does not exist aborts the rollout with the reason, instead of a retry
/// every few seconds with the canary live.
pub async fn analysis_that_cannot_be_built_aborts_with_the_reason(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "unbuilt", &["web-stable", "web-canary"]).await;
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
        "steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "missing"}]}}]}});
    s.create(&rollout(2, "web:1", strategy)).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.set_image("web:2").await;
    let degraded = s.wait_phase(RolloutPhase::Degraded).await;
    let message = degraded.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default();
    assert!(message.contains("AnalysisTemplate missing not found"), "{message}");
    s.wait_replicas(&[("web:1", 2)]).await;
}

register_test!(260, restarts_of_a_healthy_fleet_are_silent);
/// Restarts of a Healthy fleet change nothing anyone can see: no phase leaves Healthy, no event
/// and no webhook is sent again. A pass before the watch caches are full would see no
/// ReplicaSets and start each rollout over.
pub async fn restarts_of_a_healthy_fleet_are_silent(h: Arc<Harness>) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};

    const FLEET: usize = 5;
    const RESTARTS: usize = 20;
    let (port, received, server) = crate::scenarios::webhook_receiver().await;
    let s = Scene::new(&h.stack, "restarts", &[]).await;
    for i in 0..FLEET {
        let mut member = rollout(1, "web:1", json!({"canary": {"steps": [{"setWeight": 50}]}}));
        member.metadata.name = Some(format!("web-{i}"));
        member.metadata.annotations = Some([("sluice.dev/notify-webhook".to_string(), format!("http://127.0.0.1:{port}/fleet"))].into());
        s.create(&member).await;
    }
    wait_for("the fleet to be Healthy", DEADLINE, || async {
        let all = s.rollouts.list(&Default::default()).await.ok()?.items;
        let healthy = all.iter().filter(|r| r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Healthy)).count();
        (healthy == FLEET).then_some(())
    })
    .await;
    // Let the notifications of the first passes land before counting.
    wait_for("the fleet's first notifications", DEADLINE, || async { (received.lock().unwrap().len() >= FLEET).then_some(()) }).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let events_before = s.events().await;
    let webhooks_before = received.lock().unwrap().len();

    // Every phase the API server stores while the controller restarts.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = {
        let (rollouts, seen) = (s.rollouts.clone(), seen.clone());
        tokio::spawn(async move {
            let mut stream = watcher(rollouts, watcher::Config::default()).applied_objects().boxed();
            while let Some(Ok(rollout)) = stream.next().await {
                let phase = rollout.status.as_ref().and_then(|s| s.phase);
                seen.lock().unwrap().push((rollout.metadata.name.clone().unwrap_or_default(), phase));
            }
        })
    };
    for _ in 0..RESTARTS {
        h.kill("main");
        h.start("main", &[]);
        wait_for("the restarted controller to be ready", DEADLINE, || async { h.ready("main").await.then_some(()) }).await;
    }
    // A last pass of every Rollout has had time to run (each is reconciled on start).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    recorder.abort();
    server.abort();

    let flaps: Vec<_> = seen.lock().unwrap().iter().filter(|(_, phase)| *phase != Some(RolloutPhase::Healthy)).cloned().collect();
    assert!(flaps.is_empty(), "no phase but Healthy was written during {RESTARTS} restarts: {flaps:?}");
    let events_after = s.events().await;
    assert_eq!(events_before, events_after, "no event was sent again");
    assert_eq!(received.lock().unwrap().len(), webhooks_before, "no webhook was sent again");
}

/// A receiver on `port` recording each notification's Idempotency-Key.
async fn receiver_on(port: u16) -> (Arc<std::sync::Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let received: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let recorded = received.clone();
    let app = axum::Router::new().route(
        "/outbox",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let recorded = recorded.clone();
            async move {
                let key = headers.get("Idempotency-Key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                recorded.lock().unwrap().push(key);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("the receiver's port is free again");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (received, server)
}

register_test!(270, notifications_survive_a_controller_kill);
/// Notifications are written with the decision that makes them: a receiver that is down while
/// the controller is killed still gets every one of them, once, after the restart.
pub async fn notifications_survive_a_controller_kill(h: Arc<Harness>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = Scene::new(&h.stack, "outbox", &[]).await;
    let mut web = rollout(1, "web:1", json!({"canary": {"steps": [{"setWeight": 50}]}}));
    web.metadata.annotations = Some([("sluice.dev/notify-webhook".to_string(), format!("http://127.0.0.1:{port}/outbox"))].into());
    s.create(&web).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    let waiting = s.wait("notifications waiting in the status", |r| r.status.as_ref().is_some_and(|s| s.notifications.len() >= 2)).await;
    let ids: Vec<String> = waiting.status.unwrap().notifications.iter().map(|n| n.id.clone()).collect();

    h.kill("main");
    let (received, server) = receiver_on(port).await;
    h.start("main", &[]);
    wait_for("every waiting notification delivered", DEADLINE, || async {
        let got = received.lock().unwrap().clone();
        ids.iter().all(|id| got.contains(id)).then_some(())
    })
    .await;
    s.wait("the outbox emptied", |r| r.status.as_ref().is_some_and(|s| s.notifications.is_empty())).await;
    // Another restart sends nothing again.
    h.kill("main");
    h.start("main", &[]);
    wait_for("the restarted controller to be ready", DEADLINE, || async { h.ready("main").await.then_some(()) }).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    server.abort();
    let got = received.lock().unwrap().clone();
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(got.len(), unique.len(), "each notification delivered once: {got:?}");
    assert_eq!(unique.len(), ids.len(), "exactly the waiting ones: {got:?} vs {ids:?}");
}
