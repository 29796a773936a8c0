//! The Lambda provider through the real AWS SDK against AWS's runtime interface emulator, which
//! runs a real handler process (a custom runtime polling the Runtime API). moto's Lambda would
//! need Docker to run a function, and there is none here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::analysis::providers::Providers;
use sluice::api::{AnalysisPhase, LambdaMetric, Metric, MetricProvider};
use sluice::egress::{DEFAULT_MAX_ANSWER, Egress};

use crate::common::Run;
use crate::support::Stack;
use crate::support::lambda::LambdaFunctions;

const SMOKE: &str = "arn:aws:lambda:us-east-1:123456789012:function:smoke";

/// The providers as the controller builds them, with Lambda's endpoint at the emulators' proxy.
async fn providers(stack: &Stack, functions: &LambdaFunctions) -> Providers {
    let aws = stack.aws().to_builder().endpoint_url(&functions.endpoint).build();
    Providers::new(&aws, None, Arc::new(Egress::new(Default::default(), None, DEFAULT_MAX_ANSWER)))
}

fn hook(function: &str, details: &[(&str, &str)], timeout: Option<&str>) -> Metric {
    let details = details.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let lambda = LambdaMetric { function_arn: function.into(), details, timeout: timeout.map(Into::into) };
    Metric { name: "smoke".into(), provider: MetricProvider { lambda: Some(lambda), ..Default::default() }, ..Default::default() }
}

/// Measures as the controller does, taking up a measurement in progress once it is due,
/// until the run is decided.
async fn measure_until_decided(run: &mut Run, providers: &Providers, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let _ = run.measure(providers, "shop").await;
        if run.status.phase.is_completed() {
            return;
        }
        assert!(Instant::now() < deadline, "undecided after {within:?}: {:?}", run.status);
        let due = sluice::analysis::run::next_due(&run.spec, &run.status).expect("a next measurement");
        let wait = due.duration_since(jiff::Timestamp::now());
        tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    }
}

register_test!(340, a_hook_in_progress_is_called_again_with_its_details_until_it_succeeds);
async fn a_hook_in_progress_is_called_again_with_its_details_until_it_succeeds(stack: Arc<Stack>) {
    let functions = LambdaFunctions::start(&stack, &[SMOKE]).await;
    let providers = providers(&stack, &functions).await;
    let mut run = Run::of(hook(SMOKE, &[("inProgress", "2")], None));
    run.status.started_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));

    let _ = run.measure(&providers, "shop").await;
    let result = run.result();
    assert_eq!(run.status.phase, AnalysisPhase::Running, "{:?}", run.status.message);
    assert_eq!((result.count, result.measurements.len()), (0, 1), "in progress counts for nothing yet");
    let waiting = &result.measurements[0];
    assert_eq!(waiting.phase, AnalysisPhase::Running);
    let resume_at = waiting.resume_at.as_ref().expect("when it is taken up again").0;
    let delay = resume_at.duration_since(waiting.started_at.0);
    assert!((0.9..=1.5).contains(&delay.as_secs_f64()), "the function's callBackDelay of 1s: {delay:?}");
    assert!(waiting.message.as_deref().unwrap_or_default().contains("answered IN_PROGRESS"), "{waiting:?}");

    measure_until_decided(&mut run, &providers, Duration::from_secs(20)).await;
    assert_eq!(run.status.phase, AnalysisPhase::Successful, "{:?}", run.status.message);
    let result = run.result();
    assert_eq!((result.count, result.successful, result.measurements.len()), (1, 1, 1), "one measurement of three calls");

    let payloads = functions.payloads(SMOKE);
    assert_eq!(payloads.len(), 3, "{payloads:#?}");
    assert_eq!(payloads[0].get("hookDetails"), None, "the first call has nothing handed back");
    assert_eq!(payloads[1]["hookDetails"], json!({"calls": 1}));
    assert_eq!(payloads[2]["hookDetails"], json!({"calls": 2}));
    for payload in &payloads {
        assert_eq!((payload["namespace"].as_str(), payload["metric"].as_str()), (Some("shop"), Some("smoke")));
        assert_eq!(payload["details"], json!({"inProgress": "2"}));
        assert_eq!(payload["measurement"], json!(0));
    }
}

register_test!(341, a_failed_unreadable_or_missing_hook_fails_its_measurement);
async fn a_failed_unreadable_or_missing_hook_fails_its_measurement(stack: Arc<Stack>) {
    let functions = LambdaFunctions::start(&stack, &[SMOKE]).await;
    let providers = providers(&stack, &functions).await;

    let mut failed = Run::of(hook(SMOKE, &[("outcome", "FAILED")], None));
    failed.measure(&providers, "shop").await.expect("a final answer");
    assert_eq!(failed.status.phase, AnalysisPhase::Failed, "{:?}", failed.status.message);
    assert!(failed.status.message.as_deref().unwrap_or_default().contains(r#""hookStatus":"FAILED""#), "{:?}", failed.status.message);

    let mut unreadable = Run::of(hook(SMOKE, &[("answer", "unreadable")], None));
    let error = unreadable.measure(&providers, "shop").await.unwrap_err();
    assert_eq!(error.category(), "response");
    assert!(error.to_string().contains("no hookStatus of SUCCEEDED, FAILED or IN_PROGRESS"), "{error}");
    assert!(error.to_string().contains("fine, thanks"), "the answer is quoted: {error}");
    assert_eq!(unreadable.last_phase(), AnalysisPhase::Error);

    let missing = "arn:aws:lambda:us-east-1:123456789012:function:nobody";
    let error = Run::of(hook(missing, &[], None)).measure(&providers, "shop").await.unwrap_err();
    assert_eq!(error.category(), "not-found", "{error}");
    assert!(error.to_string().contains("check provider.lambda.functionArn"), "{error}");
}

register_test!(342, a_hook_that_stays_in_progress_past_its_timeout_fails);
async fn a_hook_that_stays_in_progress_past_its_timeout_fails(stack: Arc<Stack>) {
    let functions = LambdaFunctions::start(&stack, &[SMOKE]).await;
    let providers = providers(&stack, &functions).await;
    let mut run = Run::of(hook(SMOKE, &[("inProgress", "1000")], Some("3s")));
    run.status.started_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
    measure_until_decided(&mut run, &providers, Duration::from_secs(20)).await;
    assert_eq!(run.status.phase, AnalysisPhase::Failed, "{:?}", run.status.message);
    let message = run.status.message.clone().unwrap_or_default();
    assert!(message.contains("TIMED_OUT") && message.contains("past provider.lambda.timeout"), "{message}");
    let calls = functions.payloads(SMOKE).len();
    assert!((3..=5).contains(&calls), "called about once a second for 3s, then no more: {calls}");
}
