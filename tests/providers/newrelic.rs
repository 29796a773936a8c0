//! New Relic's NRQL queries through NerdGraph. No New Relic can run here, so these tests use a
//! fake: a local server that speaks NerdGraph's documented request (a GraphQL document with
//! variables, the User API key in `API-Key`) and response shapes (`data.actor.account.nrql.results`,
//! GraphQL `errors`). The key and the account id come from a real Secret in the real API server.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};
use sluice::analysis::condition::MeasuredValue;
use sluice::api::{AnalysisPhase, Metric, MetricProvider, NewRelicMetric, SecretKeyRef};

use crate::common::{Run, Server, drop_namespace, namespace_with_secret_data, providers, providers_allowing};
use crate::support::Stack;

const KEY: &str = "NRAK-TESTKEY0123456789";
const ACCOUNT: &str = "1234567";

type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// `POST /graphql`. A wrong key is answered 401 with the key quoted back (so the tests see it
/// hidden). Otherwise the NRQL picks the answer: `FACET` two rows, `nothing` none, `SELEC ` a
/// GraphQL error as NerdGraph reports a bad NRQL, `overload` a 503; else one row.
async fn nerdgraph() -> (Server, Seen) {
    let seen: Seen = Default::default();
    let router = Router::new()
        .route(
            "/graphql",
            post(|State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                seen.lock().unwrap().push((headers.clone(), request.clone()));
                let key = headers.get("api-key").and_then(|v| v.to_str().ok()).unwrap_or("");
                if key != KEY {
                    let message = format!("Invalid API key: {key}");
                    return (StatusCode::UNAUTHORIZED, axum::Json(json!({"errors": [{"message": message}]}))).into_response();
                }
                let nrql = request["variables"]["nrql"].as_str().unwrap_or("");
                if nrql.contains("overload") {
                    return (StatusCode::SERVICE_UNAVAILABLE, "upstream overloaded, retry later").into_response();
                }
                if nrql.starts_with("SELEC ") {
                    return axum::Json(json!({
                        "data": {"actor": {"account": {"nrql": null}}},
                        "errors": [{"message": "NRQL Syntax Error: Error at line 1 position 1, unexpected 'SELEC'", "path": ["actor", "account", "nrql"]}]
                    }))
                    .into_response();
                }
                let results = if nrql.contains("FACET") {
                    json!([{"facet": "checkout", "appName": "checkout", "count": 3}, {"facet": "basket", "appName": "basket", "count": 12}])
                } else if nrql.contains("nothing") {
                    json!([])
                } else {
                    json!([{"errorRate": 0.004}])
                };
                axum::Json(json!({"data": {"actor": {"account": {"nrql": {"results": results}}}}})).into_response()
            }),
        )
        .with_state(seen.clone());
    (Server::start(router).await, seen)
}

fn metric(spec: NewRelicMetric, condition: &str) -> Metric {
    Metric {
        name: "nr".into(),
        success_condition: Some(condition.into()),
        provider: MetricProvider { new_relic: Some(spec), ..Default::default() },
        ..Default::default()
    }
}

/// As Argo Rollouts keeps them: the key and the account id in one Secret.
fn from_secret(query: &str) -> NewRelicMetric {
    let key = |key: &str| SecretKeyRef { name: "newrelic".into(), key: key.into() };
    NewRelicMetric {
        query: query.into(),
        api_key: key("personal-api-key"),
        account_id_secret_key_ref: Some(key("account-id")),
        ..Default::default()
    }
}

async fn namespace(stack: &Stack, server: &Server) -> String {
    let address = format!("{}/graphql", server.address);
    let data = [("personal-api-key", KEY), ("account-id", ACCOUNT), ("wrong-key", "NRAK-WRONG"), ("base-url-nerdgraph", &address)];
    namespace_with_secret_data(stack, "newrelic", &data).await
}

