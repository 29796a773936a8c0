//! Weights through Ingresses the AWS Load Balancer Controller manages (`traffic.alb.ingresses`).
//!
//! Sluice writes one thing: the weighted forward action
//! `alb.ingress.kubernetes.io/actions.<stable Service>` on each Ingress, which the controller
//! turns into listener rules. What reached ELBv2 is read back: the controller's
//! TargetGroupBindings say which target groups it made for the two Services (matched by the
//! Ingress's stack labels, the Service and its port), and the rules that forward to exactly that
//! pair carry the weight. Every Ingress moves together: the weight read is that of a rule still
//! short of its Ingress's action, so a rollout goes on only once all of them have it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use serde_json::json;

use super::alb::AlbRouter;
use crate::engine::{TargetGroups, TrafficObservation};
use crate::ports::{Effect, PortError, TrafficRouter, kube_failure};

/// Where the controller reads a named action from.
pub const ACTION_ANNOTATION_PREFIX: &str = "alb.ingress.kubernetes.io/actions.";
/// Changed when an Ingress's action is already right but ELBv2 disagrees: any annotation change
/// makes the AWS Load Balancer Controller reconcile the Ingress, which rewrites the rules.
pub const NUDGE_ANNOTATION: &str = "sluice.dev/traffic-reconcile";
const GROUP_ANNOTATION: &str = "alb.ingress.kubernetes.io/group.name";
const STACK_NAME_LABEL: &str = "ingress.k8s.aws/stack-name";
const STACK_NAMESPACE_LABEL: &str = "ingress.k8s.aws/stack-namespace";
/// How long a weight change waits for the controller to write it, reading it back meanwhile:
/// it takes a fraction of a second, and the pass looks again later if not.
const READ_BACK: Duration = Duration::from_secs(5);
const READ_BACK_EVERY: Duration = Duration::from_millis(250);

/// The [`TrafficRouter`] of one Rollout's `traffic.alb.ingresses`.
pub struct IngressWeights<'a> {
    pub router: &'a AlbRouter,
    pub client: &'a kube::Client,
    pub namespace: &'a str,
    pub ingresses: &'a [String],
    /// The stable and canary role Services, the action's two targets.
    pub stable_service: String,
    pub canary_service: String,
    pub service_port: i32,
}

/// One Ingress as read: the canary weight its action asks for, and the target groups the AWS
/// Load Balancer Controller made for it, once it has.
struct Read {
    name: String,
    action_weight: Option<i32>,
    groups: Option<TargetGroups>,
    /// The load balancer the controller reports in the Ingress's status.
    dns_name: Option<String>,
}

fn not_found(what: String) -> PortError {
    PortError::new("Kubernetes API", "not_found", what)
}

impl IngressWeights<'_> {
    fn api(&self) -> Api<Ingress> {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    fn action_key(&self) -> String {
        format!("{ACTION_ANNOTATION_PREFIX}{}", self.stable_service)
    }

    /// The action as the controller reads it: both Services at the given weights.
    fn action(&self, canary_weight: i32) -> String {
        let group = |service: &str, weight: i32| json!({"serviceName": service, "servicePort": self.service_port, "weight": weight});
        let targets = [group(&self.stable_service, 100 - canary_weight), group(&self.canary_service, canary_weight)];
        json!({"type": "forward", "forwardConfig": {"targetGroups": targets}}).to_string()
    }

    /// The canary weight an action annotation asks for, if it names the canary Service.
    fn action_weight(&self, ingress: &Ingress) -> Option<i32> {
        let value = ingress.metadata.annotations.as_ref()?.get(&self.action_key())?;
        let action: serde_json::Value = serde_json::from_str(value).ok()?;
        let groups = action.pointer("/forwardConfig/targetGroups")?.as_array()?;
        let canary = groups.iter().find(|g| g.get("serviceName").and_then(|s| s.as_str()) == Some(self.canary_service.as_str()))?;
        canary.get("weight")?.as_i64().and_then(|w| i32::try_from(w).ok())
    }

    async fn ingress(&self, name: &str) -> Result<Ingress, PortError> {
        self.api().get_opt(name).await.map_err(kube_failure)?.ok_or_else(|| {
            not_found(format!("Ingress {name} does not exist in namespace {}: create it, or fix traffic.alb.ingresses", self.namespace))
        })
    }

    /// The AWS Load Balancer Controller's TargetGroupBindings in the namespace.
    async fn bindings(&self) -> Result<Vec<DynamicObject>, PortError> {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("elbv2.k8s.aws", "v1beta1", "TargetGroupBinding"));
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), self.namespace, &resource);
        match api.list(&ListParams::default()).await {
            Ok(list) => Ok(list.items),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(not_found(
                "the API server serves no TargetGroupBinding (elbv2.k8s.aws): traffic.alb.ingresses needs the AWS Load Balancer \
                 Controller installed"
                    .to_string(),
            )),
            Err(other) => Err(kube_failure(other)),
        }
    }

    /// The target group the controller made for `service` of the Ingress (its stack: the
    /// Ingress, or its IngressGroup).
    fn target_group(&self, bindings: &[DynamicObject], ingress: &Ingress, service: &str) -> Option<String> {
        let name = ingress.metadata.name.as_deref()?;
        let group = ingress.metadata.annotations.as_ref().and_then(|a| a.get(GROUP_ANNOTATION));
        bindings.iter().find_map(|binding| {
            let labels = binding.metadata.labels.as_ref()?;
            let stack = labels.get(STACK_NAME_LABEL)?;
            let ours = match group {
                Some(group) => stack == group,
                None => stack == name && labels.get(STACK_NAMESPACE_LABEL).is_none_or(|ns| ns == self.namespace),
            };
            let spec = binding.data.get("spec")?;
            let reference = spec.get("serviceRef")?;
            let port = reference.get("port")?;
            let same_port = port.as_i64() == Some(i64::from(self.service_port)) || port.as_str() == Some(&self.service_port.to_string());
            let same = reference.get("name")?.as_str() == Some(service) && same_port;
            (ours && same).then(|| spec.get("targetGroupARN")?.as_str().map(str::to_string)).flatten()
        })
    }

    async fn read_all(&self) -> Result<Vec<Read>, PortError> {
        let bindings = self.bindings().await?;
        let mut read = Vec::new();
        for name in self.ingresses {
            let ingress = self.ingress(name).await?;
            let stable = self.target_group(&bindings, &ingress, &self.stable_service);
            let canary = self.target_group(&bindings, &ingress, &self.canary_service);
            let groups = stable.zip(canary).map(|(stable, canary)| TargetGroups { stable, canary });
            let status = ingress.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
            let dns_name = status.and_then(|points| points.iter().find_map(|p| p.hostname.clone()));
            read.push(Read { name: name.clone(), action_weight: self.action_weight(&ingress), groups, dns_name });
        }
        Ok(read)
    }

    /// The canary weight in ELBv2: that of a rule short of its Ingress's action, else the one all
    /// rules share; `None` while an Ingress has no target groups or no rule for them yet.
    async fn weight_in_elbv2(&self, read: &[Read]) -> Result<Option<i32>, PortError> {
        let mut weights = Vec::new();
        for ingress in read {
            let Some(groups) = &ingress.groups else { return Ok(None) };
            let rules = self.router.pair_rules(&groups.stable, &groups.canary, ingress.dns_name.as_deref()).await?;
            if rules.is_empty() {
                return Ok(None);
            }
            for rule in rules {
                let Some(weight) = rule.canary_weight else { return Ok(None) };
                weights.push((weight, ingress.action_weight));
            }
        }
        let lagging = weights.iter().find(|(weight, asked)| Some(*weight) != *asked);
        Ok(lagging.or(weights.first()).map(|(weight, _)| *weight))
    }
}

