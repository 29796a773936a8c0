//! Datadog: metrics queries through the v2 scalar API (`POST /api/v2/query/scalar`), with the
//! API and application keys read from Secrets at each measurement. One value is a number for
//! the conditions; one per group is a list.

use jiff::{SignedDuration, Timestamp};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::{ProviderError, egress_error, excerpt, finite, http_error, read_answer, secret};
use crate::analysis::condition::MeasuredValue;
use crate::api::{DatadogAggregator, DatadogMetric};
use crate::egress::Egress;

pub const DEFAULT_ADDRESS: &str = "https://api.datadoghq.com";
/// The key of the API key's Secret that may hold the site's address.
pub const ADDRESS_KEY: &str = "address";
const DEFAULT_INTERVAL: SignedDuration = SignedDuration::from_mins(5);

/// A denied address never sees a key: the destination is checked before the keys are taken
/// (only the site's address may be read from their Secret first). The Secret is read once when
/// both keys are in it.
pub async fn measure(
    egress: &Egress,
    kube: Option<&kube::Client>,
    namespace: &str,
    spec: &DatadogMetric,
    now: Timestamp,
) -> Result<MeasuredValue, ProviderError> {
    // As in Argo Rollouts, the Secret may say which site the account is on.
    let (address, keys) = match &spec.address {
        Some(address) => (address.clone(), None),
        None => {
            let keys = secret::read(kube, namespace, &spec.api_key.name).await?;
            (keys.optional(ADDRESS_KEY)?.unwrap_or_else(|| DEFAULT_ADDRESS.into()), Some(keys))
        }
    };
    let address = address.trim_end_matches('/');
    let what = format!("datadog at {address}");
    let url = reqwest::Url::parse(&format!("{address}/api/v2/query/scalar"))
        .map_err(|e| ProviderError::Config(format!("provider.datadog.address `{address}` is not a URL: {e}")))?;
    let body = request(spec, now)?;
    let http = egress.client(Some(namespace), &url).await.map_err(|e| egress_error(&what, e))?;
    let keys = match keys {
        Some(keys) => keys,
        None => secret::read(kube, namespace, &spec.api_key.name).await?,
    };
    let application_key = match spec.application_key.name == spec.api_key.name {
        true => keys.value(&spec.application_key.key)?,
        false => secret::value(kube, namespace, &spec.application_key).await?,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in [("DD-API-KEY", keys.value(&spec.api_key.key)?), ("DD-APPLICATION-KEY", application_key)] {
        let (name, value) = secret::header(name, &value, true)?;
        headers.insert(name, value);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let response = http.post(url).headers(headers).body(body.to_string()).send().await.map_err(|e| http_error(&what, &e))?;
    let status = response.status();
    let text = read_answer(&what, response, egress.max_answer()).await?;
    if !status.is_success() {
        return Err(ProviderError::Status(format!("{what}: answered {status}: {}", excerpt(&text))));
    }
    value_of(&what, &text)
}

/// The scalar request: every query over `interval` up to `now`, reduced by the aggregator.
fn request(spec: &DatadogMetric, now: Timestamp) -> Result<Value, ProviderError> {
    let interval = match &spec.interval {
        None => DEFAULT_INTERVAL,
        Some(d) => {
            let duration = d.to_duration().map_err(|e| ProviderError::Config(format!("provider.datadog.interval: {e}")))?;
            SignedDuration::try_from(duration).map_err(|e| ProviderError::Config(format!("provider.datadog.interval: {e}")))?
        }
    };
    let aggregator = serde_json::to_value(spec.aggregator.unwrap_or(DatadogAggregator::Last)).expect("an aggregator serializes");
    let named: Vec<(&str, &str)> = match &spec.query {
        Some(query) => vec![("query", query.as_str())],
        None => spec.queries.iter().map(|(name, query)| (name.as_str(), query.as_str())).collect(),
    };
    let formula = match (&spec.formula, named.as_slice()) {
        (Some(formula), _) => formula.clone(),
        (None, [(only, _)]) => only.to_string(),
        _ => {
            return Err(ProviderError::Config(
                "provider.datadog: several queries need a formula that combines them, such as `errors / requests`".into(),
            ));
        }
    };
    let queries: Vec<Value> = named
        .iter()
        .map(|(name, query)| json!({"data_source": "metrics", "name": name, "query": query, "aggregator": aggregator}))
        .collect();
    let from = now.checked_sub(interval).map_err(|e| ProviderError::Config(format!("provider.datadog.interval: {e}")))?;
    Ok(json!({"data": {"type": "scalar_request", "attributes": {
        "formulas": [{"formula": formula}],
        "queries": queries,
        "from": from.as_millisecond(),
        "to": now.as_millisecond()
    }}}))
}

/// The formula's column of the answer: no value is no data, one is a number, several a list.
fn value_of(what: &str, text: &str) -> Result<MeasuredValue, ProviderError> {
    let answer: Value = serde_json::from_str(text)
        .map_err(|e| ProviderError::Response(format!("{what}: the answer is not JSON ({e}): {}", excerpt(text))))?;
    if let Some(errors) = answer["errors"].as_array().filter(|e| !e.is_empty()) {
        let messages: Vec<String> = errors.iter().map(|e| e.as_str().map_or_else(|| e.to_string(), String::from)).collect();
        return Err(ProviderError::Query(format!("{what}: {}", messages.join("; "))));
    }
    let columns = answer["data"]["attributes"]["columns"]
        .as_array()
        .ok_or_else(|| ProviderError::Response(format!("{what}: the answer has no data.attributes.columns: {}", excerpt(text))))?;
    let Some(column) = columns.iter().find(|c| c["type"] == "number") else {
        return Ok(MeasuredValue::NoData);
    };
    let values: Vec<f64> = column["values"].as_array().map(|v| v.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
    Ok(match values.as_slice() {
        [] => MeasuredValue::NoData,
        [one] => finite(*one),
        many => MeasuredValue::vector(many.iter().copied().filter(|v| v.is_finite()).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SecretKeyRef;

    fn spec() -> DatadogMetric {
        let key = |key: &str| SecretKeyRef { name: "datadog".into(), key: key.into() };
        DatadogMetric {
            query: Some("avg:latency{service:a}".into()),
            api_key: key("api-key"),
            application_key: key("app-key"),
            ..Default::default()
        }
    }

    #[test]
    fn the_request_asks_for_one_value_per_query_over_the_interval() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let body = request(&DatadogMetric { interval: Some("2m".into()), ..spec() }, now).unwrap();
        let attributes = &body["data"]["attributes"];
        assert_eq!(body["data"]["type"], "scalar_request");
        assert_eq!(attributes["formulas"], json!([{"formula": "query"}]));
        assert_eq!(
            attributes["queries"],
            json!([{"data_source": "metrics", "name": "query", "query": "avg:latency{service:a}", "aggregator": "last"}])
        );
        assert_eq!((attributes["from"].as_i64(), attributes["to"].as_i64()), (Some(1_799_999_880_000), Some(1_800_000_000_000)));

        let combined = DatadogMetric {
            query: None,
            queries: [("errors".into(), "sum:e{*}".into()), ("requests".into(), "sum:r{*}".into())].into(),
            formula: Some("errors / requests".into()),
            aggregator: Some(DatadogAggregator::Sum),
            ..spec()
        };
        let body = request(&combined, now).unwrap();
        assert_eq!(body["data"]["attributes"]["formulas"], json!([{"formula": "errors / requests"}]));
        assert_eq!(body["data"]["attributes"]["queries"][1]["aggregator"], "sum");
        let unformulated = DatadogMetric { formula: None, ..combined };
        assert!(matches!(request(&unformulated, now), Err(ProviderError::Config(m)) if m.contains("need a formula")));
    }

    #[test]
    fn the_number_column_is_the_value() {
        let answer = |values: Value| {
            json!({"data": {"type": "scalar_response", "attributes": {"columns": [
                {"name": "service", "type": "group", "values": [["a"], ["b"]]},
                {"name": "query", "type": "number", "values": values}
            ]}}})
            .to_string()
        };
        assert_eq!(value_of("dd", &answer(json!([0.25]))), Ok(MeasuredValue::scalar(0.25)));
        assert_eq!(value_of("dd", &answer(json!([1.0, 2.0]))), Ok(MeasuredValue::vector(vec![1.0, 2.0])));
        assert_eq!(value_of("dd", &answer(json!([]))), Ok(MeasuredValue::NoData));
        assert_eq!(value_of("dd", &answer(json!([null]))), Ok(MeasuredValue::NoData));
        let failed = value_of("dd", r#"{"errors": ["Invalid query"]}"#).unwrap_err();
        assert_eq!(failed, ProviderError::Query("dd: Invalid query".into()));
        assert!(matches!(value_of("dd", "<html>"), Err(ProviderError::Response(_))));
    }
}
