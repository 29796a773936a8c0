//! Objects as the watches deliver them. An object the types cannot read (stored under an older
//! schema, or edited past it) is kept as its metadata, status and the error, so that one bad
//! object never stops the watch, and the list, of every other object of its kind. Rollouts and
//! AnalysisRuns are both watched this way.

use std::borrow::Cow;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::api::{AnalysisRun, AnalysisRunStatus, Rollout, RolloutStatus};

/// A kind watched behind the guard: its status is kept, as far as it reads, from an object the
/// rest of which does not.
pub trait Guarded: Resource<DynamicType = (), Scope = NamespaceResourceScope> + DeserializeOwned + Serialize + Clone + Debug {
    type Status: Default + DeserializeOwned + Serialize + Clone + Debug;
}

impl Guarded for Rollout {
    type Status = RolloutStatus;
}

impl Guarded for AnalysisRun {
    type Status = AnalysisRunStatus;
}

#[derive(Clone, Debug)]
pub enum Watched<K: Guarded> {
    Readable(Box<K>),
    Unreadable(Box<Unreadable<K::Status>>),
}

pub type WatchedRollout = Watched<Rollout>;
pub type WatchedRun = Watched<AnalysisRun>;

#[derive(Clone, Debug)]
pub struct Unreadable<S> {
    pub metadata: ObjectMeta,
    /// The status as far as it can be read; the rest is dropped, never rewritten from guesses.
    pub status: S,
    /// The field at fault and what is wrong with it.
    pub error: String,
}

impl<K: Guarded> Watched<K> {
    pub fn from_value(value: serde_json::Value) -> Self {
        match serde_path_to_error::deserialize::<_, K>(&value) {
            Ok(object) => Self::Readable(Box::new(object)),
            Err(error) => {
                let part = |key: &str| value.get(key).cloned().unwrap_or(serde_json::Value::Null);
                let metadata = serde_json::from_value(part("metadata")).unwrap_or_default();
                let status = serde_json::from_value(part("status")).unwrap_or_default();
                let error = format!("{}: {}", error.path(), error.inner());
                Self::Unreadable(Box::new(Unreadable { metadata, status, error }))
            }
        }
    }
}

impl<'de, K: Guarded> Deserialize<'de> for Watched<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Self::from_value)
    }
}

impl<K: Guarded> Serialize for Watched<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Readable(object) => object.serialize(serializer),
            Self::Unreadable(unreadable) => serde_json::json!({
                "apiVersion": K::api_version(&()),
                "kind": K::kind(&()),
                "metadata": unreadable.metadata,
                "status": unreadable.status,
            })
            .serialize(serializer),
        }
    }
}

impl<K: Guarded> Resource for Watched<K> {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Readable(object) => object.meta(),
            Self::Unreadable(unreadable) => &unreadable.metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Self::Readable(object) => object.meta_mut(),
            Self::Unreadable(unreadable) => &mut unreadable.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;

    fn object(strategy: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7"},
            "spec": {
                "workload": {"kubernetes": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}},
                "strategy": strategy
            },
            "status": {"stableRevision": "abc", "phase": "Healthy"}
        })
    }

    #[test]
    fn a_readable_rollout_is_parsed_whole() {
        let watched: WatchedRollout = serde_json::from_value(object(serde_json::json!({"canary": {"steps": []}}))).unwrap();
        let WatchedRollout::Readable(rollout) = watched else { panic!("expected a readable rollout") };
        assert!(rollout.spec.strategy.canary.is_some());
    }

    #[test]
    fn an_unreadable_rollout_keeps_its_identity_status_and_the_field_at_fault() {
        let watched: WatchedRollout = serde_json::from_value(object(serde_json::json!({"canary": {"steps": "fast"}}))).unwrap();
        assert_eq!((watched.name_any(), watched.namespace()), ("web".to_string(), Some("shop".to_string())));
        assert_eq!(watched.resource_version().as_deref(), Some("7"));
        let WatchedRollout::Unreadable(unreadable) = watched else { panic!("expected an unreadable rollout") };
        assert_eq!(unreadable.status.stable_revision.as_deref(), Some("abc"));
        assert!(unreadable.error.starts_with("spec.strategy.canary.steps: invalid type"), "{}", unreadable.error);
    }

    #[test]
    fn an_unreadable_analysis_run_keeps_its_identity_status_and_the_field_at_fault() {
        let run = |metrics: serde_json::Value| {
            serde_json::json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
                "metadata": {"name": "web-abc-0-step-1", "namespace": "shop", "labels": {"sluice.dev/rollout": "web"}},
                "spec": {"metrics": metrics},
                "status": {"phase": "Running", "message": "metric m: 1 measurements so far"}
            })
        };
        let good = serde_json::json!([{"name": "m", "provider": {"web": {"url": "http://example.com/"}}}]);
        let list = serde_json::json!([run(serde_json::json!("fast")), run(good)]);
        let watched: Vec<WatchedRun> = serde_json::from_value(list).unwrap();
        let WatchedRun::Unreadable(unreadable) = &watched[0] else { panic!("expected an unreadable run") };
        assert_eq!(watched[0].labels().get("sluice.dev/rollout").map(String::as_str), Some("web"));
        assert_eq!(unreadable.status.phase, crate::api::AnalysisPhase::Running);
        assert!(unreadable.error.starts_with("spec.metrics: invalid type"), "{}", unreadable.error);
        assert!(matches!(&watched[1], WatchedRun::Readable(run) if run.spec.metrics.len() == 1));
        let written = serde_json::to_value(&watched[0]).unwrap();
        assert_eq!((written["kind"].as_str(), written.get("spec")), (Some("AnalysisRun"), None), "no spec is made up");
    }

    #[test]
    fn a_list_with_one_bad_object_still_yields_every_object() {
        let list = serde_json::json!([object(serde_json::json!({"canary": {"steps": 3}})), object(serde_json::json!({"rolling": {}}))]);
        let watched: Vec<WatchedRollout> = serde_json::from_value(list).unwrap();
        assert!(matches!(watched[0], WatchedRollout::Unreadable(_)));
        assert!(matches!(watched[1], WatchedRollout::Readable(_)));
    }
}
