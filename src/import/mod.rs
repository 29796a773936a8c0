//! `sluice import`: Argo Rollouts and Flagger objects converted into Sluice manifests.
//!
//! Pure: manifest text in, Sluice objects and warnings out. Each source object is read as JSON;
//! fields are taken as they map, and every field left over is reported as a warning with its
//! path, so nothing is dropped silently.

mod argo;
mod expr;
mod flagger;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::{AnalysisTemplate, ClusterAnalysisTemplate, DURATION_PATTERN, DeploymentRef, KubernetesWorkload, Rollout, ScaleDown};

pub use expr::{Translation, translate_condition};

/// One Sluice object produced by an import.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    Rollout(Box<Rollout>),
    AnalysisTemplate(AnalysisTemplate),
    ClusterAnalysisTemplate(ClusterAnalysisTemplate),
}

/// A field of a source object that does not map, or maps only in part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// `Kind/name` of the source object.
    pub object: String,
    /// Where the field sits in the source object, e.g. `spec.strategy.canary.trafficRouting.istio`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "warning: {}: {}: {}", self.object, self.path, self.message)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imported {
    pub objects: Vec<Object>,
    pub warnings: Vec<Warning>,
}

impl Imported {
    /// The objects as one multi-document YAML stream.
    pub fn to_yaml(&self) -> String {
        self.objects.iter().map(|o| serde_saphyr::to_string(o).expect("Sluice objects serialize")).collect::<Vec<_>>().join("---\n")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error("{file}: not valid YAML: {reason}")]
    Yaml { file: String, reason: String },
    #[error("no Argo Rollouts Rollout or Flagger Canary in the input")]
    Nothing,
}

pub const ARGO_GROUP: &str = "argoproj.io/";
pub const FLAGGER_GROUP: &str = "flagger.app/";

/// Every document of the input files, with where it came from.
pub(crate) struct Source {
    pub documents: Vec<Value>,
}

impl Source {
    pub fn of_kind<'a>(&'a self, group: &'a str, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.documents.iter().filter(move |d| {
            d["kind"] == kind && d["apiVersion"].as_str().is_some_and(|v| v.starts_with(group) || (group.is_empty() && !v.contains('/')))
        })
    }

    /// A Deployment by name, in `namespace` when the document names one.
    pub fn deployment(&self, name: &str, namespace: Option<&str>) -> Option<&Value> {
        self.of_kind("apps/", "Deployment").find(|d| {
            d["metadata"]["name"] == name
                && (namespace.is_none() || d["metadata"]["namespace"].as_str().is_none_or(|n| Some(n) == namespace))
        })
    }
}

