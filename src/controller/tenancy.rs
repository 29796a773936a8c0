//! The tenancy policy at the controller's edge: before anything is observed from AWS or changed,
//! a Rollout must name only AWS resources its Namespace is allowed (the Namespace's annotation,
//! from a watch cache, and the controller's `--allow-aws-resource` patterns) and only Services
//! that are its own; and people's requests are read from its annotation, never from its status.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::Context;
use crate::api::{Rollout, RolloutCommands, RolloutStatus};
use crate::engine::tenancy::{self, ALLOWED_AWS_RESOURCES_ANNOTATION, Pattern, Refusal};
use crate::engine::{EventReason, Plan};

pub struct Policy {
    namespaces: Store<Namespace>,
    cluster_wide: Vec<Pattern>,
}

impl Policy {
    pub fn new(namespaces: Store<Namespace>, cluster_wide: &[String]) -> Self {
        let cluster_wide = cluster_wide.iter().flat_map(|p| tenancy::patterns(p)).collect();
        Self { namespaces, cluster_wide }
    }

    /// The patterns that apply in `namespace`: the controller's, then the Namespace's annotation.
    /// No pass runs before the Namespaces' first list is in (`Context::stores_ready`), so a
    /// starting controller never refuses from an empty cache.
    fn allowed(&self, namespace: &str) -> Vec<Pattern> {
        let mut allowed = self.cluster_wide.clone();
        if let Some(object) = self.namespaces.get(&ObjectRef::new(namespace)) {
            allowed.extend(object.annotations().get(ALLOWED_AWS_RESOURCES_ANNOTATION).map(|a| tenancy::patterns(a)).unwrap_or_default());
        }
        allowed
    }

    /// One AWS resource, named by something other than a Rollout's spec (a metric), is allowed
    /// in `namespace`.
    pub fn check_arn(&self, namespace: &str, resource: &tenancy::NamedResource) -> Result<(), Refusal> {
        tenancy::check_arn(resource, namespace, &self.allowed(namespace))
    }

    /// Every AWS resource the Rollout names is allowed in its namespace.
    pub async fn check_arns(&self, rollout: &Rollout) -> Result<(), Refusal> {
        let namespace = rollout.namespace().unwrap_or_default();
        tenancy::check_arns(&rollout.spec, &namespace, &self.allowed(&namespace))
    }
}

/// A Rollout's SNS topics and EventBridge buses (its notification annotation) are its AWS
/// resources like any other: allowed the same way, or never published to.
impl crate::notify::AllowList for Policy {
    fn check(&self, namespace: &str, arn: &str) -> Result<(), String> {
        let resource = tenancy::NamedResource { field: "The notification annotation (sluice.dev/notify-webhook)", arn: arn.to_string() };
        self.check_arn(namespace, &resource).map_err(|refusal| refusal.0)
    }
}

/// The requests to act on in this pass, or the plan of a Rollout that is refused: an AWS resource
/// not allowed, a Service that is not its own, or requests that cannot be read.
pub async fn admit(rollout: &Rollout, status: &RolloutStatus, services: &[Arc<Service>], ctx: &Context) -> Result<RolloutCommands, Plan> {
    let refuse =
        |reason, message: String| crate::engine::tenancy::refused(status, rollout.metadata.generation, reason, &message, Timestamp::now());
    let checked = match ctx.tenancy.check_arns(rollout).await {
        Ok(()) => crate::platform::kubernetes::check_services(rollout, services),
        refused => refused,
    };
    checked.map_err(|refusal| refuse(EventReason::TenancyRefused, refusal.0))?;
    RolloutCommands::of(rollout.annotations()).map_err(|message| refuse(EventReason::InvalidSpec, message))
}
