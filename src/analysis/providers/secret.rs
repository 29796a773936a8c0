//! Header values kept in Secrets, read from the rollout's namespace at each measurement (so a
//! rotated credential is used at the next measurement).
//!
//! Sluice may read no Secret by default: a namespace owner offers one with a Role granting `get`
//! on that Secret by name, bound to Sluice's ServiceAccount (docs/security.md).

use k8s_openapi::api::core::v1::Secret;
use reqwest::header::{HeaderName, HeaderValue};

use super::ProviderError;
use crate::api::SecretKeyRef;

/// The value of `reference` in `namespace`.
pub async fn value(kube: Option<&kube::Client>, namespace: &str, reference: &SecretKeyRef) -> Result<String, ProviderError> {
    read(kube, namespace, reference, true).await.map(Option::unwrap_or_default)
}

/// The value of `reference` in `namespace`, or `None` when the Secret has no such key.
pub async fn optional_value(
    kube: Option<&kube::Client>,
    namespace: &str,
    reference: &SecretKeyRef,
) -> Result<Option<String>, ProviderError> {
    read(kube, namespace, reference, false).await
}

async fn read(
    kube: Option<&kube::Client>,
    namespace: &str,
    reference: &SecretKeyRef,
    required: bool,
) -> Result<Option<String>, ProviderError> {
    let at = format!("Secret {namespace}/{}", reference.name);
    let Some(client) = kube else {
        return Err(ProviderError::Secret(format!("reading {at} needs the Kubernetes API, and this Sluice has no client for it")));
    };
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    let secret = api.get(&reference.name).await.map_err(|error| match &error {
        kube::Error::Api(status) if status.code == 404 => {
            ProviderError::Secret(format!("{at} not found: create it in the rollout's namespace, or fix secretKeyRef.name"))
        }
        kube::Error::Api(status) if status.code == 403 => {
            ProviderError::Secret(format!(
                "Sluice may not read {at}: it reads only Secrets offered to it. To offer this one, create in namespace {namespace} a Role granting `get` on secrets with resourceNames: [{}], and a RoleBinding of it to Sluice's ServiceAccount (see docs/security.md)",
                reference.name
            ))
        }
        _ => ProviderError::Unreachable(format!("cannot read {at}: {}", super::chain(&error))),
    })?;
    let data = secret.data.unwrap_or_default();
    let Some(bytes) = data.get(&reference.key) else {
        if !required {
            return Ok(None);
        }
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        return Err(ProviderError::Secret(format!(
            "{at} has no key `{}` (its keys: {}); fix secretKeyRef.key",
            reference.key,
            if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
        )));
    };
    String::from_utf8(bytes.0.clone())
        .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_string()))
        .map_err(|_| ProviderError::Secret(format!("{at}, key `{}`, is not UTF-8 text", reference.key)))
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
