//! New Relic: one NRQL query through NerdGraph (`actor.account.nrql`), with the User API key
//! (and the account id, when it is not written in the metric) read from Secrets at each
//! measurement. The NRQL travels as a GraphQL variable, so no text of it is parsed as GraphQL.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::{ProviderError, egress_error, excerpt, http_error, read_answer, secret};
use crate::analysis::condition::MeasuredValue;
use crate::api::{NewRelicMetric, NewRelicRegion};
use crate::egress::Egress;

pub const US_ADDRESS: &str = "https://api.newrelic.com/graphql";
pub const EU_ADDRESS: &str = "https://api.eu.newrelic.com/graphql";
/// Keys of the API key's Secret that may say where NerdGraph is, as Argo Rollouts keeps them.
pub const ADDRESS_KEY: &str = "base-url-nerdgraph";
pub const REGION_KEY: &str = "region";
/// The longest NRQL timeout NerdGraph takes.
const MAX_NRQL_TIMEOUT: u64 = 120;

/// The NRQL query, its account and its timeout as variables of one GraphQL document.
const DOCUMENT: &str = "query SluiceMeasurement($accountId: Int!, $nrql: Nrql!, $timeout: Seconds) \
    { actor { account(id: $accountId) { nrql(query: $nrql, timeout: $timeout) { results } } } }";

/// A denied address never sees the key: the destination is checked before the key is taken
/// (only NerdGraph's address may be read from its Secret first). The Secret is read once when
/// the account id is in it too.
pub async fn measure(
    egress: &Egress,
    kube: Option<&kube::Client>,
    namespace: &str,
    spec: &NewRelicMetric,
    timeout: Duration,
) -> Result<MeasuredValue, ProviderError> {
    let (address, keys) = match (&spec.address, spec.region) {
        (Some(address), _) => (address.clone(), None),
        (None, Some(region)) => (region_address(region).into(), None),
        (None, None) => {
            let keys = secret::read(kube, namespace, &spec.api_key.name).await?;
            (address_in_secret(&keys)?, Some(keys))
        }
    };
    let what = format!("new relic at {address}");
    let url = reqwest::Url::parse(&address)
        .map_err(|e| ProviderError::Config(format!("provider.newRelic.address `{address}` is not a URL: {e}")))?;
    let http = egress.client(Some(namespace), &url).await.map_err(|e| egress_error(&what, e))?;
    let keys = match keys {
        Some(keys) => keys,
        None => secret::read(kube, namespace, &spec.api_key.name).await?,
    };
    let account = match (&spec.account_id, &spec.account_id_secret_key_ref) {
        (Some(id), _) => id.clone(),
        (None, Some(reference)) if reference.name == spec.api_key.name => keys.value(&reference.key)?,
        (None, Some(reference)) => secret::value(kube, namespace, reference).await?,
        (None, None) => return Err(ProviderError::Config("provider.newRelic needs accountId or accountIdSecretKeyRef".into())),
    };
    let api_key = keys.value(&spec.api_key.key)?;
    let body = request(&spec.query, &account, timeout)?;
    let (name, value) = secret::header("API-Key", &api_key, true)?;
    let mut headers = HeaderMap::new();
    headers.insert(name, value);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Nothing New Relic answers should quote the key, but an answer is not trusted to.
    let hidden = |error: ProviderError| hide(error, &api_key);
    let response = http.post(url).headers(headers).body(body.to_string()).send().await.map_err(|e| hidden(http_error(&what, &e)))?;
    let status = response.status();
    let text = read_answer(&what, response, egress.max_answer()).await.map_err(hidden)?;
    if !status.is_success() {
        return Err(hidden(ProviderError::Status(format!("{what}: answered {status}: {}", excerpt(&text)))));
    }
    value_of(&what, &text).map_err(hidden)
}

fn region_address(region: NewRelicRegion) -> &'static str {
    match region {
        NewRelicRegion::Us => US_ADDRESS,
        NewRelicRegion::Eu => EU_ADDRESS,
    }
}

/// NerdGraph's address as the API key's Secret may give it: a full address, else a region.
fn address_in_secret(keys: &secret::SecretData) -> Result<String, ProviderError> {
    if let Some(address) = keys.optional(ADDRESS_KEY)?.filter(|a| !a.trim().is_empty()) {
        return Ok(address.trim().to_string());
    }
    match keys.optional(REGION_KEY)?.as_deref().map(str::trim).map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "us") => Ok(US_ADDRESS.into()),
        Some("eu") => Ok(EU_ADDRESS.into()),
        Some(other) => Err(ProviderError::Config(format!(
            "the API key's Secret says region `{other}`; New Relic's regions are `us` and `eu` (or set provider.newRelic.region)"
        ))),
    }
}

/// The GraphQL request: the document, and the query, account and timeout as its variables.
fn request(nrql: &str, account: &str, timeout: Duration) -> Result<Value, ProviderError> {
    let account: i32 = account.trim().parse().ok().filter(|id| *id > 0).ok_or_else(|| {
        ProviderError::Config(format!("the New Relic account id `{}` is not a positive number", crate::text::truncate(account, 24)))
    })?;
    let seconds = timeout.as_secs().clamp(1, MAX_NRQL_TIMEOUT);
    Ok(json!({"query": DOCUMENT, "variables": {"accountId": account, "nrql": nrql, "timeout": seconds}}))
}

