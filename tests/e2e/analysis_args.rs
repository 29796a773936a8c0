//! Analysis timing and limits written as `{{args.NAME}}`, as Argo users write them: the API
//! server admits the reference and refuses anything else, and each AnalysisRun takes the values
//! its Rollout passes; a value that is not a number errs the run and aborts the Rollout, saying
//! which field and value.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};
use sluice::api::{AnalysisPhase, AnalysisRun, AnalysisTemplate, IntOrArg, RolloutPhase};

use crate::controller::Harness;
use crate::scenarios::rollout;
use crate::support::scene::Scene;

/// A web metric whose count, interval and failure limit are the Rollout's to choose.
fn templated_metric(url: &str) -> Value {
    json!({"name": "reachable", "count": "{{args.samples}}", "interval": "{{args.every}}",
        "failureLimit": "{{args.tolerated}}", "successCondition": "result == 1.0",
        "provider": {"web": {"url": url, "timeout": "10s"}}})
}

fn template_object(metric: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "reachable"},
        "spec": {"args": [{"name": "samples"}, {"name": "every"}, {"name": "tolerated", "value": "0"}], "metrics": [metric]}
    }))
    .unwrap()
}

/// A canary at 50 % analysed with `samples` and `every` passed as arguments.
fn analysed(samples: &str, every: &str) -> sluice::api::Rollout {
    rollout(
        2,
        "web:1",
        json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary", "steps": [
            {"setWeight": 50},
            {"analysis": {"templates": [{"templateName": "reachable"}],
                "args": [{"name": "samples", "value": samples}, {"name": "every", "value": every}]}}
        ]}}),
    )
}

async fn run_of(s: &Scene) -> AnalysisRun {
    let api: Api<AnalysisRun> = Api::namespaced(s.client.clone(), &s.ns);
    let runs = api.list(&ListParams::default().labels("sluice.dev/rollout=web")).await.unwrap().items;
    let [run] = runs.as_slice() else { panic!("one run expected: {runs:?}") };
    run.clone()
}

register_test!(485, templated_analysis_fields_take_each_rollouts_values);
pub async fn templated_analysis_fields_take_each_rollouts_values(h: Arc<Harness>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new().route(
        "/ok",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { "1" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ok", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let services = ["web-stable", "web-canary"];
    let (good, bad) = tokio::join!(Scene::new(&h.stack, "argsgood", &services), Scene::new(&h.stack, "argsbad", &services));

    // The API server admits a reference and refuses anything else, naming the field.
    let templates: Api<DynamicObject> =
        Api::namespaced_with(good.client.clone(), &good.ns, &kube::api::ApiResource::erase::<AnalysisTemplate>(&()));
    for (field, value, expected) in [
        ("count", json!("three"), "count is a number from 1, or `{{args.NAME}}`"),
        ("count", json!(0), "count is a number from 1"),
        ("failureLimit", json!(-2), "failureLimit is a number from -1"),
        ("interval", json!("{{args.every}}s"), "interval"),
    ] {
        let mut metric = templated_metric(&url);
        metric[field] = value.clone();
        let refused = templates.create(&PostParams::default(), &template_object(metric)).await.expect_err(field);
        assert!(refused.to_string().contains(expected), "{field}: {value}: {refused}");
    }
    for s in [&good, &bad] {
        let api: Api<DynamicObject> =
            Api::namespaced_with(s.client.clone(), &s.ns, &kube::api::ApiResource::erase::<AnalysisTemplate>(&()));
        api.create(&PostParams::default(), &template_object(templated_metric(&url))).await.expect("a templated template is admitted");
    }

    good.create(&analysed("3", "1s")).await;
    bad.create(&analysed("three", "1s")).await;
    tokio::join!(good.wait_phase(RolloutPhase::Healthy), bad.wait_phase(RolloutPhase::Healthy));
    tokio::join!(good.set_image("web:2"), bad.set_image("web:2"));
    let (_, degraded) = tokio::join!(
        async {
            good.wait_phase(RolloutPhase::Healthy).await;
            good.wait_replicas(&[("web:2", 2)]).await;
        },
        bad.wait_phase(RolloutPhase::Degraded)
    );

    let run = run_of(&good).await;
    let metric = &run.spec.metrics[0];
    assert_eq!((metric.count.clone(), metric.failure_limit.clone()), (Some(IntOrArg::Int(3)), Some(IntOrArg::Int(0))), "{metric:?}");
    assert_eq!(metric.interval.as_ref().map(|d| d.0.as_str()), Some("1s"));
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, AnalysisPhase::Successful, "{status:?}");
    assert_eq!(status.metric_results[0].count, 3, "three measurements, as the Rollout asked: {status:?}");
    assert!(hits.load(Ordering::SeqCst) >= 3);

    let failed = run_of(&bad).await;
    let expected = "count is `three`, not a whole number of at least 1";
    let failed_status = failed.status.clone().unwrap();
    assert_eq!(failed_status.phase, AnalysisPhase::Error, "{failed_status:?}");
    assert!(failed_status.message.as_deref().unwrap_or_default().contains(expected), "{failed_status:?}");
    let said = degraded.status.as_ref().and_then(|st| st.message.clone()).unwrap_or_default();
    assert!(said.contains(expected) && said.contains("metric reachable"), "{said}");
    bad.wait_replicas(&[("web:1", 2)]).await;
    server.abort();
}
