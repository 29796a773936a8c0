use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use sluice::analysis::condition::MeasuredValue;
use sluice::api::{
    AnalysisPhase, AnalysisTemplate, AnalysisTemplateSpec, JudgeDirection, JudgeTotals, Metric, MetricJudge, PrometheusRange, WebMetric,
};

use crate::common::{Run, normal_samples, prometheus, providers, unique};
use crate::support::{Stack, path_str, repo, wait_for};

const LATENCY: &str = "sluice_judge_latency_ms";
const ERRORS: &str = "sluice_judge_errors";
const REQUESTS: &str = "sluice_judge_requests";
const STEP_MS: i64 = 10_000;

/// Pushes one sample every 10s for each revision, ending 10s before now; returns the run label.
async fn push_sides(stack: &Stack, metric: &str, run: &str, baseline: &[f64], canary: &[f64]) {
    let now = Timestamp::now().as_millisecond();
    for (revision, values) in [("stable", baseline), ("canary", canary)] {
        let first = now - STEP_MS * values.len() as i64;
        let samples: Vec<(f64, i64)> = values.iter().enumerate().map(|(i, v)| (*v, first + STEP_MS * i as i64)).collect();
        stack.push_series(metric, &[("run", run), ("revision", revision)], &samples).await;
    }
}

