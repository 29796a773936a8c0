//! Reads multi-document YAML manifests into typed objects.

use std::collections::BTreeMap;

use serde_json::Value;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;

use crate::api::{AnalysisTemplate, AnalysisTemplateSpec, ClusterAnalysisTemplate, Rollout};
use crate::platform::adoption;

#[derive(Debug, Default)]
pub struct Manifests {
    /// With the template of the Deployment each adopts (`deploymentRef`), when it is among
    /// the manifests, as the controller runs them.
    pub rollouts: Vec<Rollout>,
    /// AnalysisTemplates and ClusterAnalysisTemplates by name.
    pub templates: BTreeMap<String, AnalysisTemplateSpec>,
}

pub fn load_manifests(text: &str) -> Result<Manifests, String> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let mut manifests = Manifests::default();
    let mut deployments: Vec<Deployment> = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        if document.is_null() {
            continue;
        }
        let kind = document.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        let describe = |e: serde_json::Error| format!("document {} ({kind}): {e}", index + 1);
        match kind.as_str() {
            "Rollout" => manifests.rollouts.push(serde_json::from_value(document).map_err(describe)?),
            "AnalysisTemplate" => {
                let template: AnalysisTemplate = serde_json::from_value(document).map_err(describe)?;
                manifests.templates.insert(template.metadata.name.clone().unwrap_or_default(), template.spec);
            }
            "ClusterAnalysisTemplate" => {
                let template: ClusterAnalysisTemplate = serde_json::from_value(document).map_err(describe)?;
                manifests.templates.insert(template.metadata.name.clone().unwrap_or_default(), template.spec.into());
            }
            "Deployment" => deployments.push(serde_json::from_value(document).map_err(describe)?),
            // What a complete example applies beside its Rollout; the simulated platform has its own.
            "Namespace" | "Service" => {}
            other => {
                return Err(format!(
                    "document {}: kind `{other}` is not a Rollout, analysis template, Deployment, Service or Namespace",
                    index + 1
                ));
            }
        }
    }
    for rollout in &mut manifests.rollouts {
        let adopted = deployments
            .iter()
            .find(|d| Some(d.name_any().as_str()) == adoption::adopted_name(rollout) && d.namespace() == rollout.namespace());
        *rollout = adoption::resolve(rollout, adopted).into_owned();
    }
    Ok(manifests)
}
