//! Datadog's metrics query API (v2 scalar). No Datadog can run here, so these tests use a local
//! server that speaks the documented request and response shapes: an edge-case fake, the one
//! kind these tests allow. The keys come from a real Secret in the real API server.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};
use sluice::analysis::condition::MeasuredValue;
use sluice::api::{AnalysisPhase, DatadogMetric, Metric, MetricProvider, SecretKeyRef};

use crate::common::{Run, Server, drop_namespace, namespace_with_secret_data, providers, providers_allowing};
use crate::support::Stack;

type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// `POST /api/v2/query/scalar`: 403 without the keys; otherwise one value per query, from the
/// query's text (`errors` 4, `hits` 1000, anything else 0.25), and the formula `a / b` applied.
async fn datadog() -> (Server, Seen) {
    let seen: Seen = Default::default();
    let router = Router::new()
        .route(
            "/api/v2/query/scalar",
            post(|State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                seen.lock().unwrap().push((headers.clone(), request.clone()));
                let keyed = headers.get("dd-api-key").is_some_and(|v| v == "api-1")
                    && headers.get("dd-application-key").is_some_and(|v| v == "app-1");
                if !keyed {
                    return (StatusCode::FORBIDDEN, axum::Json(json!({"errors": ["Forbidden"]}))).into_response();
                }
                let attributes = &request["data"]["attributes"];
                let value_of = |query: &str| {
                    if query.contains("errors") {
                        4.0
                    } else if query.contains("hits") {
                        1000.0
                    } else {
                        0.25
                    }
                };
                let queries = attributes["queries"].as_array().cloned().unwrap_or_default();
                let by_name: Vec<(String, f64)> = queries
                    .iter()
                    .map(|q| (q["name"].as_str().unwrap_or("").to_string(), value_of(q["query"].as_str().unwrap_or(""))))
                    .collect();
                let formula = attributes["formulas"][0]["formula"].as_str().unwrap_or("").to_string();
                let value = match formula.split_once(" / ") {
                    Some((a, b)) => {
                        let get = |n: &str| by_name.iter().find(|(name, _)| name == n).map(|(_, v)| *v).unwrap_or(f64::NAN);
                        get(a) / get(b)
                    }
                    None => by_name.iter().find(|(name, _)| *name == formula).map_or(f64::NAN, |(_, v)| *v),
                };
                axum::Json(json!({"data": {"type": "scalar_response", "attributes": {"columns": [
                    {"name": formula, "type": "number", "values": [value], "meta": {"unit": null}}
                ]}}}))
                .into_response()
            }),
        )
        .with_state(seen.clone());
    (Server::start(router).await, seen)
}

fn metric(spec: DatadogMetric, condition: &str) -> Metric {
    Metric {
        name: "dd".into(),
        success_condition: Some(condition.into()),
        provider: MetricProvider { datadog: Some(spec), ..Default::default() },
        ..Default::default()
    }
}

fn keys() -> DatadogMetric {
    let key = |key: &str| SecretKeyRef { name: "datadog".into(), key: key.into() };
    DatadogMetric { api_key: key("api-key"), application_key: key("app-key"), ..Default::default() }
}

register_test!(320, a_datadog_query_is_measured_with_the_keys_from_a_secret);
pub async fn a_datadog_query_is_measured_with_the_keys_from_a_secret(stack: Arc<Stack>) {
    let (server, seen) = datadog().await;
    // The site's address in the Secret beside the keys, as Argo Rollouts keeps it.
    let namespace =
        namespace_with_secret_data(&stack, "datadog", &[("api-key", "api-1"), ("app-key", "app-1"), ("address", &server.address)]).await;
    let providers = providers(&stack).await;

    let one = DatadogMetric { query: Some("avg:trace.http.request.duration{service:a}".into()), interval: Some("2m".into()), ..keys() };
    let mut run = Run::of(metric(one, "result < 0.5"));
    assert_eq!(run.measure(&providers, &namespace).await, Ok(MeasuredValue::scalar(0.25)));
    assert_eq!(run.status.phase, AnalysisPhase::Successful, "{:?}", run.status.message);
    let (headers, request) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    let attributes = &request["data"]["attributes"];
    assert_eq!(request["data"]["type"], "scalar_request");
    assert_eq!(attributes["queries"][0]["data_source"], "metrics");
    assert_eq!(attributes["queries"][0]["aggregator"], "last");
    assert_eq!(attributes["to"].as_i64().unwrap() - attributes["from"].as_i64().unwrap(), 120_000, "the interval, in milliseconds");

    let share = DatadogMetric {
        queries: [
            ("errors".into(), "sum:trace.http.request.errors{*}.as_count()".into()),
            ("hits".into(), "sum:trace.http.request.hits{*}.as_count()".into()),
        ]
        .into(),
        formula: Some("errors / hits".into()),
        ..keys()
    };
    let mut run = Run::of(metric(share, "result < 0.01"));
    assert_eq!(run.measure(&providers, &namespace).await, Ok(MeasuredValue::scalar(0.004)));
    assert_eq!(run.status.phase, AnalysisPhase::Successful, "{:?}", run.status.message);

    let wrong =
        DatadogMetric { api_key: SecretKeyRef { name: "datadog".into(), key: "app-key".into() }, query: Some("x".into()), ..keys() };
    let error = Run::of(metric(wrong, "result < 1")).measure(&providers, &namespace).await.unwrap_err();
    assert_eq!(error.category(), "status", "{error}");
    assert!(error.to_string().contains("403 Forbidden"), "{error}");
    drop_namespace(&stack, &namespace).await;
}

register_test!(330, a_denied_datadog_address_never_sees_the_keys);
pub async fn a_denied_datadog_address_never_sees_the_keys(stack: Arc<Stack>) {
    let (server, seen) = datadog().await;
    let namespace = namespace_with_secret_data(&stack, "datadog", &[("api-key", "api-1"), ("app-key", "app-1")]).await;
    let spec = DatadogMetric { address: Some(server.address.clone()), query: Some("avg:x{*}".into()), ..keys() };
    let mut run = Run::of(metric(spec, "result < 1"));
    let error = run.measure(&providers_allowing(&stack, &[]).await, &namespace).await.unwrap_err();
    assert_eq!(error.category(), "denied", "loopback is not allowed by default: {error}");
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
    assert_eq!(run.last_phase(), AnalysisPhase::Error);
    drop_namespace(&stack, &namespace).await;
}
