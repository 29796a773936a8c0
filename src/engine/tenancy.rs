//! Tenancy: what a Rollout may reach beyond its own namespace. Whoever can edit a Rollout is
//! trusted with that namespace only, so every AWS resource it names must be allowed by a cluster
//! admin, and a Service is steered only if it is the Rollout's. Pure: the controller passes in
//! the patterns (the Namespace's annotation and its own flags) and the Services it sees.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::{Event, EventReason, Plan, conditions};
use crate::api::{EcsWorkload, RolloutPhase, RolloutSpec, RolloutStatus, WorkloadKind};

/// On a Namespace, set by a cluster admin: the AWS resources its Rollouts may use, as ARN
/// patterns separated by commas or whitespace.
pub const ALLOWED_AWS_RESOURCES_ANNOTATION: &str = "sluice.dev/allowed-aws-resources";
/// On a Service: the Rollout (by name) that may steer it.
pub const SERVICE_OWNER_LABEL: &str = "sluice.dev/rollout";
/// The label Sluice adds to role Services' selectors; not part of what a Service selects by itself.
const REVISION_LABEL: &str = "sluice.dev/revision";
/// The reason of the InvalidSpec condition and the event of a refused Rollout.
pub const REFUSED_REASON: &str = "TenancyRefused";

/// An ARN pattern: `*` stands for any run of characters, `?` for one, as in IAM policies.
#[derive(Clone, Debug)]
pub struct Pattern(wildmatch::WildMatch, String);

impl Pattern {
    pub fn new(text: &str) -> Self {
        Self(wildmatch::WildMatch::new(text), text.to_string())
    }

    pub fn matches(&self, arn: &str) -> bool {
        self.0.matches(arn)
    }

    pub fn as_str(&self) -> &str {
        &self.1
    }
}

/// The patterns of an annotation's value.
pub fn patterns(text: &str) -> Vec<Pattern> {
    text.split(|c: char| c == ',' || c.is_whitespace()).filter(|p| !p.is_empty()).map(Pattern::new).collect()
}

/// An AWS resource a Rollout names: the field and its ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedResource {
    pub field: &'static str,
    pub arn: String,
}

/// Why a Rollout is refused; the message says what to fix and who can.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// Every AWS resource the spec names: ALB listeners, rules and target groups, and the ECS service.
pub fn named_arns(spec: &RolloutSpec) -> Result<Vec<NamedResource>, Refusal> {
    let mut named = Vec::new();
    let alb = spec.traffic.as_ref().and_then(|t| t.alb.as_ref());
    if let Some(alb) = alb {
        let fields = [
            ("spec.traffic.alb.listenerArn", alb.listener_arn.as_ref()),
            ("spec.traffic.alb.ruleArn", alb.rule_arn.as_ref()),
            ("spec.traffic.alb.stableTargetGroupArn", Some(&alb.stable_target_group_arn)),
            ("spec.traffic.alb.canaryTargetGroupArn", Some(&alb.canary_target_group_arn)),
            ("spec.traffic.alb.testListenerArn", alb.test_listener_arn.as_ref()),
            ("spec.traffic.alb.testRuleArn", alb.test_rule_arn.as_ref()),
        ];
        // Ingresses leave the target group ARNs empty: the AWS Load Balancer Controller makes them.
        let named_arn =
            |(field, arn): (&'static str, Option<&String>)| arn.filter(|a| !a.is_empty()).map(|a| NamedResource { field, arn: a.clone() });
        named.extend(fields.into_iter().filter_map(named_arn));
    }
    if let Ok(WorkloadKind::Ecs(ecs)) = spec.workload.kind() {
        let region_of = alb.and_then(|a| a.listener_arn.as_ref().or(a.rule_arn.as_ref())).map(String::as_str);
        named.push(NamedResource { field: "spec.workload.ecs.service", arn: ecs_service_arn(ecs, region_of)? });
    }
    Ok(named)
}

/// `arn:PARTITION:SERVICE:REGION:ACCOUNT:`, the part of an ARN before the resource.
fn arn_prefix(arn: &str) -> Option<(&str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (arn_word, partition, _service, region, account) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    parts.next()?;
    (arn_word == "arn" && !region.is_empty() && !account.is_empty()).then_some((partition, region, account))
}

/// The ECS service's ARN. Names alone (`cluster: prod`, `service: checkout`) are resolved by ECS
/// in the controller's account and region, which are those of the Rollout's ALB: ELBv2 calls
/// reach only the caller's own load balancers.
fn ecs_service_arn(ecs: &EcsWorkload, alb_arn: Option<&str>) -> Result<String, Refusal> {
    let cluster_name = ecs.cluster.rsplit_once(":cluster/").map_or(ecs.cluster.as_str(), |(_, name)| name);
    if ecs.service.starts_with("arn:") {
        let in_cluster = ecs.service.split_once(":service/").and_then(|(_, rest)| rest.split_once('/')).map(|(cluster, _)| cluster);
        return match in_cluster {
            Some(cluster) if cluster == cluster_name => Ok(ecs.service.clone()),
            _ => Err(Refusal(format!(
                "spec.workload.ecs.service {} is not a service of cluster {cluster_name} (spec.workload.ecs.cluster): \
                 name the service by an ARN of the form arn:aws:ecs:REGION:ACCOUNT:service/{cluster_name}/NAME, or by its name",
                ecs.service
            ))),
        };
    }
    let prefix = if ecs.cluster.starts_with("arn:") { Some(ecs.cluster.as_str()) } else { alb_arn };
    let Some((partition, region, account)) = prefix.and_then(arn_prefix) else {
        return Err(Refusal(format!(
            "spec.workload.ecs.cluster {}: cannot tell the account and region of the ECS service; name the cluster by its ARN",
            ecs.cluster
        )));
    };
    Ok(format!("arn:{partition}:ecs:{region}:{account}:service/{cluster_name}/{}", ecs.service))
}

/// Refuses the first AWS resource no pattern allows. With no pattern at all, every AWS resource
/// is refused: a Rollout reaches nothing in AWS until an admin allows it.
pub fn check_arns(spec: &RolloutSpec, namespace: &str, allowed: &[Pattern]) -> Result<(), Refusal> {
    named_arns(spec)?.iter().try_for_each(|resource| check_arn(resource, namespace, allowed))
}

/// One AWS resource is allowed in `namespace`.
pub fn check_arn(resource: &NamedResource, namespace: &str, allowed: &[Pattern]) -> Result<(), Refusal> {
    if allowed.iter().any(|pattern| pattern.matches(&resource.arn)) {
        return Ok(());
    }
    Err(Refusal(format!(
        "{} names {}, which namespace {namespace} is not allowed to use: a cluster admin allows it by adding the ARN \
         (or a pattern with *) to the annotation {ALLOWED_AWS_RESOURCES_ANNOTATION} of Namespace {namespace}, \
         or to the controller's --allow-aws-resource",
        resource.field, resource.arn
    )))
}

/// A Service as far as tenancy cares: who it is marked for and what it selects.
pub struct ServiceClaim<'a> {
    /// The strategy field naming it (`strategy.canary.stableService`).
    pub field: &'a str,
    pub name: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub selector: Option<&'a BTreeMap<String, String>>,
}

