//! A Rollout as the watch delivers it. An object the types cannot read (stored under an older
//! schema, or edited past it) is kept as its metadata, status and the error, so that one bad
//! object never stops the watch, and the list, of every other Rollout.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::api::{Rollout, RolloutStatus};

#[derive(Clone, Debug)]
pub enum WatchedRollout {
    Readable(Box<Rollout>),
    Unreadable(Box<Unreadable>),
}

#[derive(Clone, Debug)]
pub struct Unreadable {
    pub metadata: ObjectMeta,
    /// The status as far as it can be read; the rest is dropped, never rewritten from guesses.
    pub status: RolloutStatus,
    /// The field at fault and what is wrong with it.
    pub error: String,
}

impl WatchedRollout {
    pub fn from_value(value: serde_json::Value) -> Self {
        match serde_path_to_error::deserialize::<_, Rollout>(&value) {
            Ok(rollout) => Self::Readable(Box::new(rollout)),
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

impl<'de> Deserialize<'de> for WatchedRollout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Self::from_value)
    }
}

impl Serialize for WatchedRollout {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Readable(rollout) => rollout.serialize(serializer),
            Self::Unreadable(unreadable) => serde_json::json!({
                "apiVersion": Rollout::api_version(&()),
                "kind": Rollout::kind(&()),
                "metadata": unreadable.metadata,
                "status": unreadable.status,
            })
            .serialize(serializer),
        }
    }
}

impl Resource for WatchedRollout {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Rollout::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        Rollout::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        Rollout::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        Rollout::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Readable(rollout) => &rollout.metadata,
            Self::Unreadable(unreadable) => &unreadable.metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Self::Readable(rollout) => &mut rollout.metadata,
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
    fn a_list_with_one_bad_object_still_yields_every_object() {
        let list = serde_json::json!([object(serde_json::json!({"canary": {"steps": 3}})), object(serde_json::json!({"rolling": {}}))]);
        let watched: Vec<WatchedRollout> = serde_json::from_value(list).unwrap();
        assert!(matches!(watched[0], WatchedRollout::Unreadable(_)));
        assert!(matches!(watched[1], WatchedRollout::Readable(_)));
    }
}