/// `data.actor.account.nrql.results`: one row is an object, several a list, none no data.
fn value_of(what: &str, text: &str) -> Result<MeasuredValue, ProviderError> {
    let answer: Value = serde_json::from_str(text)
        .map_err(|e| ProviderError::Response(format!("{what}: the answer is not JSON ({e}): {}", excerpt(text))))?;
    if let Some(errors) = answer["errors"].as_array().filter(|e| !e.is_empty()) {
        let messages: Vec<String> = errors.iter().map(|e| e["message"].as_str().map_or_else(|| e.to_string(), String::from)).collect();
        return Err(ProviderError::Query(format!("{what}: {}", messages.join("; "))));
    }
    let results = answer["data"]["actor"]["account"]["nrql"]["results"]
        .as_array()
        .ok_or_else(|| ProviderError::Response(format!("{what}: the answer has no data.actor.account.nrql.results: {}", excerpt(text))))?;
    Ok(match results.as_slice() {
        [] => MeasuredValue::NoData,
        // An aggregate over no events answers one row of nulls (`{"average.duration": null}`).
        [row] if row.as_object().is_some_and(|fields| fields.values().all(Value::is_null)) => MeasuredValue::NoData,
        [row] => MeasuredValue::Json(row.clone()),
        rows => MeasuredValue::Json(Value::Array(rows.to_vec())),
    })
}

/// `error` with every occurrence of `key` masked.
fn hide(error: ProviderError, key: &str) -> ProviderError {
    let keys = [key.to_string()];
    let scrub = |text: String| secret::scrub(&text, &keys);
    match error {
        ProviderError::Config(m) => ProviderError::Config(scrub(m)),
        ProviderError::Secret(m) => ProviderError::Secret(scrub(m)),
        ProviderError::Unreachable(m) => ProviderError::Unreachable(scrub(m)),
        ProviderError::Timeout(m) => ProviderError::Timeout(scrub(m)),
        ProviderError::Status(m) => ProviderError::Status(scrub(m)),
        ProviderError::Query(m) => ProviderError::Query(scrub(m)),
        ProviderError::Response(m) => ProviderError::Response(scrub(m)),
        ProviderError::NotFound(m) => ProviderError::NotFound(scrub(m)),
        ProviderError::Denied(m) => ProviderError::Denied(scrub(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nrql_is_a_variable_not_part_of_the_document() {
        let nrql = r#"SELECT count(*) FROM Transaction WHERE name = "a\"b" } } mutation { x }"#;
        let body = request(nrql, " 1234567\n", Duration::from_secs(30)).unwrap();
        assert_eq!(body["query"], DOCUMENT);
        assert_eq!(body["variables"], json!({"accountId": 1234567, "nrql": nrql, "timeout": 30}));
        let long = request("x", "1", Duration::from_secs(600)).unwrap();
        assert_eq!(long["variables"]["timeout"], 120, "NerdGraph's limit");
        let short = request("x", "1", Duration::from_millis(250)).unwrap();
        assert_eq!(short["variables"]["timeout"], 1);
        for bad in ["", "abc", "0", "-4", "99999999999"] {
            assert!(matches!(request("x", bad, Duration::from_secs(5)), Err(ProviderError::Config(_))), "{bad}");
        }
    }

    fn answer(results: Value) -> String {
        json!({"data": {"actor": {"account": {"nrql": {"results": results}}}}}).to_string()
    }

    #[test]
    fn one_row_is_an_object_several_a_list_none_no_data() {
        assert_eq!(value_of("nr", &answer(json!([{"errorRate": 0.004}]))), Ok(MeasuredValue::Json(json!({"errorRate": 0.004}))));
        let rows = json!([{"appName": "a", "count": 3}, {"appName": "b", "count": 5}]);
        assert_eq!(value_of("nr", &answer(rows.clone())), Ok(MeasuredValue::Json(rows)));
        assert_eq!(value_of("nr", &answer(json!([]))), Ok(MeasuredValue::NoData));
        assert_eq!(value_of("nr", &answer(json!([{"average.duration": null}]))), Ok(MeasuredValue::NoData));
        assert_eq!(value_of("nr", &answer(json!([{"count": 0}]))), Ok(MeasuredValue::Json(json!({"count": 0}))));
    }

    #[test]
    fn graphql_errors_are_query_errors_and_other_shapes_response_errors() {
        let failed = json!({"data": {"actor": {"account": {"nrql": null}}}, "errors": [{"message": "NRQL Syntax Error: Error at line 1"}]});
        assert_eq!(value_of("nr", &failed.to_string()), Err(ProviderError::Query("nr: NRQL Syntax Error: Error at line 1".into())));
        assert!(matches!(value_of("nr", r#"{"data": {"actor": null}}"#), Err(ProviderError::Response(_))));
        assert!(matches!(value_of("nr", "<html>"), Err(ProviderError::Response(_))));
    }

    #[test]
    fn the_secret_may_say_where_nerdgraph_is() {
        let data = |pairs: &[(&str, &str)]| secret::SecretData::of("Secret ns/nr", pairs);
        assert_eq!(address_in_secret(&data(&[])), Ok(US_ADDRESS.into()));
        assert_eq!(address_in_secret(&data(&[("region", "EU\n")])), Ok(EU_ADDRESS.into()));
        assert_eq!(
            address_in_secret(&data(&[("region", "eu"), ("base-url-nerdgraph", "https://proxy.example/graphql")])),
            Ok("https://proxy.example/graphql".into())
        );
        assert!(matches!(address_in_secret(&data(&[("region", "mars")])), Err(ProviderError::Config(_))));
    }

    #[test]
    fn the_key_is_hidden_in_errors() {
        let error = hide(ProviderError::Status("answered 401: bad key NRAK-123".into()), "NRAK-123");
        assert_eq!(error, ProviderError::Status("answered 401: bad key ***".into()));
    }
}