/// A Service is the Rollout's to steer when it is labelled `sluice.dev/rollout: <rollout>`, or
/// when it already selects the Rollout's pods: its selector, without Sluice's revision label, is
/// not empty and every label of it is on the pod template. Anything else belongs to someone else.
pub fn check_service(rollout: &str, pod_labels: &BTreeMap<String, String>, service: &ServiceClaim<'_>) -> Result<(), Refusal> {
    if service.labels.and_then(|l| l.get(SERVICE_OWNER_LABEL)).is_some_and(|owner| owner == rollout) {
        return Ok(());
    }
    let own: BTreeMap<&String, &String> = service.selector.into_iter().flatten().filter(|(k, _)| *k != REVISION_LABEL).collect();
    if !own.is_empty() && own.iter().all(|(k, v)| pod_labels.get(*k) == Some(*v)) {
        return Ok(());
    }
    let shown =
        |labels: &mut dyn Iterator<Item = (&String, &String)>| labels.map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let selects = if own.is_empty() { "selects no pods by itself".to_string() } else { format!("selects {}", shown(&mut own.into_iter())) };
    Err(Refusal(format!(
        "Service {} (named in {}) is not this Rollout's: it {selects}, not the Rollout's pods ({}), and it is not labelled \
         {SERVICE_OWNER_LABEL}={rollout}; label the Service so if it is meant for this Rollout, or name another Service",
        service.name,
        service.field,
        shown(&mut pod_labels.iter())
    )))
}

