use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;
use sluice::analysis::condition::MeasuredValue;
use sluice::api::{AnalysisPhase, HttpMethod, Metric, MetricProvider, SecretKeyRef, WebHeader, WebMetric};

use crate::common::{Run, Server, Silent, drop_namespace, namespace_with_secret, providers};
use crate::support::Stack;

/// A metrics API that wants a key, one behind a bearer token, an echo and a broken endpoint.
async fn server() -> Server {
    let router = Router::new()
        .route(
            "/rate",
            get(|headers: HeaderMap| async move {
                if headers.get("x-api-key").is_some_and(|v| v == "k1") {
                    axum::Json(json!({"data": {"errorRate": 0.004, "status": "green"}})).into_response()
                } else {
                    (StatusCode::UNAUTHORIZED, "no key").into_response()
                }
            }),
        )
        .route(
            "/secure",
            get(|headers: HeaderMap| async move {
                if headers.get("authorization").is_some_and(|v| v == "Bearer s3cret") {
                    axum::Json(json!({"healthy": true})).into_response()
                } else {
                    (StatusCode::FORBIDDEN, "wrong token").into_response()
                }
            }),
        )
        .route(
            "/echo",
            post(|headers: HeaderMap, body: String| async move {
                let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let got: serde_json::Value = serde_json::from_str(&body).unwrap_or(json!(null));
                axum::Json(json!({"got": got, "contentType": content_type}))
            }),
        )
        .route("/broken", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "overloaded, try later") }));
    Server::start(router).await
}

fn web(url: String, json_path: Option<&str>) -> Metric {
    Metric {
        name: "web".into(),
        provider: MetricProvider {
            web: Some(WebMetric { url, json_path: json_path.map(str::to_string), ..Default::default() }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn with_header(mut metric: Metric, name: &str, value: &str) -> Metric {
    let header = WebHeader { name: name.into(), value: Some(value.into()), secret_key_ref: None };
    metric.provider.web.as_mut().unwrap().headers.push(header);
    metric
}

register_test!(150, a_json_path_picks_the_value);
pub async fn a_json_path_picks_the_value(stack: Arc<Stack>) {
    let server = server().await;
    let providers = providers(&stack).await;

    let mut rate = with_header(web(format!("{}/rate", server.address), Some("$.data.errorRate")), "X-Api-Key", "k1");
    rate.success_condition = Some("result < 0.01".into());
    let mut run = Run::of(rate);
    assert_eq!(run.measure(&providers, "default").await, Ok(MeasuredValue::scalar(0.004)));
    assert_eq!(run.status.phase, AnalysisPhase::Successful, "{:?}", run.status.message);

    let mut document = with_header(web(format!("{}/rate", server.address), Some("$.data")), "X-Api-Key", "k1");
    document.success_condition = Some("result.status == 'green' && result.errorRate < 0.01".into());
    let mut run = Run::of(document);
    run.measure(&providers, "default").await.expect("measured");
    assert_eq!(run.status.phase, AnalysisPhase::Successful, "{:?}", run.status.message);

    let mut typo = with_header(web(format!("{}/rate", server.address), Some("$.data.errorRates")), "X-Api-Key", "k1");
    typo.success_condition = Some("result < 0.01".into());
    let error = Run::of(typo).measure(&providers, "default").await.unwrap_err();
    assert_eq!(error.category(), "response");
    assert!(error.to_string().contains("jsonPath `$.data.errorRates` matches nothing"), "{error}");

    let error = Run::of(web(format!("{}/rate", server.address), None)).measure(&providers, "default").await.unwrap_err();
    assert_eq!(error.category(), "status");
    assert!(error.to_string().contains("401 Unauthorized: no key"), "without the header: {error}");
    drop(server);
}

register_test!(160, a_header_comes_from_a_secret);
pub async fn a_header_comes_from_a_secret(stack: Arc<Stack>) {
    let server = server().await;
    let namespace = namespace_with_secret(&stack, "web-token", "authorization", "Bearer s3cret").await;
    let providers = providers(&stack).await;
    let mut metric = web(format!("{}/secure", server.address), Some("$.healthy"));
    metric.success_condition = Some("result == true".into());
    metric.provider.web.as_mut().unwrap().headers.push(WebHeader {
        name: "Authorization".into(),
        value: None,
        secret_key_ref: Some(SecretKeyRef { name: "web-token".into(), key: "authorization".into() }),
    });
    let mut run = Run::of(metric.clone());
    assert_eq!(run.measure(&providers, &namespace).await, Ok(MeasuredValue::Json(json!(true))));
    assert_eq!(run.status.phase, AnalysisPhase::Successful, "{:?}", run.status.message);

    // The Secret is read from the rollout's namespace, not another.
    let error = Run::of(metric).measure(&providers, "default").await.unwrap_err();
    assert_eq!(error.category(), "secret");
    assert!(error.to_string().contains("Secret default/web-token not found"), "{error}");
    drop_namespace(&stack, &namespace).await;
    drop(server);
}

register_test!(170, a_failing_status_is_an_error);
pub async fn a_failing_status_is_an_error(stack: Arc<Stack>) {
    let server = server().await;
    let mut run = Run::of(web(format!("{}/broken", server.address), Some("$.rate")));
    let error = run.measure(&providers(&stack).await, "default").await.unwrap_err();
    assert_eq!(error.category(), "status");
    assert_eq!(error.to_string(), format!("web GET {}/broken: answered 503 Service Unavailable: overloaded, try later", server.address));
    assert_eq!(run.last_phase(), AnalysisPhase::Error);
    drop(server);
}

register_test!(180, a_post_sends_its_body);
pub async fn a_post_sends_its_body(stack: Arc<Stack>) {
    let server = server().await;
    let mut metric = web(format!("{}/echo", server.address), Some("$.got.threshold"));
    let spec = metric.provider.web.as_mut().unwrap();
    spec.method = Some(HttpMethod::Post);
    spec.body = Some(r#"{"threshold": 3}"#.into());
    let providers = providers(&stack).await;
    assert_eq!(Run::of(metric.clone()).measure(&providers, "default").await, Ok(MeasuredValue::scalar(3.0)));
    metric.provider.web.as_mut().unwrap().json_path = Some("$.contentType".into());
    assert_eq!(
        Run::of(metric).measure(&providers, "default").await,
        Ok(MeasuredValue::Json(json!("application/json"))),
        "a body is JSON unless a Content-Type header says otherwise"
    );
    drop(server);
}

register_test!(190, a_server_that_never_answers_times_out);
pub async fn a_server_that_never_answers_times_out(stack: Arc<Stack>) {
    let silent = Silent::start().await;
    let mut metric = web(format!("{}/rate", silent.address), None);
    metric.provider.web.as_mut().unwrap().timeout = Some("1s".into());
    let mut run = Run::of(metric);
    let error = run.measure(&providers(&stack).await, "default").await.unwrap_err();
    assert_eq!(error.category(), "timeout", "{error}");
    let expected = format!("web GET {}/rate: no answer within 1s (set by provider.web.timeout); ", silent.address);
    assert!(error.to_string().starts_with(&expected), "{error}");
    assert_eq!(run.last_phase(), AnalysisPhase::Error);
    drop(silent);
}