/// Converts every Argo Rollout (with its analysis templates) and every Flagger Canary (with its
/// metric templates and Deployment) found in `files` (name, text).
pub fn import(files: &[(String, String)]) -> Result<Imported, ImportError> {
    let mut documents = Vec::new();
    let mut step_orders = Vec::new();
    for (file, text) in files {
        let yaml = |e: serde_saphyr::Error| ImportError::Yaml { file: file.clone(), reason: e.to_string() };
        let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(yaml)?;
        // JSON objects forget their key order; a step's actions run in the order written.
        // Documents of another shape leave the order unknown: steps then act before they wait.
        let orders: Vec<Option<StepOrder>> = serde_saphyr::from_multiple(text).unwrap_or_default();
        let aligned = orders.len() == docs.len();
        for (doc, order) in docs.into_iter().zip(orders.into_iter().filter(|_| aligned).chain(std::iter::repeat_with(|| None))) {
            if !doc.is_null() {
                documents.push(doc);
                step_orders.push(order.map(StepOrder::keys).unwrap_or_default());
            }
        }
    }
    let source = Source { documents };
    let passed_args = argo::rollout_args(&source);
    let none = BTreeMap::new();
    let mut out = Imported::default();
    let mut converted = false;
    for (document, step_order) in source.documents.iter().zip(&step_orders) {
        let api_version = document["apiVersion"].as_str().unwrap_or_default();
        let kind = document["kind"].as_str().unwrap_or_default();
        let mut warnings = Warnings::new(document);
        match (api_version.split('/').next().unwrap_or_default(), kind) {
            ("argoproj.io", "Rollout") => {
                out.objects.push(Object::Rollout(Box::new(argo::rollout(document.clone(), step_order, &source, &mut warnings))));
                converted = true;
            }
            ("argoproj.io", "AnalysisTemplate") => {
                let passed = passed_args.get(document["metadata"]["name"].as_str().unwrap_or_default()).unwrap_or(&none);
                out.objects.push(Object::AnalysisTemplate(argo::template(document.clone(), passed, &mut warnings)))
            }
            ("argoproj.io", "ClusterAnalysisTemplate") => {
                let passed = passed_args.get(document["metadata"]["name"].as_str().unwrap_or_default()).unwrap_or(&none);
                let template = argo::template(document.clone(), passed, &mut warnings);
                let mut cluster = ClusterAnalysisTemplate::new(&template.metadata.name.clone().unwrap_or_default(), Default::default());
                cluster.metadata.labels = template.metadata.labels;
                cluster.metadata.annotations = template.metadata.annotations;
                cluster.spec.args = template.spec.args;
                cluster.spec.metrics = template.spec.metrics;
                out.objects.push(Object::ClusterAnalysisTemplate(cluster));
            }
            ("flagger.app", "Canary") => {
                out.objects.extend(flagger::canary(document.clone(), &source, &mut warnings));
                converted = true;
            }
            // Read through the Canaries that use them.
            ("flagger.app", "MetricTemplate") | ("apps", "Deployment") => {}
            _ => warnings.warn("", "not an Argo Rollouts or Flagger object; left out (keep applying it as it is)"),
        }
        out.warnings.extend(warnings.list);
    }
    if !converted {
        return Err(ImportError::Nothing);
    }
    Ok(out)
}

/// The keys of each canary step list item, in the order written (`spec.strategy.canary.steps`).
#[derive(serde::Deserialize, Default)]
struct StepOrder {
    #[serde(default)]
    spec: Option<StepOrderSpec>,
}

#[derive(serde::Deserialize)]
struct StepOrderSpec {
    #[serde(default)]
    strategy: Option<StepOrderStrategy>,
}

#[derive(serde::Deserialize)]
struct StepOrderStrategy {
    #[serde(default)]
    canary: Option<StepOrderCanary>,
}

#[derive(serde::Deserialize)]
struct StepOrderCanary {
    #[serde(default)]
    steps: Vec<KeysInOrder>,
}

/// A map's keys as written; the values are skipped.
struct KeysInOrder(Vec<String>);

impl<'de> serde::Deserialize<'de> for KeysInOrder {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = KeysInOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a step")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<KeysInOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(KeysInOrder(keys))
            }
            fn visit_unit<E>(self) -> Result<KeysInOrder, E> {
                Ok(KeysInOrder(Vec::new()))
            }
        }
        deserializer.deserialize_any(Keys)
    }
}

impl StepOrder {
    fn keys(self) -> Vec<Vec<String>> {
        let steps = self.spec.and_then(|s| s.strategy).and_then(|s| s.canary).map(|c| c.steps).unwrap_or_default();
        steps.into_iter().map(|k| k.0).collect()
    }
}

/// The warnings about one source object.
pub(crate) struct Warnings {
    object: String,
    list: Vec<Warning>,
}

impl Warnings {
    fn new(document: &Value) -> Self {
        let kind = document["kind"].as_str().unwrap_or("object");
        let name = document["metadata"]["name"].as_str().unwrap_or("(unnamed)");
        Self { object: format!("{kind}/{name}"), list: Vec::new() }
    }

    pub fn warn(&mut self, path: &str, message: impl Into<String>) {
        let path = if path.is_empty() { "." } else { path };
        self.list.push(Warning { object: self.object.clone(), path: path.to_string(), message: message.into() });
    }
}

/// The fields of one JSON object being converted: each is taken as it maps; `finish` reports
/// whatever is left.
pub(crate) struct Fields {
    pub path: String,
    map: Map<String, Value>,
}