/// A refused Rollout: nothing is touched; InvalidSpec with the reason, phase Degraded, and one
/// Warning event per distinct message.
pub fn refused(status: &RolloutStatus, generation: Option<i64>, reason: EventReason, message: &str, now: Timestamp) -> Plan {
    let mut after = status.clone();
    let known = status.conditions.iter().any(|c| c.type_ == conditions::INVALID_SPEC && c.message == message);
    conditions::set(&mut after.conditions, conditions::INVALID_SPEC, true, &reason.to_string(), message, now);
    after.observed_generation = generation;
    after.phase = Some(RolloutPhase::Degraded);
    after.message = Some(message.to_string());
    conditions::summarize(&mut after, RolloutPhase::Degraded, false, false, now);
    let events = if known { Vec::new() } else { vec![Event { reason, message: message.to_string() }] };
    Plan::report(after, events)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2";
    const STABLE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/shop-stable/6d0ecf831eec9f09";
    const CANARY: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/shop-canary/7d0ecf831eec9f09";

    fn spec(ecs: Option<serde_json::Value>) -> RolloutSpec {
        let workload = match ecs {
            Some(ecs) => serde_json::json!({"ecs": ecs}),
            None => serde_json::json!({"kubernetes": {"selector": {}, "template": {}}}),
        };
        serde_json::from_value(serde_json::json!({
            "workload": workload,
            "traffic": {"alb": {"listenerArn": LISTENER, "stableTargetGroupArn": STABLE, "canaryTargetGroupArn": CANARY}},
            "strategy": {"canary": {}}
        }))
        .unwrap()
    }

    fn ecs(cluster: &str, service: &str) -> serde_json::Value {
        serde_json::json!({"cluster": cluster, "service": service, "taskDefinition": "t:1", "desiredCount": 1,
            "loadBalancer": {"containerName": "app", "containerPort": 80}})
    }

    #[test]
    fn every_arn_must_match_a_pattern_and_nothing_is_allowed_by_default() {
        let spec = spec(None);
        let refusal = check_arns(&spec, "shop", &[]).unwrap_err().0;
        assert!(refusal.starts_with(&format!("spec.traffic.alb.listenerArn names {LISTENER}, which namespace shop")), "{refusal}");
        assert!(refusal.contains("annotation sluice.dev/allowed-aws-resources of Namespace shop"), "{refusal}");
        let listener_only = patterns("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/*");
        let refusal = check_arns(&spec, "shop", &listener_only).unwrap_err().0;
        assert!(refusal.starts_with("spec.traffic.alb.stableTargetGroupArn"), "{refusal}");
        let all =
            patterns(&format!("{}, arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/shop-*", listener_only[0].as_str()));
        assert_eq!(check_arns(&spec, "shop", &all), Ok(()));
        assert!(check_arns(&spec, "shop", &patterns("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop2/*")).is_err());
    }

    #[test]
    fn an_ecs_service_by_name_is_in_the_account_and_region_of_its_listener() {
        let named = named_arns(&spec(Some(ecs("prod", "checkout")))).unwrap();
        let service = named.iter().find(|n| n.field == "spec.workload.ecs.service").unwrap();
        assert_eq!(service.arn, "arn:aws:ecs:us-east-1:123456789012:service/prod/checkout");
        let by_cluster_arn = named_arns(&spec(Some(ecs("arn:aws:ecs:eu-west-1:210987654321:cluster/prod", "checkout")))).unwrap();
        assert_eq!(by_cluster_arn.last().unwrap().arn, "arn:aws:ecs:eu-west-1:210987654321:service/prod/checkout");
        let by_arn = named_arns(&spec(Some(ecs("prod", "arn:aws:ecs:us-east-1:1:service/prod/checkout")))).unwrap();
        assert_eq!(by_arn.last().unwrap().arn, "arn:aws:ecs:us-east-1:1:service/prod/checkout");
        let elsewhere = named_arns(&spec(Some(ecs("prod", "arn:aws:ecs:us-east-1:1:service/other/checkout")))).unwrap_err();
        assert!(elsewhere.0.contains("is not a service of cluster prod"), "{elsewhere}");
    }

    #[test]
    fn a_service_is_steered_only_when_marked_or_already_selecting_the_pods() {
        let pods: BTreeMap<String, String> = [("app".into(), "web".into()), ("tier".into(), "front".into())].into();
        let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let claim = |labels: &BTreeMap<String, String>, selector: &BTreeMap<String, String>| {
            let service =
                ServiceClaim { field: "strategy.canary.stableService", name: "api", labels: Some(labels), selector: Some(selector) };
            check_service("web", &pods, &service)
        };
        let none = map(&[]);
        assert_eq!(claim(&none, &map(&[("app", "web")])), Ok(()));
        assert_eq!(claim(&none, &map(&[("app", "web"), (REVISION_LABEL, "abc")])), Ok(()), "already pointed at a revision");
        assert_eq!(claim(&map(&[(SERVICE_OWNER_LABEL, "web")]), &map(&[("app", "api")])), Ok(()));
        let refusal = claim(&none, &map(&[("app", "api")])).unwrap_err().0;
        assert!(refusal.starts_with("Service api (named in strategy.canary.stableService) is not this Rollout's: it selects app=api"));
        assert!(refusal.contains("sluice.dev/rollout=web"), "{refusal}");
        assert!(claim(&map(&[(SERVICE_OWNER_LABEL, "other")]), &none).unwrap_err().0.contains("selects no pods by itself"));
        assert!(claim(&none, &map(&[(REVISION_LABEL, "abc")])).is_err(), "another Rollout's revision is not ours");
    }

    #[test]
    fn a_refusal_is_said_once_and_holds_the_rollout() {
        let now: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let plan = refused(&RolloutStatus::default(), Some(3), EventReason::TenancyRefused, "no", now);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.status.phase, Some(RolloutPhase::Degraded));
        assert_eq!(plan.status.observed_generation, Some(3));
        let condition = plan.status.conditions.iter().find(|c| c.type_ == "InvalidSpec").unwrap();
        assert_eq!((condition.reason.as_str(), condition.message.as_str()), (REFUSED_REASON, "no"));
        assert_eq!(plan.events.len(), 1);
        assert!(refused(&plan.status, Some(3), EventReason::TenancyRefused, "no", now).events.is_empty());
    }
}
