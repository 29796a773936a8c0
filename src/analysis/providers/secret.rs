//! Header values and analysis arguments kept in Secrets, read from the rollout's namespace at
//! each measurement (so a rotated credential is used at the next measurement).
//!
//! Sluice may read no Secret by default: a namespace owner offers one with a Role granting `get`
//! on that Secret by name, bound to Sluice's ServiceAccount (docs/security.md).

use k8s_openapi::api::core::v1::Secret;
use reqwest::header::{HeaderName, HeaderValue};

use super::ProviderError;
use crate::api::{AnalysisArg, Metric, SecretKeyRef};

/// The value of `reference` in `namespace`.
pub async fn value(kube: Option<&kube::Client>, namespace: &str, reference: &SecretKeyRef) -> Result<String, ProviderError> {
    read(kube, namespace, &reference.name).await?.value(&reference.key)
}

/// `metric` with its references to arguments from Secrets replaced by their values, read now,
/// and those values, so that anything recorded can be cleared of them. The run holds only the
/// references.
pub async fn substitute_args(
    kube: Option<&kube::Client>,
    namespace: &str,
    metric: &Metric,
    args: &[AnalysisArg],
) -> Result<(Metric, Vec<String>), ProviderError> {
    let mut text = serde_json::to_string(metric).expect("a metric serializes");
    let mut values = Vec::new();
    for arg in args {
        let Some(reference) = arg.value_from.as_ref().and_then(|from| from.secret_key_ref.as_ref()) else { continue };
        let placeholder = format!("{{{{args.{}}}}}", arg.name);
        if !text.contains(&placeholder) {
            continue;
        }
        let value = self::value(kube, namespace, reference).await?;
        let quoted = serde_json::to_string(&value).expect("text serializes");
        text = text.replace(&placeholder, &quoted[1..quoted.len() - 1]);
        values.push(value);
    }
    let metric = serde_json::from_str(&text).expect("substitution keeps JSON valid");
    Ok((metric, values))
}

/// `text` with every one of `secrets` masked.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_string(), |text, secret| text.replace(secret.as_str(), "***"))
}

/// One Secret's data, read once for the several keys a provider takes from it.
pub struct SecretData {
    at: String,
    data: std::collections::BTreeMap<String, k8s_openapi::ByteString>,
}

impl SecretData {
    /// Data as if read from a Secret, for tests.
    #[cfg(test)]
    pub fn of(at: &str, pairs: &[(&str, &str)]) -> Self {
        let data = pairs.iter().map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.as_bytes().to_vec()))).collect();
        Self { at: at.into(), data }
    }

    /// The text under `key`.
    pub fn value(&self, key: &str) -> Result<String, ProviderError> {
        self.optional(key)?.ok_or_else(|| {
            let keys: Vec<&str> = self.data.keys().map(String::as_str).collect();
            ProviderError::Secret(format!(
                "{} has no key `{key}` (its keys: {}); fix secretKeyRef.key",
                self.at,
                if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
            ))
        })
    }

    /// The text under `key`, or `None` when the Secret has no such key.
    pub fn optional(&self, key: &str) -> Result<Option<String>, ProviderError> {
        let Some(bytes) = self.data.get(key) else { return Ok(None) };
        String::from_utf8(bytes.0.clone())
            .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_string()))
            .map_err(|_| ProviderError::Secret(format!("{}, key `{key}`, is not UTF-8 text", self.at)))
    }
}

/// The Secret `name` in `namespace`.
pub async fn read(kube: Option<&kube::Client>, namespace: &str, name: &str) -> Result<SecretData, ProviderError> {
    let at = format!("Secret {namespace}/{name}");
    let Some(client) = kube else {
        return Err(ProviderError::Secret(format!("reading {at} needs the Kubernetes API, and this Sluice has no client for it")));
    };
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    let secret = api.get(name).await.map_err(|error| match &error {
        kube::Error::Api(status) if status.code == 404 => {
            ProviderError::Secret(format!("{at} not found: create it in the rollout's namespace, or fix secretKeyRef.name"))
        }
        kube::Error::Api(status) if status.code == 403 => {
            ProviderError::Secret(format!(
                "Sluice may not read {at}: it reads only Secrets offered to it. To offer this one, create in namespace {namespace} a Role granting `get` on secrets with resourceNames: [{name}], and a RoleBinding of it to Sluice's ServiceAccount (see docs/security.md)"
            ))
        }
        _ => ProviderError::Unreachable(format!("cannot read {at}: {}", super::chain(&error))),
    })?;
    Ok(SecretData { at, data: secret.data.unwrap_or_default() })
}

/// A header from a name and a value; a value from a Secret is marked sensitive (kept out of logs).
pub fn header(name: &str, value: &str, sensitive: bool) -> Result<(HeaderName, HeaderValue), ProviderError> {
    let header_name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| ProviderError::Config(format!("`{name}` is not a valid HTTP header name")))?;
    let mut header_value = HeaderValue::from_str(value)
        .map_err(|_| ProviderError::Config(format!("the value of header {name} is not valid in HTTP (control characters?)")))?;
    header_value.set_sensitive(sensitive);
    Ok((header_name, header_value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked() {
        let (name, value) = header("Authorization", "Bearer x", true).unwrap();
        assert_eq!(name, "authorization");
        assert!(value.is_sensitive());
        assert!(matches!(header("bad name", "x", false), Err(ProviderError::Config(_))));
        assert!(matches!(header("X-A", "a\nb", false), Err(ProviderError::Config(_))));
    }
}