#[async_trait::async_trait]
impl TrafficRouter for IngressWeights<'_> {
    async fn observe(&self, _named: Option<&TargetGroups>) -> Result<Option<TrafficObservation>, PortError> {
        let read = self.read_all().await?;
        let canary_weight = self.weight_in_elbv2(&read).await?;
        // A target counts as healthy only where every Ingress's group has it.
        let mut healthy: [Option<BTreeSet<String>>; 2] = [None, None];
        for groups in read.iter().filter_map(|r| r.groups.as_ref()) {
            for (slot, group) in healthy.iter_mut().zip([&groups.stable, &groups.canary]) {
                let targets = self.router.healthy_targets(group).await?;
                *slot = Some(match slot.take() {
                    Some(seen) => seen.intersection(&targets).cloned().collect(),
                    None => targets,
                });
            }
        }
        let [stable_healthy, canary_healthy] = healthy.map(Option::unwrap_or_default);
        let target_groups = read.first().and_then(|r| r.groups.clone());
        Ok(Some(TrafficObservation { canary_weight, stable_healthy, canary_healthy, last_written: None, target_groups }))
    }

    async fn set_weight(&self, _named: &TargetGroups, canary_weight: i32, _reclaim: bool) -> Result<Effect, PortError> {
        if !(0..=100).contains(&canary_weight) {
            return Err(PortError::new("ALB", "invalid", format!("canary weight {canary_weight} is not a percentage from 0 to 100")));
        }
        let read = self.read_all().await?;
        let in_elbv2 = self.weight_in_elbv2(&read).await?;
        let mut effect = Effect::Unchanged;
        for ingress in &read {
            let annotation = if ingress.action_weight == Some(canary_weight) {
                // The action is right and ELBv2 is not: the controller has not reconciled since.
                if in_elbv2 == Some(canary_weight) || ingress.groups.is_none() {
                    continue;
                }
                (NUDGE_ANNOTATION.to_string(), jiff::Timestamp::now().to_string())
            } else {
                (self.action_key(), self.action(canary_weight))
            };
            let patch = json!({"metadata": {"annotations": {annotation.0: annotation.1}}});
            self.api().patch(&ingress.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(kube_failure)?;
            effect = Effect::Changed;
        }
        // Read back what reached ELBv2 while the controller writes it: the Ingresses now ask for
        // `canary_weight` and their groups stay, so only the rules are read again. Before the
        // controller has made the groups there is nothing to read yet.
        if effect.changed() && read.iter().all(|r| r.groups.is_some()) {
            let asked: Vec<Read> = read.into_iter().map(|r| Read { action_weight: Some(canary_weight), ..r }).collect();
            let started = Instant::now();
            while started.elapsed() < READ_BACK {
                if self.weight_in_elbv2(&asked).await? == Some(canary_weight) {
                    break;
                }
                tokio::time::sleep(READ_BACK_EVERY).await;
            }
        }
        Ok(effect)
    }

    async fn route_test_traffic(&self, _target_group: &str) -> Result<Effect, PortError> {
        Err(PortError::new("ALB", "unsupported", "traffic.alb.ingresses has no test listener: preview through the preview Service"))
    }

    async fn route_headers(&self, _routes: &[crate::api::SetHeaderRoute], _target_group: Option<&str>) -> Result<Effect, PortError> {
        Err(PortError::new("ALB", "unsupported", "traffic.alb.ingresses has no header routes: validation refuses setHeaderRoute steps"))
    }
}
