//! `valueFrom.fieldRef`: an analysis argument taken from a field of the Rollout when its run is
//! created.

use std::collections::BTreeMap;

use crate::api::RolloutSpec;

/// The Rollout a field is read from.
pub struct RolloutFields<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub annotations: Option<&'a BTreeMap<String, String>>,
    pub spec: &'a RolloutSpec,
}

/// The text of the field at `path`; an error says what is wrong with the path.
pub fn value(path: &str, rollout: &RolloutFields<'_>) -> Result<String, String> {
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>, what: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().ok_or_else(|| format!("fieldRef {path}: the Rollout has no {what} `{key}`")))
    };
    match path {
        "metadata.name" => return Ok(rollout.name.to_string()),
        "metadata.namespace" => return Ok(rollout.namespace.to_string()),
        _ => {}
    }
    if let Some(found) = keyed("metadata.labels['", rollout.labels, "label") {
        return found;
    }
    if let Some(found) = keyed("metadata.annotations['", rollout.annotations, "annotation") {
        return found;
    }
    let Some(fields) = path.strip_prefix("spec.") else {
        return Err(format!("fieldRef {path}: name metadata.name, metadata.namespace, a label, an annotation or a spec field"));
    };
    let spec = serde_json::to_value(rollout.spec).expect("a spec serializes");
    let found = fields.split('.').try_fold(&spec, |at, field| at.get(field));
    match found {
        Some(serde_json::Value::String(text)) => Ok(text.clone()),
        Some(scalar @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => Ok(scalar.to_string()),
        Some(_) => Err(format!("fieldRef {path} is not a text, number or boolean")),
        None => Err(format!("fieldRef {path}: the Rollout's spec has no such field")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_the_rollout_are_read_as_text() {
        let spec: RolloutSpec = serde_json::from_value(serde_json::json!({
            "workload": {"kubernetes": {"replicas": 3, "selector": {}, "template": {}}},
            "strategy": {"canary": {"stableService": "web-stable"}},
        }))
        .unwrap();
        let labels = BTreeMap::from([("team".to_string(), "payments".to_string())]);
        let rollout = RolloutFields { name: "web", namespace: "shop", labels: Some(&labels), annotations: None, spec: &spec };
        assert_eq!(value("metadata.name", &rollout).as_deref(), Ok("web"));
        assert_eq!(value("metadata.labels['team']", &rollout).as_deref(), Ok("payments"));
        assert_eq!(value("spec.workload.kubernetes.replicas", &rollout).as_deref(), Ok("3"));
        assert_eq!(value("spec.strategy.canary.stableService", &rollout).as_deref(), Ok("web-stable"));
        assert!(value("metadata.annotations['x']", &rollout).unwrap_err().contains("no annotation `x`"));
        assert!(value("spec.workload", &rollout).unwrap_err().contains("not a text"));
        assert!(value("spec.nope", &rollout).unwrap_err().contains("no such field"));
    }
}
