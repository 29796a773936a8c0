//! Analysis by Kubernetes Job (`provider.job`), as Argo users run smoke tests: each measurement
//! makes a Job from the template in the rollout's namespace, owned by its AnalysisRun, and the
//! real Job controller decides it. kwok's stages finish the Job's pod on a fake node; a Job whose
//! pod can never be scheduled runs past its `activeDeadlineSeconds`, and the Job controller
//! marks it Failed.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};
use sluice::api::{AnalysisPhase, AnalysisRun, AnalysisTemplate, RolloutPhase};

use crate::controller::Harness;
use crate::scenarios::rollout;
use crate::support::scene::Scene;

/// A template whose one metric is a Job; `pod` is merged into the pod spec.
fn job_template(pod: Value, deadline: Option<i64>) -> DynamicObject {
    let mut pod_spec =
        json!({"restartPolicy": "Never", "containers": [{"name": "smoke", "image": "smoke:1", "args": ["--target", "{{args.target}}"]}]});
    pod_spec.as_object_mut().unwrap().extend(pod.as_object().cloned().unwrap_or_default());
    let mut job = json!({"backoffLimit": 0, "template": {"spec": pod_spec}});
    if let Some(deadline) = deadline {
        job["activeDeadlineSeconds"] = json!(deadline);
    }
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "smoke"},
        "spec": {"args": [{"name": "target"}], "metrics": [{"name": "smoke-test",
            "provider": {"job": {"metadata": {"labels": {"suite": "smoke"}}, "spec": job}}}]}
    }))
    .unwrap()
}

fn analysed() -> sluice::api::Rollout {
    rollout(
        2,
        "web:1",
        json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary", "steps": [
            {"setWeight": 50},
            {"analysis": {"templates": [{"templateName": "smoke"}],
                "args": [{"name": "target", "value": "http://web-canary"}]}}
        ]}}),
    )
}

async fn the_run(s: &Scene) -> AnalysisRun {
    let api: Api<AnalysisRun> = Api::namespaced(s.client.clone(), &s.ns);
    let runs = api.list(&ListParams::default().labels("sluice.dev/rollout=web")).await.unwrap().items;
    let [run] = runs.as_slice() else { panic!("one run expected: {runs:?}") };
    run.clone()
}

async fn the_job(s: &Scene) -> Job {
    let api: Api<Job> = Api::namespaced(s.client.clone(), &s.ns);
    let jobs = api.list(&ListParams::default().labels("suite=smoke")).await.unwrap().items;
    let [job] = jobs.as_slice() else { panic!("one Job expected: {jobs:?}") };
    job.clone()
}

register_test!(520, a_job_metric_passes_when_its_job_completes_and_fails_the_rollout_when_it_fails);
async fn a_job_metric_passes_when_its_job_completes_and_fails_the_rollout_when_it_fails(h: Arc<Harness>) {
    let services = ["web-stable", "web-canary"];
    let (good, bad) = tokio::join!(Scene::new(&h.stack, "jobgood", &services), Scene::new(&h.stack, "jobbad", &services));
    let templates =
        |s: &Scene| Api::<DynamicObject>::namespaced_with(s.client.clone(), &s.ns, &kube::api::ApiResource::erase::<AnalysisTemplate>(&()));
    // The API server refuses a Job without a pod template, saying where.
    let mut empty = job_template(json!({}), None);
    empty.data["spec"]["metrics"][0]["provider"]["job"]["spec"] = json!({"backoffLimit": 0});
    let refused = templates(&good).create(&PostParams::default(), &empty).await.expect_err("a Job without a pod template");
    assert!(refused.to_string().contains("provider.job.spec needs a pod template"), "{refused}");

    templates(&good).create(&PostParams::default(), &job_template(json!({}), None)).await.expect("the template is admitted");
    let nowhere = job_template(json!({"nodeSelector": {"sluice.dev/no-such-node": "true"}}), Some(2));
    templates(&bad).create(&PostParams::default(), &nowhere).await.expect("the template is admitted");

    good.create(&analysed()).await;
    bad.create(&analysed()).await;
    tokio::join!(good.wait_phase(RolloutPhase::Healthy), bad.wait_phase(RolloutPhase::Healthy));
    tokio::join!(good.set_image("web:2"), bad.set_image("web:2"));
    let (_, degraded) = tokio::join!(
        async {
            good.wait_phase(RolloutPhase::Healthy).await;
            good.wait_replicas(&[("web:2", 2)]).await;
        },
        bad.wait_phase(RolloutPhase::Degraded)
    );

    let (run, job) = (the_run(&good).await, the_job(&good).await);
    let owner = &job.metadata.owner_references.as_ref().expect("an owner")[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("AnalysisRun", run.metadata.name.as_deref().unwrap()));
    assert_eq!(owner.uid, run.metadata.uid.clone().unwrap(), "owned by its run, so it goes when the run goes");
    let container = &job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.args.as_deref(), Some(&["--target".to_string(), "http://web-canary".to_string()][..]), "args substituted");
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, AnalysisPhase::Successful, "{status:?}");
    let measurement = &status.metric_results[0].measurements[0];
    let value: Value = serde_json::from_str(measurement.value.as_deref().unwrap()).unwrap();
    assert_eq!(value["phase"], "Succeeded", "{value}");
    assert_eq!(value["job"], job.metadata.name.clone().unwrap());

    let failed = the_run(&bad).await.status.unwrap();
    assert_eq!(failed.phase, AnalysisPhase::Failed, "{failed:?}");
    let said = degraded.status.as_ref().and_then(|st| st.message.clone()).unwrap_or_default();
    assert!(said.contains("metric smoke-test") && said.contains("DeadlineExceeded"), "the abort names the metric and why: {said}");
    bad.wait_replicas(&[("web:1", 2)]).await;
}
