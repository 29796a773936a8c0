use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use jiff::Timestamp;
use sluice::analysis::condition::MeasuredValue;
use sluice::api::{AnalysisPhase, PrometheusRange, SecretHeader, SecretKeyRef};

use crate::common::{Run, Server, Silent, drop_namespace, namespace_with_secret, prometheus, providers, unique};
use crate::support::Stack;

const METRIC: &str = "sluice_provider_error_ratio";

/// Pushes one sample a little before now and returns a query for it alone.
async fn pushed(stack: &Stack, value: f64) -> String {
    let run = unique("p");
    stack.push_sample(METRIC, &[("run", &run)], value, Timestamp::now().as_millisecond() - 5_000).await;
    format!(r#"{METRIC}{{run="{run}"}}"#)
}

fn judged_by(query: &str, stack: &Stack) -> sluice::api::Metric {
    let mut metric = prometheus(&stack.prometheus_url, query);
    metric.success_condition = Some("result < 0.01".into());
    metric.failure_condition = Some("result > 0.05".into());
    metric
}

register_test!(10, a_low_value_succeeds);
pub async fn a_low_value_succeeds(stack: Arc<Stack>) {
    let query = pushed(&stack, 0.002).await;
    let mut run = Run::of(judged_by(&query, &stack));
    let value = run.measure(&providers(&stack).await, "default").await.expect("measured");
    assert_eq!(value, MeasuredValue::scalar(0.002));
    assert_eq!(run.status.phase, AnalysisPhase::Successful, "{:?}", run.status.message);
    assert_eq!(run.result().measurements[0].value.as_deref(), Some("0.002"));
}

register_test!(20, a_high_value_fails);
pub async fn a_high_value_fails(stack: Arc<Stack>) {
    let query = pushed(&stack, 0.2).await;
    let mut run = Run::of(judged_by(&query, &stack));
    run.measure(&providers(&stack).await, "default").await.expect("measured");
    assert_eq!(run.status.phase, AnalysisPhase::Failed);
    let message = run.status.message.clone().unwrap_or_default();
    assert!(message.contains("1 of 1 measurements failed") && message.contains("last value 0.2"), "{message}");
}

register_test!(30, between_the_conditions_is_inconclusive);
pub async fn between_the_conditions_is_inconclusive(stack: Arc<Stack>) {
    let query = pushed(&stack, 0.03).await;
    let mut run = Run::of(judged_by(&query, &stack));
    run.measure(&providers(&stack).await, "default").await.expect("measured");
    assert_eq!(run.last_phase(), AnalysisPhase::Inconclusive);
    assert_eq!(run.status.phase, AnalysisPhase::Inconclusive, "{:?}", run.status.message);
}

register_test!(40, no_series_is_no_data);
pub async fn no_series_is_no_data(stack: Arc<Stack>) {
    let query = format!(r#"{METRIC}{{run="{}"}}"#, unique("never-pushed"));
    let mut run = Run::of(judged_by(&query, &stack));
    let value = run.measure(&providers(&stack).await, "default").await.expect("measured");
    assert_eq!(value, MeasuredValue::NoData);
    let measurement = &run.result().measurements[0];
    assert_eq!((measurement.phase, measurement.message.as_deref()), (AnalysisPhase::Inconclusive, Some("no data")));
    assert_eq!(run.status.phase, AnalysisPhase::Inconclusive);
}

register_test!(50, a_range_query_gives_a_vector);
pub async fn a_range_query_gives_a_vector(stack: Arc<Stack>) {
    let run_label = unique("range");
    let now = Timestamp::now().as_millisecond();
    let samples = [(0.1, now - 50_000), (f64::NAN, now - 35_000), (0.2, now - 20_000), (0.3, now - 5_000)];
    stack.push_series(METRIC, &[("run", &run_label)], &samples).await;
    let mut metric = prometheus(&stack.prometheus_url, &format!(r#"{METRIC}{{run="{run_label}"}}"#));
    metric.provider.prometheus.as_mut().unwrap().range = Some(PrometheusRange { window: "1m".into(), step: "5s".into() });
    metric.success_condition = Some("size(result) >= 3 && result.all(x, x < 0.5)".into());
    let mut run = Run::of(metric);
    let value = run.measure(&providers(&stack).await, "default").await.expect("measured");
    let MeasuredValue::Json(serde_json::Value::Array(values)) = &value else { panic!("a vector: {value:?}") };
    let values: Vec<f64> = values.iter().map(|v| v.as_f64().expect("a number, NaN left out")).collect();
    for expected in [0.1, 0.2, 0.3] {
        assert!(values.contains(&expected), "{values:?}");
    }
    assert_eq!(run.status.phase, AnalysisPhase::Successful, "{:?}", run.status.message);
}

register_test!(60, an_unreachable_server_is_an_error);
pub async fn an_unreachable_server_is_an_error(stack: Arc<Stack>) {
    let mut run = Run::of(judged_by("up", &stack));
    run.spec.metrics[0].provider.prometheus.as_mut().unwrap().address = "http://127.0.0.1:1".into();
    let error = run.measure(&providers(&stack).await, "default").await.unwrap_err();
    assert_eq!(error.category(), "unreachable", "{error}");
    let text = error.to_string();
    assert!(text.contains("prometheus at http://127.0.0.1:1") && text.contains("cannot connect"), "{text}");
    let measurement = &run.result().measurements[0];
    assert_eq!(measurement.phase, AnalysisPhase::Error);
    assert_eq!(measurement.message.as_deref(), Some(text.as_str()));
    assert_eq!(run.status.phase, AnalysisPhase::Running, "one error is within the default limit of 4");
}

register_test!(70, errors_in_a_row_beyond_the_limit_err_the_metric);
pub async fn errors_in_a_row_beyond_the_limit_err_the_metric(stack: Arc<Stack>) {
    let good = pushed(&stack, 0.001).await;
    let mut metric = judged_by(&good, &stack);
    metric.count = Some(5.into());
    metric.consecutive_error_limit = Some(2.into());
    let mut run = Run::of(metric);
    let providers = providers(&stack).await;
    let address = |run: &mut Run, address: &str| run.spec.metrics[0].provider.prometheus.as_mut().unwrap().address = address.into();

    address(&mut run, "http://127.0.0.1:1");
    for _ in 0..2 {
        run.measure(&providers, "default").await.unwrap_err();
    }
    assert_eq!((run.status.phase, run.result().consecutive_error), (AnalysisPhase::Running, 2));

    address(&mut run, &stack.prometheus_url.clone());
    run.measure(&providers, "default").await.expect("the server is back");
    assert_eq!((run.status.phase, run.result().consecutive_error), (AnalysisPhase::Running, 0), "a success ends the streak");

    address(&mut run, "http://127.0.0.1:1");
    for _ in 0..2 {
        run.measure(&providers, "default").await.unwrap_err();
        assert_eq!(run.status.phase, AnalysisPhase::Running);
    }
    run.measure(&providers, "default").await.unwrap_err();
    assert_eq!(run.status.phase, AnalysisPhase::Error);
    let message = run.status.message.clone().unwrap_or_default();
    assert!(message.contains("3 errors in a row (limit 2)") && message.contains("cannot connect"), "{message}");
    assert_eq!((run.result().error, run.result().count), (5, 1));
}

register_test!(80, a_server_that_never_answers_times_out);
pub async fn a_server_that_never_answers_times_out(stack: Arc<Stack>) {
    let silent = Silent::start().await;
    let mut metric = judged_by("up", &stack);
    let spec = metric.provider.prometheus.as_mut().unwrap();
    spec.address = silent.address.clone();
    spec.timeout = Some("1s".into());
    let mut run = Run::of(metric);
    let error = run.measure(&providers(&stack).await, "default").await.unwrap_err();
    assert_eq!(error.category(), "timeout", "{error}");
    let text = error.to_string();
    assert!(text.contains(&silent.address) && text.contains("no answer within 1s"), "{text}");
    assert_eq!(run.last_phase(), AnalysisPhase::Error);
    drop(silent);
}

register_test!(90, a_refused_query_says_why);
pub async fn a_refused_query_says_why(stack: Arc<Stack>) {
    let mut run = Run::of(judged_by("sum(", &stack));
    let error = run.measure(&providers(&stack).await, "default").await.unwrap_err();
    assert_eq!(error.category(), "query", "{error}");
    assert!(error.to_string().contains("query `sum(` refused: bad_data"), "{error}");
}

register_test!(100, the_auth_header_comes_from_a_secret);
pub async fn the_auth_header_comes_from_a_secret(stack: Arc<Stack>) {
    // Prometheus itself checks no header: a stand-in that only answers with the right token.
    let router = Router::new().route(
        "/api/v1/query",
        get(|headers: HeaderMap| async move {
            if headers.get("authorization").is_some_and(|v| v == "Bearer s3cret") {
                let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"0.5"]}]}}"#;
                (StatusCode::OK, [("content-type", "application/json")], body).into_response()
            } else {
                (StatusCode::UNAUTHORIZED, "missing or wrong token").into_response()
            }
        }),
    );
    let server = Server::start(router).await;
    let namespace = namespace_with_secret(&stack, "prometheus-auth", "token", "Bearer s3cret\n").await;
    let providers = providers(&stack).await;

    let mut metric = prometheus(&server.address, "up");
    metric.provider.prometheus.as_mut().unwrap().auth_header = Some(SecretHeader {
        name: "Authorization".into(),
        secret_key_ref: SecretKeyRef { name: "prometheus-auth".into(), key: "token".into() },
    });
    let value = Run::of(metric.clone()).measure(&providers, &namespace).await.expect("measured with the token");
    assert_eq!(value, MeasuredValue::scalar(0.5));

    let mut without = prometheus(&server.address, "up");
    without.name = "without".into();
    let error = Run::of(without).measure(&providers, &namespace).await.unwrap_err();
    assert_eq!(error.category(), "status", "{error}");
    assert!(error.to_string().contains("401 Unauthorized"), "{error}");

    let mut missing = metric.clone();
    missing.provider.prometheus.as_mut().unwrap().auth_header.as_mut().unwrap().secret_key_ref.name = "nope".into();
    let error = Run::of(missing).measure(&providers, &namespace).await.unwrap_err();
    assert_eq!(error.category(), "secret", "{error}");
    assert!(error.to_string().contains(&format!("Secret {namespace}/nope not found")), "{error}");

    let mut wrong_key = metric;
    wrong_key.provider.prometheus.as_mut().unwrap().auth_header.as_mut().unwrap().secret_key_ref.key = "tokn".into();
    let error = Run::of(wrong_key).measure(&providers, &namespace).await.unwrap_err();
    assert!(error.to_string().contains("has no key `tokn` (its keys: token)"), "{error}");
    drop_namespace(&stack, &namespace).await;
    drop(server);
}

