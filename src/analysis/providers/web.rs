//! Web: an HTTP GET or POST; the value is the JSON answer, or the part `jsonPath` selects.
//! A JSON number is a number for the conditions; anything else is the JSON document itself.

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;
use serde_json_path::JsonPath;

use super::{ProviderError, egress_error, excerpt, finite, http_error, read_answer, secret};
use crate::analysis::condition::MeasuredValue;
use crate::api::{HttpMethod, WebMetric};
use crate::egress::Egress;

/// The destination is checked before any Secret is read, so a denied URL never sees one.
pub async fn measure(
    egress: &Egress,
    kube: Option<&kube::Client>,
    namespace: &str,
    spec: &WebMetric,
) -> Result<MeasuredValue, ProviderError> {
    let method = match spec.method {
        Some(HttpMethod::Post) => Method::POST,
        Some(HttpMethod::Get) | None => Method::GET,
    };
    let what = format!("web {method} {}", spec.url);
    let path = match &spec.json_path {
        None => None,
        Some(text) => Some((
            JsonPath::parse(text).map_err(|e| ProviderError::Config(format!("provider.web.jsonPath `{text}` is not a JSON path: {e}")))?,
            text.as_str(),
        )),
    };
    let url =
        reqwest::Url::parse(&spec.url).map_err(|e| ProviderError::Config(format!("provider.web.url `{}` is not a URL: {e}", spec.url)))?;
    let http = egress.client(Some(namespace), &url).await.map_err(|e| egress_error(&what, e))?;
    let mut headers = HeaderMap::new();
    for header in &spec.headers {
        let (value, sensitive) = match (&header.value, &header.secret_key_ref) {
            (Some(value), None) => (value.clone(), false),
            (None, Some(reference)) => (secret::value(kube, namespace, reference).await?, true),
            _ => {
                return Err(ProviderError::Config(format!(
                    "provider.web header {} sets exactly one of value or secretKeyRef",
                    header.name
                )));
            }
        };
        let (name, value) = secret::header(&header.name, &value, sensitive)?;
        headers.append(name, value);
    }
    let mut request = http.request(method, url);
    if let Some(body) = &spec.body {
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        request = request.body(body.clone());
    }
    let response = request.headers(headers).send().await.map_err(|e| http_error(&what, &e))?;
    let status = response.status();
    let text = read_answer(&what, response, egress.max_answer()).await?;
    if !status.is_success() {
        return Err(ProviderError::Status(format!("{what}: answered {status}: {}", excerpt(&text))));
    }
    value_of(&what, &text, path.as_ref().map(|(p, t)| (p, *t)))
}

/// The measured value of an answer: empty or `null` is no data.
fn value_of(what: &str, text: &str, path: Option<(&JsonPath, &str)>) -> Result<MeasuredValue, ProviderError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(MeasuredValue::NoData);
    }
    let document: Value = match (serde_json::from_str(text), path) {
        (Ok(document), _) => document,
        (Err(_), None) => {
            return Ok(match text.parse::<f64>() {
                Ok(number) => finite(number),
                Err(_) => MeasuredValue::Json(Value::String(text.to_string())),
            });
        }
        (Err(e), Some(_)) => {
            return Err(ProviderError::Response(format!("{what}: the answer is not JSON ({e}): {}", excerpt(text))));
        }
    };
    let Some((path, path_text)) = path else {
        return Ok(of(&document));
    };
    let nodes = path.query(&document).all();
    match nodes.as_slice() {
        [] => Err(ProviderError::Response(format!(
            "{what}: jsonPath `{path_text}` matches nothing in the answer: {}; fix provider.web.jsonPath",
            excerpt(text)
        ))),
        [one] => Ok(of(one)),
        many => {
            let numbers: Option<Vec<f64>> = many.iter().map(|v| v.as_f64()).collect();
            Ok(match numbers {
                Some(numbers) => MeasuredValue::vector(numbers.into_iter().filter(|v| v.is_finite()).collect()),
                None => MeasuredValue::Json(Value::Array(many.iter().map(|v| (*v).clone()).collect())),
            })
        }
    }
}

fn of(value: &Value) -> MeasuredValue {
    match value {
        Value::Null => MeasuredValue::NoData,
        Value::Number(number) => number.as_f64().map_or(MeasuredValue::NoData, finite),
        other => MeasuredValue::Json(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(text: &str, path: &str) -> Result<MeasuredValue, ProviderError> {
        let parsed = JsonPath::parse(path).unwrap();
        value_of("web GET http://x", text, Some((&parsed, path)))
    }

    #[test]
    fn numbers_become_doubles_and_the_rest_stays_json() {
        assert_eq!(at(r#"{"data": {"rate": 1}}"#, "$.data.rate"), Ok(MeasuredValue::scalar(1.0)));
        assert_eq!(at(r#"{"data": {"ok": true}}"#, "$.data.ok"), Ok(MeasuredValue::Json(json!(true))));
        assert_eq!(at(r#"{"data": {"s": "green"}}"#, "$.data.s"), Ok(MeasuredValue::Json(json!("green"))));
        assert_eq!(at(r#"{"v": [1, 2.5]}"#, "$.v[*]"), Ok(MeasuredValue::vector(vec![1.0, 2.5])));
        assert_eq!(at(r#"{"v": [1, "a"]}"#, "$.v[*]"), Ok(MeasuredValue::Json(json!([1, "a"]))));
        assert_eq!(value_of("w", r#"{"a": 1}"#, None), Ok(MeasuredValue::Json(json!({"a": 1}))));
        assert_eq!(value_of("w", "0.25\n", None), Ok(MeasuredValue::scalar(0.25)));
        assert_eq!(value_of("w", "healthy", None), Ok(MeasuredValue::Json(json!("healthy"))));
    }

    #[test]
    fn nothing_is_no_data_and_a_wrong_path_is_an_error() {
        assert_eq!(value_of("w", "  ", None), Ok(MeasuredValue::NoData));
        assert_eq!(at(r#"{"rate": null}"#, "$.rate"), Ok(MeasuredValue::NoData));
        assert_eq!(
            at(r#"{"v": []}"#, "$.v[*]"),
            Err(ProviderError::Response(
                "web GET http://x: jsonPath `$.v[*]` matches nothing in the answer: {\"v\": []}; fix provider.web.jsonPath".into()
            ))
        );
        assert!(matches!(at("<html>", "$.rate"), Err(ProviderError::Response(m)) if m.contains("not JSON")));
    }
}