impl Fields {
    pub fn new(path: impl Into<String>, value: Value) -> Self {
        let map = match value {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Self { path: path.into(), map }
    }

    pub fn at(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    pub fn peek(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn put(&mut self, key: &str, value: Value) {
        self.map.insert(key.to_string(), value);
    }

    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    pub fn string(&mut self, key: &str) -> Option<String> {
        match self.take(key)? {
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }
    }

    pub fn bool(&mut self, key: &str) -> Option<bool> {
        self.take(key).and_then(|v| v.as_bool())
    }

    /// An integer, written as a number or as a string of digits (Argo's IntOrString fields).
    pub fn int(&mut self, key: &str, warnings: &mut Warnings) -> Option<i32> {
        let value = self.take(key)?;
        let parsed = match &value {
            Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        if parsed.is_none() {
            warnings.warn(&self.at(key), format!("{value} is not a whole number Sluice can use; dropped"));
        }
        parsed
    }

    pub fn object(&mut self, key: &str) -> Option<Fields> {
        let path = self.at(key);
        self.take(key).map(|v| Fields::new(path, v))
    }

    /// The items of a list field, each with its path (`key[i]`).
    pub fn list(&mut self, key: &str) -> Vec<(String, Value)> {
        let path = self.at(key);
        match self.take(key) {
            Some(Value::Array(items)) => items.into_iter().enumerate().map(|(i, v)| (format!("{path}[{i}]"), v)).collect(),
            _ => Vec::new(),
        }
    }

    /// A field Sluice has no place for, reported with why.
    pub fn drop(&mut self, key: &str, why: &str, warnings: &mut Warnings) {
        if self.take(key).is_some() {
            warnings.warn(&self.at(key), format!("{why}; dropped"));
        }
    }

    /// Fields the API server fills in, left out without a word.
    pub fn ignore(&mut self, keys: &[&str]) {
        for key in keys {
            self.map.remove(*key);
        }
    }

    pub fn finish(self, warnings: &mut Warnings) {
        for key in self.map.keys() {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            warnings.warn(&path, "Sluice has no such field; dropped");
        }
    }
}

/// A duration as Sluice writes it, from a number of seconds or a Go duration string in any unit
/// Go accepts (`1.5h`, `300ms`, `2us`, `1h30m0s`); a part below a millisecond is rounded up to one.
pub fn duration(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => n.as_u64().map(|s| format!("{s}s")),
        Value::String(s) if crate::api::parse_duration(s).is_ok() => Some(s.clone()),
        Value::String(s) => match s.trim().parse::<u64>() {
            Ok(seconds) => Some(format!("{seconds}s")),
            Err(_) => go_duration(s.trim()).map(format_millis),
        },
        _ => None,
    }
}

/// Milliseconds in a Go duration string (`time.ParseDuration`'s units and fractions).
fn go_duration(text: &str) -> Option<u128> {
    if text.starts_with('-') {
        return None;
    }
    let micro = text.replace("µs", "us").replace("μs", "us");
    let parsed: jiff::SignedDuration = micro.parse().ok()?;
    let nanos = u128::try_from(parsed.as_nanos()).ok()?;
    Some(nanos.div_ceil(1_000_000))
}

fn format_millis(millis: u128) -> String {
    let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    let parts = [(hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms")];
    let text: String = parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect();
    if text.is_empty() { "0s".into() } else { text }
}

pub(crate) fn duration_field(fields: &mut Fields, key: &str, warnings: &mut Warnings) -> Option<crate::api::DurationString> {
    let path = fields.at(key);
    let value = fields.take(key)?;
    match duration(&value) {
        Some(d) => Some(d.as_str().into()),
        None => {
            warnings.warn(&path, format!("{value} is not a duration Sluice reads ({DURATION_PATTERN}, e.g. 30s, 5m, 1h30m); dropped"));
            None
        }
    }
}

/// The metadata kept: name, namespace, labels and annotations (less what tools wrote).
pub(crate) fn metadata(fields: &mut Fields, warnings: &mut Warnings) -> ObjectMeta {
    let mut meta = Fields::new("metadata", fields.take("metadata").unwrap_or_default());
    meta.ignore(&["uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink"]);
    let strings = |v: Option<Value>| -> Option<BTreeMap<String, String>> {
        let map: BTreeMap<String, String> = serde_json::from_value(v?).ok()?;
        let map: BTreeMap<String, String> = map
            .into_iter()
            .filter(|(k, _)| k != "kubectl.kubernetes.io/last-applied-configuration" && !k.contains("argoproj.io/"))
            .collect();
        (!map.is_empty()).then_some(map)
    };
    let out = ObjectMeta {
        name: meta.string("name"),
        generate_name: meta.string("generateName"),
        namespace: meta.string("namespace"),
        labels: strings(meta.take("labels")),
        annotations: strings(meta.take("annotations")),
        ..Default::default()
    };
    meta.finish(warnings);
    out
}

/// A Deployment kept where it is and adopted by the Rollout (`deploymentRef`): the Rollout
/// rolls out its template and takes its replica count when its manifest is in the input.
pub(crate) fn adopted_deployment(source: &Source, name: &str, namespace: Option<&str>, scale_down: ScaleDown) -> KubernetesWorkload {
    let replicas = source.deployment(name, namespace).and_then(|d| d["spec"]["replicas"].as_i64()).and_then(|r| i32::try_from(r).ok());
    KubernetesWorkload {
        replicas: replicas.unwrap_or(1),
        deployment_ref: Some(DeploymentRef { name: name.to_string(), scale_down }),
        ..Default::default()
    }
}

/// A workload to fill in: the Deployment it should come from was not in the input.
pub(crate) fn placeholder_workload(name: &str, replicas: i32) -> KubernetesWorkload {
    let labels: BTreeMap<String, String> = [("app".to_string(), name.to_string())].into();
    let template = serde_json::json!({
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": name, "image": PLACEHOLDER_IMAGE}]}
    });
    KubernetesWorkload {
        replicas,
        selector: LabelSelector { match_labels: Some(labels), ..Default::default() },
        template: serde_json::from_value(template).expect("placeholder template"),
        deployment_ref: None,
        min_ready_seconds: None,
        revision_history_limit: None,
    }
}

pub const PLACEHOLDER_IMAGE: &str = "FILL-IN-IMAGE";

/// ALB ARNs to fill in; shaped like ARNs so the API server admits the manifest as it is.
pub const PLACEHOLDER_RULE_ARN: &str = "arn:aws:elasticloadbalancing:REGION:ACCOUNT:listener-rule/app/FILL-IN-LOAD-BALANCER/FILL-IN-RULE";
pub const PLACEHOLDER_STABLE_TG_ARN: &str = "arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/FILL-IN-STABLE/ID";
pub const PLACEHOLDER_CANARY_TG_ARN: &str = "arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/FILL-IN-CANARY/ID";
pub const PLACEHOLDER_PROMETHEUS: &str = "http://FILL-IN-PROMETHEUS:9090";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit_argo_accepts() {
        let of = |v: Value| duration(&v);
        assert_eq!(of("1.5h".into()).as_deref(), Some("1h30m"));
        assert_eq!(of("300ms".into()).as_deref(), Some("300ms"));
        assert_eq!(of("2us".into()).as_deref(), Some("1ms"), "below a millisecond, rounded up");
        assert_eq!(of("1h30m0s".into()).as_deref(), Some("1h30m0s"), "already Sluice's form");
        assert_eq!(of("1m30.5s".into()).as_deref(), Some("1m30s500ms"));
        assert_eq!(of("90".into()).as_deref(), Some("90s"));
        assert_eq!(of(90.into()).as_deref(), Some("90s"));
        assert_eq!(of("5m".into()).as_deref(), Some("5m"));
        assert_eq!(of("0s".into()).as_deref(), Some("0s"));
        assert_eq!(of("soon".into()), None);
        assert_eq!(of("-5m".into()), None);
    }
}