/// What botocore (the AWS SDK for Python, in the stack's moto environment) computes as the
/// signature of `url` (as received) at `date`: an implementation independent of Sluice's.
fn botocore_signature(url: &str, host: &str, date: &str, region: &str, service: &str) -> (String, String) {
    const SCRIPT: &str = r#"
import json, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
d = json.load(sys.stdin)
request = AWSRequest(method="GET", url=d["url"], headers={"Host": d["host"]})
request.context["timestamp"] = d["date"]
auth = SigV4Auth(Credentials("testing", "testing"), d["service"], d["region"])
auth._modify_request_before_signing(request)
string_to_sign = auth.string_to_sign(request, auth.canonical_request(request))
print(json.dumps([auth.signature(string_to_sign, request), auth.signed_headers(auth.headers_to_sign(request))]))
"#;
    use std::io::Write;
    let mut python = std::process::Command::new(crate::support::moto_python())
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("botocore's python runs");
    let input = serde_json::json!({"url": url, "host": host, "date": date, "region": region, "service": service});
    python.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(out.status.success(), "botocore failed");
    serde_json::from_slice(&out.stdout).expect("signature and signed headers")
}

register_test!(105, a_sigv4_signed_query_is_signed_as_botocore_signs_it);
/// Amazon Managed Service for Prometheus checks SigV4; no such service runs here, so a stand-in
/// records what reached it and botocore, independently, recomputes the signature it must carry.
pub async fn a_sigv4_signed_query_is_signed_as_botocore_signs_it(stack: Arc<Stack>) {
    type Seen = Arc<std::sync::Mutex<Vec<(String, HeaderMap)>>>;
    let seen: Seen = Default::default();
    let router = Router::new()
        .route(
            "/workspaces/ws-1/api/v1/query",
            get(|axum::extract::State(seen): axum::extract::State<Seen>, uri: axum::http::Uri, headers: HeaderMap| async move {
                seen.lock().unwrap().push((uri.to_string(), headers));
                let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"0.5"]}]}}"#;
                (StatusCode::OK, [("content-type", "application/json")], body).into_response()
            }),
        )
        .with_state(seen.clone());
    let server = Server::start(router).await;
    let providers = providers(&stack).await;
    let query = r#"sum(rate(http_requests_total{code=~"5..", job="checkout api"}[5m])) / 2"#;
    let mut metric = prometheus(&format!("{}/workspaces/ws-1", server.address), query);
    metric.provider.prometheus.as_mut().unwrap().sigv4 =
        Some(sluice::api::PrometheusSigV4 { region: Some("eu-west-1".into()), service: None });
    assert_eq!(Run::of(metric).measure(&providers, "default").await, Ok(MeasuredValue::scalar(0.5)));

    let (uri, headers) = seen.lock().unwrap().last().cloned().expect("the query reached the stand-in");
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let authorization = header("authorization");
    let field = |name: &str| {
        authorization.split([' ', ',']).find_map(|part| part.strip_prefix(&format!("{name}="))).unwrap_or_default().to_string()
    };
    assert!(authorization.starts_with("AWS4-HMAC-SHA256 "), "{authorization}");
    assert!(field("Credential").ends_with("/eu-west-1/aps/aws4_request"), "{authorization}");
    let host = header("host");
    let (signature, signed) = botocore_signature(&format!("http://{host}{uri}"), &host, &header("x-amz-date"), "eu-west-1", "aps");
    assert_eq!((field("Signature"), field("SignedHeaders")), (signature, signed), "botocore signs the same request alike");
    assert!(uri.contains("query=sum%28rate%28http_requests_total%7Bcode%3D~%225..%22"), "sent in canonical form: {uri}");
}