fn selector(metric: &str, run: &str, revision: &str) -> String {
    format!(r#"{metric}{{run="{run}",revision="{revision}"}}"#)
}

/// A judged metric over the last 5 minutes, 10s apart, that succeeds on a Pass.
fn judged(stack: &Stack, metric: &str, run: &str) -> Metric {
    let mut judged = prometheus(&stack.prometheus_url, &selector(metric, run, "canary"));
    judged.name = "judged".into();
    judged.provider.prometheus.as_mut().unwrap().range = Some(PrometheusRange { window: "5m".into(), step: "10s".into() });
    judged.success_condition = Some("result.verdict == 'Pass'".into());
    judged.judge =
        Some(MetricJudge { baseline_query: selector(metric, run, "stable"), direction: JudgeDirection::Increase, ..Default::default() });
    judged
}

fn verdict(value: &MeasuredValue) -> (String, String) {
    let MeasuredValue::Json(json) = value else { panic!("a judgement: {value:?}") };
    (json["verdict"].as_str().unwrap().to_string(), json["message"].as_str().unwrap().to_string())
}

register_test!(200, a_regression_fails_and_an_equal_canary_passes);
pub async fn a_regression_fails_and_an_equal_canary_passes(stack: Arc<Stack>) {
    let providers = providers(&stack).await;

    let slower = unique("slower");
    push_sides(&stack, LATENCY, &slower, &normal_samples(1, 100.0, 5.0, 30), &normal_samples(2, 140.0, 5.0, 30)).await;
    let mut run = Run::of(judged(&stack, LATENCY, &slower));
    let value = run.measure(&providers, "default").await.expect("measured");
    let (verdict_of_slower, message) = verdict(&value);
    assert_eq!(verdict_of_slower, "High", "{message}");
    assert!(message.contains("Mann–Whitney p=") && message.contains("baseline and"), "{message}");
    assert_eq!(run.status.phase, AnalysisPhase::Failed);
    assert!(run.status.message.clone().unwrap_or_default().contains(r#""verdict":"High""#), "{:?}", run.status.message);

    let same = unique("same");
    push_sides(&stack, LATENCY, &same, &normal_samples(3, 100.0, 5.0, 30), &normal_samples(4, 100.0, 5.0, 30)).await;
    let mut run = Run::of(judged(&stack, LATENCY, &same));
    let value = run.measure(&providers, "default").await.expect("measured");
    assert_eq!(verdict(&value).0, "Pass", "{}", verdict(&value).1);
    assert_eq!(run.status.phase, AnalysisPhase::Successful, "{:?}", run.status.message);

    let faster = unique("faster");
    push_sides(&stack, LATENCY, &faster, &normal_samples(5, 100.0, 5.0, 30), &normal_samples(6, 70.0, 5.0, 30)).await;
    let value = Run::of(judged(&stack, LATENCY, &faster)).measure(&providers, "default").await.expect("measured");
    assert_eq!(verdict(&value).0, "Pass", "faster is not a regression of latency: {}", verdict(&value).1);
}

register_test!(210, sparse_errors_fail_as_proportions);
pub async fn sparse_errors_fail_as_proportions(stack: Arc<Stack>) {
    let run_label = unique("sparse");
    let baseline_errors = vec![0.0; 30];
    let canary_errors: Vec<f64> = (0..30).map(|i| if [4, 9, 13, 18, 22, 26].contains(&i) { 1.0 } else { 0.0 }).collect();
    push_sides(&stack, ERRORS, &run_label, &baseline_errors, &canary_errors).await;
    push_sides(&stack, REQUESTS, &run_label, &[50.0; 30], &[50.0; 30]).await;

    let mut metric = judged(&stack, ERRORS, &run_label);
    metric.judge.as_mut().unwrap().totals = Some(JudgeTotals {
        baseline_query: selector(REQUESTS, &run_label, "stable"),
        canary_query: selector(REQUESTS, &run_label, "canary"),
    });
    let mut run = Run::of(metric);
    let value = run.measure(&providers(&stack).await, "default").await.expect("measured");
    let (verdict_of_errors, message) = verdict(&value);
    assert_eq!(verdict_of_errors, "High", "{message}");
    assert!(message.contains("Fisher's exact test") && message.contains("baseline 0/"), "{message}");
    assert_eq!(run.status.phase, AnalysisPhase::Failed);
}

register_test!(220, too_few_samples_is_no_data);
pub async fn too_few_samples_is_no_data(stack: Arc<Stack>) {
    let run_label = unique("few");
    push_sides(&stack, LATENCY, &run_label, &[100.0; 5], &[100.0; 5]).await;
    let mut run = Run::of(judged(&stack, LATENCY, &run_label));
    assert_eq!(run.measure(&providers(&stack).await, "default").await, Ok(MeasuredValue::NoData));
    assert_eq!(run.status.phase, AnalysisPhase::Inconclusive, "no data is never success");
}

register_test!(230, the_api_server_enforces_the_judge_rules);
pub async fn the_api_server_enforces_the_judge_rules(stack: Arc<Stack>) {
    let applied = stack.kubectl(&["apply", "-f", path_str(&repo().join("crds"))]);
    assert!(applied.status.success(), "kubectl apply -f crds/ failed: {}", String::from_utf8_lossy(&applied.stderr));
    let client = stack.kube().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait_for("analysistemplates.sluice.dev Established", Duration::from_secs(60), || async {
        let crd = crds.get("analysistemplates.sluice.dev").await.ok()?;
        crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
    })
    .await;
    let namespace = crate::support::namespace(&client, "judge").await;
    let api: Api<AnalysisTemplate> = Api::namespaced(client.clone(), &namespace);
    let template =
        |name: &str, metric: Metric| AnalysisTemplate::new(name, AnalysisTemplateSpec { args: Vec::new(), metrics: vec![metric] });

    let valid = template("latency", judged(&stack, LATENCY, "x"));
    wait_for("a judged template to be stored", Duration::from_secs(30), || async { api.create(&Default::default(), &valid).await.ok() })
        .await;

    let mut unconditional = judged(&stack, LATENCY, "x");
    unconditional.success_condition = None;
    let refused = api.create(&Default::default(), &template("unconditional", unconditional)).await.unwrap_err().to_string();
    assert!(refused.contains("a metric with a judge needs a condition on its verdict"), "{refused}");

    let mut on_web = judged(&stack, LATENCY, "x");
    on_web.provider.prometheus = None;
    on_web.provider.web = Some(WebMetric { url: "http://example.invalid/x".into(), ..Default::default() });
    let refused = api.create(&Default::default(), &template("on-web", on_web)).await.unwrap_err().to_string();
    assert!(refused.contains("a judge compares samples from Prometheus range queries"), "{refused}");

    let mut instant = judged(&stack, LATENCY, "x");
    instant.provider.prometheus.as_mut().unwrap().range = None;
    let refused = api.create(&Default::default(), &template("instant", instant)).await.unwrap_err().to_string();
    assert!(refused.contains("a judge compares samples from Prometheus range queries"), "{refused}");

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let _ = namespaces.delete(&namespace, &Default::default()).await;
}