register_test!(350, a_new_relic_query_sends_the_nrql_as_a_variable_with_the_key_from_a_secret);
pub async fn a_new_relic_query_sends_the_nrql_as_a_variable_with_the_key_from_a_secret(stack: Arc<Stack>) {
    let (server, seen) = nerdgraph().await;
    let namespace = namespace(&stack, &server).await;
    let providers = providers(&stack).await;
    // Quotes and braces that would end a GraphQL string or document if pasted into one.
    let nrql =
        r#"SELECT percentage(count(*), WHERE error IS true) AS errorRate FROM Transaction WHERE appName = "a\"}" SINCE 5 minutes ago"#;
    let spec = NewRelicMetric { timeout: Some("20s".into()), ..from_secret(nrql) };
    let mut run = Run::of(metric(spec, "result.errorRate < 0.01"));
    assert_eq!(run.measure(&providers, &namespace).await, Ok(MeasuredValue::Json(json!({"errorRate": 0.004}))));
    assert_eq!(run.status.phase, AnalysisPhase::Successful, "{:?}", run.status.message);
    let (headers, request) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(headers.get("api-key").unwrap(), KEY);
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    let document = request["query"].as_str().unwrap();
    assert!(document.contains("account(id: $accountId)") && document.contains("nrql(query: $nrql"), "{document}");
    assert!(!document.contains("Transaction"), "the NRQL is not pasted into the document: {document}");
    assert_eq!(request["variables"], json!({"accountId": 1234567, "nrql": nrql, "timeout": 20}));

    // The account id written in the metric; NerdGraph's address from the Secret still.
    let plain = NewRelicMetric { account_id: Some("7654321".into()), account_id_secret_key_ref: None, ..from_secret("SELECT 1") };
    Run::of(metric(plain, "result.errorRate < 0.01")).measure(&providers, &namespace).await.unwrap();
    assert_eq!(seen.lock().unwrap().last().unwrap().1["variables"]["accountId"], 7654321);
    drop_namespace(&stack, &namespace).await;
}

register_test!(355, several_new_relic_rows_are_a_list_and_none_is_no_data);
pub async fn several_new_relic_rows_are_a_list_and_none_is_no_data(stack: Arc<Stack>) {
    let (server, _) = nerdgraph().await;
    let namespace = namespace(&stack, &server).await;
    let providers = providers(&stack).await;
    let faceted = from_secret("SELECT count(*) FROM TransactionError FACET appName SINCE 10 minutes ago");
    let mut run = Run::of(metric(faceted, "result.all(row, row['count'] < 10)"));
    let value = run.measure(&providers, &namespace).await.unwrap();
    assert_eq!(
        value,
        MeasuredValue::Json(
            json!([{"facet": "checkout", "appName": "checkout", "count": 3}, {"facet": "basket", "appName": "basket", "count": 12}])
        )
    );
    assert_eq!(run.status.phase, AnalysisPhase::Failed, "basket has 12: {:?}", run.status.message);

    let mut run = Run::of(metric(from_secret("SELECT * FROM nothing"), "result.errorRate < 0.01"));
    assert_eq!(run.measure(&providers, &namespace).await, Ok(MeasuredValue::NoData));
    assert_eq!(run.last_phase(), AnalysisPhase::Inconclusive);
    drop_namespace(&stack, &namespace).await;
}

register_test!(360, new_relic_errors_quote_the_message_and_never_the_key);
pub async fn new_relic_errors_quote_the_message_and_never_the_key(stack: Arc<Stack>) {
    let (server, _) = nerdgraph().await;
    let namespace = namespace(&stack, &server).await;
    let providers = providers(&stack).await;
    let error = Run::of(metric(from_secret("SELEC count(*) FROM Transaction"), "true")).measure(&providers, &namespace).await.unwrap_err();
    assert_eq!(error.category(), "query", "{error}");
    assert!(error.to_string().contains("NRQL Syntax Error: Error at line 1 position 1"), "{error}");

    let error = Run::of(metric(from_secret("SELECT overload FROM Transaction"), "true")).measure(&providers, &namespace).await.unwrap_err();
    assert_eq!(error.category(), "status", "{error}");
    assert!(error.to_string().contains("503 Service Unavailable: upstream overloaded"), "{error}");

    let wrong = NewRelicMetric { api_key: SecretKeyRef { name: "newrelic".into(), key: "wrong-key".into() }, ..from_secret("SELECT 1") };
    let mut run = Run::of(metric(wrong, "true"));
    let error = run.measure(&providers, &namespace).await.unwrap_err();
    assert_eq!(error.category(), "status", "{error}");
    assert!(error.to_string().contains("401 Unauthorized") && error.to_string().contains("Invalid API key: ***"), "{error}");
    let recorded = serde_json::to_string(&run.status).unwrap();
    assert!(!recorded.contains("NRAK-WRONG") && !error.to_string().contains("NRAK-WRONG"), "the key is hidden: {recorded}");
    drop_namespace(&stack, &namespace).await;
}

register_test!(365, a_denied_new_relic_address_never_sees_the_key);
pub async fn a_denied_new_relic_address_never_sees_the_key(stack: Arc<Stack>) {
    let (server, seen) = nerdgraph().await;
    let namespace = namespace(&stack, &server).await;
    let mut run = Run::of(metric(from_secret("SELECT 1"), "true"));
    let error = run.measure(&providers_allowing(&stack, &[]).await, &namespace).await.unwrap_err();
    assert_eq!(error.category(), "denied", "loopback is not allowed by default: {error}");
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
    assert_eq!(run.last_phase(), AnalysisPhase::Error);
    drop_namespace(&stack, &namespace).await;
}
