//! `sluice aws check`: before anything rolls out, read (and only read) the AWS resources a
//! Rollout names and say what does not fit, each problem with its fix. The same calls the
//! controller makes when it observes (DescribeListeners, DescribeRules, DescribeTargetGroups,
//! DescribeServices, DescribeTaskDefinition), so the check also proves those permissions.

use std::fmt;

use aws_sdk_ecs::types::DeploymentControllerType;
use aws_sdk_elasticloadbalancingv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, TargetTypeEnum};

use crate::api::{AlbTraffic, EcsWorkload, Rollout};

/// One thing that does not fit, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What the problem is about: `traffic.alb.ruleArn`, `workload.ecs.service`...
    pub field: &'static str,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n  fix: {}", self.field, self.problem, self.fix)
    }
}

/// The AWS clients the check reads through.
pub struct Clients {
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub ecs: aws_sdk_ecs::Client,
}

impl Clients {
    pub fn new(config: &aws_config::SdkConfig) -> Clients {
        Clients { elb: aws_sdk_elasticloadbalancingv2::Client::new(config), ecs: aws_sdk_ecs::Client::new(config) }
    }
}

/// Every problem of the Rollout's AWS resources; empty when they fit.
pub async fn check(clients: &Clients, rollout: &Rollout) -> Vec<Problem> {
    let mut problems = Vec::new();
    let spec = &rollout.spec;
    let alb = spec.traffic.as_ref().and_then(|t| t.alb.as_ref());
    // Through Ingresses the AWS Load Balancer Controller makes the listener rules and target
    // groups: there is nothing named to check.
    if let Some(alb) = alb.filter(|a| !a.through_ingresses()) {
        check_alb(clients, alb, spec.workload.ecs.is_some(), &mut problems).await;
    }
    if let Some(ecs) = &spec.workload.ecs {
        if alb.is_none() {
            problems.push(Problem {
                field: "traffic.alb",
                problem: "an ECS workload needs an ALB: its task sets are registered with the target groups".into(),
                fix: "set traffic.alb from the outputs of deploy/aws/ecs-service.yaml".into(),
            });
        }
        check_ecs(clients, ecs, &mut problems).await;
    }
    problems
}

/// A call that failed: refused (the fix grants `action`) or failed otherwise (`otherwise`).
fn call_failed<E>(field: &'static str, action: &str, error: SdkError<E>, otherwise: &str) -> Problem
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error.code().map(String::from);
    let message = error.message().map(String::from);
    // moto's ELBv2 answers errors in a shape the SDK does not parse; the body still says it.
    let body = error.raw_response().and_then(|r| r.body().bytes()).map(|b| String::from_utf8_lossy(b).to_string()).unwrap_or_default();
    let denied = status == Some(403)
        || code.as_deref().is_some_and(|c| c.starts_with("AccessDenied") || c == "UnauthorizedOperation")
        || body.contains("<Code>AccessDenied</Code>");
    let detail = match (code, message, status) {
        (Some(code), Some(message), _) => format!("{code}: {message}"),
        (Some(code), None, _) => code,
        (None, _, Some(status)) => format!("HTTP {status}"),
        (None, _, None) => aws_sdk_elasticloadbalancingv2::error::DisplayErrorContext(error).to_string(),
    };
    if denied {
        let fix = if action.starts_with("elasticloadbalancing:DescribeTargetGroups") || action.starts_with("ecs:DescribeTaskDefinition") {
            format!("grant {action} to whoever runs the check (the controller itself does not call it)")
        } else {
            format!("grant {action} as docs/iam.md lists it (deploy/aws/controller-iam.yaml)")
        };
        Problem { field, problem: format!("{action} was refused: the caller lacks {action} ({detail})"), fix }
    } else {
        Problem { field, problem: format!("{action} failed ({detail})"), fix: otherwise.to_string() }
    }
}

const CHECK_ARN: &str = "check the ARN, and that the region and account the check runs in are the resource's";

async fn check_alb(clients: &Clients, alb: &AlbTraffic, ecs: bool, problems: &mut Vec<Problem>) {
    let groups = [alb.stable_target_group_arn.as_str(), alb.canary_target_group_arn.as_str()];
    if let Some(listener) = &alb.listener_arn {
        check_listener(clients, "traffic.alb.listenerArn", listener, &groups, problems).await;
    }
    if let Some(rule) = &alb.rule_arn {
        check_rule(clients, "traffic.alb.ruleArn", rule, &groups, problems).await;
    }
    if let Some(listener) = &alb.test_listener_arn {
        check_listener(clients, "traffic.alb.testListenerArn", listener, &groups, problems).await;
    }
    if let Some(rule) = &alb.test_rule_arn {
        check_rule(clients, "traffic.alb.testRuleArn", rule, &groups, problems).await;
    }
    check_target_groups(clients, alb, ecs, problems).await;
}

async fn check_listener(clients: &Clients, field: &'static str, arn: &str, groups: &[&str; 2], problems: &mut Vec<Problem>) {
    match clients.elb.describe_listeners().listener_arns(arn).send().await {
        Ok(found) => match found.listeners().first() {
            Some(listener) => check_forward(field, "the listener's default action", listener.default_actions(), groups, problems),
            None => problems.push(not_found(field, "listener", arn)),
        },
        Err(e) if e.as_service_error().is_some_and(|s| s.is_listener_not_found_exception()) => {
            problems.push(not_found(field, "listener", arn))
        }
        Err(e) => problems.push(call_failed(field, "elasticloadbalancing:DescribeListeners", e, CHECK_ARN)),
    }
}

async fn check_rule(clients: &Clients, field: &'static str, arn: &str, groups: &[&str; 2], problems: &mut Vec<Problem>) {
    match clients.elb.describe_rules().rule_arns(arn).send().await {
        Ok(found) => match found.rules().first() {
            Some(rule) => check_forward(field, "the rule", rule.actions(), groups, problems),
            None => problems.push(not_found(field, "listener rule", arn)),
        },
        Err(e) if e.as_service_error().is_some_and(|s| s.is_rule_not_found_exception()) => {
            problems.push(not_found(field, "listener rule", arn))
        }
        Err(e) => problems.push(call_failed(field, "elasticloadbalancing:DescribeRules", e, CHECK_ARN)),
    }
}

fn not_found(field: &'static str, kind: &str, arn: &str) -> Problem {
    Problem {
        field,
        problem: format!("no {kind} {arn}"),
        fix: format!(
            "copy the {kind}'s ARN from the stack's outputs (aws cloudformation describe-stacks), in the region the controller uses"
        ),
    }
}

/// Sluice moves the weights of one forward action that names the rollout's two target groups.
fn check_forward(field: &'static str, what: &str, actions: &[Action], groups: &[&str; 2], problems: &mut Vec<Problem>) {
    let Some(forward) = actions.iter().find(|a| a.r#type() == Some(&ActionTypeEnum::Forward)) else {
        problems.push(Problem {
            field,
            problem: format!("{what} has no forward action, so there are no weights to move"),
            fix: format!(
                "give it a forward action to {} (weight 100) and {} (weight 0), as deploy/aws/kubernetes-canary-alb.yaml's WeightedRule",
                groups[0], groups[1]
            ),
        });
        return;
    };
    let mut named: Vec<&str> =
        forward.forward_config().map(|c| c.target_groups().iter().filter_map(|t| t.target_group_arn()).collect()).unwrap_or_default();
    if named.is_empty()
        && let Some(single) = forward.target_group_arn()
    {
        named.push(single);
    }
    let missing: Vec<&str> = groups.iter().copied().filter(|g| !named.contains(g)).collect();
    if !missing.is_empty() {
        problems.push(Problem {
            field,
            problem: format!("{what} forwards to {named:?}, not to {}", missing.join(" and ")),
            fix: "make its forward action a weighted forward to the stable and canary target groups (a ForwardConfig with both), \
                  or set stableTargetGroupArn and canaryTargetGroupArn to the groups it names"
                .into(),
        });
    }
}

async fn check_target_groups(clients: &Clients, alb: &AlbTraffic, ecs: bool, problems: &mut Vec<Problem>) {
    let fields = [
        ("traffic.alb.stableTargetGroupArn", &alb.stable_target_group_arn),
        ("traffic.alb.canaryTargetGroupArn", &alb.canary_target_group_arn),
    ];
    if alb.stable_target_group_arn == alb.canary_target_group_arn {
        problems.push(Problem {
            field: "traffic.alb.canaryTargetGroupArn",
            problem: "the canary target group is the stable one".into(),
            fix: "use two target groups (the stacks' StableTargetGroupArn and CanaryTargetGroupArn outputs)".into(),
        });
    }
    let mut found = Vec::new();
    for (field, arn) in fields {
        match clients.elb.describe_target_groups().target_group_arns(arn.as_str()).send().await {
            Ok(described) => match described.target_groups().first() {
                Some(group) => found.push((field, group.clone())),
                None => problems.push(not_found(field, "target group", arn)),
            },
            Err(e) if e.as_service_error().is_some_and(|s| s.is_target_group_not_found_exception()) => {
                problems.push(not_found(field, "target group", arn))
            }
            Err(e) => problems.push(call_failed(field, "elasticloadbalancing:DescribeTargetGroups", e, CHECK_ARN)),
        }
    }
    for (field, group) in &found {
        let kind = group.target_type().cloned().unwrap_or(TargetTypeEnum::Instance);
        let fits = if ecs { kind == TargetTypeEnum::Ip } else { matches!(kind, TargetTypeEnum::Ip | TargetTypeEnum::Instance) };
        if !fits {
            let needed = if ecs { "ip (tasks in awsvpc mode register by IP)" } else { "ip (pods) or instance (node ports)" };
            problems.push(Problem {
                field,
                problem: format!("target group {} is of type {}", group.target_group_name().unwrap_or_default(), kind.as_str()),
                fix: format!("create it with TargetType {needed}; the type of a target group cannot be changed"),
            });
        }
    }
    if let [(_, stable), (field, canary)] = found.as_slice()
        && stable.vpc_id() != canary.vpc_id()
    {
        problems.push(Problem {
            field,
            problem: format!("the target groups are in different VPCs ({:?} and {:?})", stable.vpc_id(), canary.vpc_id()),
            fix: "create both target groups in the VPC of the workload".into(),
        });
    }
}

async fn check_ecs(clients: &Clients, ecs: &EcsWorkload, problems: &mut Vec<Problem>) {
    match clients.ecs.describe_services().cluster(&ecs.cluster).services(&ecs.service).send().await {
        Ok(described) => match described.services().iter().find(|s| s.status() != Some("INACTIVE")) {
            Some(service) => {
                let controller = service.deployment_controller().map_or(DeploymentControllerType::Ecs, |d| d.r#type().clone());
                if controller != DeploymentControllerType::External {
                    problems.push(Problem {
                        field: "workload.ecs.service",
                        problem: format!("service {} uses the {} deployment controller, not EXTERNAL", ecs.service, controller.as_str()),
                        fix: "Sluice runs a service's versions as task sets, which needs deploymentController EXTERNAL; a service's \
                              controller cannot be changed: create a new service with it (deploy/aws/ecs-service.yaml) and move traffic to it"
                            .into(),
                    });
                }
            }
            None => problems.push(Problem {
                field: "workload.ecs.service",
                problem: format!("no active service {} in cluster {}", ecs.service, ecs.cluster),
                fix: "create it with deploy/aws/ecs-service.yaml, or copy the stack's Cluster and Service outputs".into(),
            }),
        },
        Err(e) => problems.push(call_failed(
            "workload.ecs.service",
            "ecs:DescribeServices",
            e,
            "check workload.ecs.cluster (the cluster must exist in the region the check runs in)",
        )),
    }
    match clients.ecs.describe_task_definition().task_definition(&ecs.task_definition).send().await {
        Ok(described) => {
            let Some(definition) = described.task_definition() else { return };
            let container = definition.container_definitions().iter().find(|c| c.name() == Some(ecs.load_balancer.container_name.as_str()));
            match container {
                None => problems.push(Problem {
                    field: "workload.ecs.loadBalancer.containerName",
                    problem: format!("task definition {} has no container {}", ecs.task_definition, ecs.load_balancer.container_name),
                    fix: format!(
                        "name one of its containers ({}) in loadBalancer.containerName",
                        definition.container_definitions().iter().filter_map(|c| c.name()).collect::<Vec<_>>().join(", ")
                    ),
                }),
                Some(container) => {
                    let port = ecs.load_balancer.container_port;
                    if !container.port_mappings().iter().any(|p| p.container_port() == Some(port)) {
                        problems.push(Problem {
                            field: "workload.ecs.loadBalancer.containerPort",
                            problem: format!("container {} maps no port {port}", ecs.load_balancer.container_name),
                            fix: "add a port mapping for it to the task definition, or set containerPort to a mapped port".into(),
                        });
                    }
                }
            }
        }
        Err(e) => problems.push(call_failed(
            "workload.ecs.taskDefinition",
            "ecs:DescribeTaskDefinition",
            e,
            "register the task definition, or correct the ARN",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_elasticloadbalancingv2::types::{ForwardActionConfig, TargetGroupTuple};

    fn forward(groups: &[&str]) -> Action {
        let tuples = groups.iter().map(|g| TargetGroupTuple::builder().target_group_arn(*g).weight(50).build()).collect();
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(ForwardActionConfig::builder().set_target_groups(Some(tuples)).build())
            .build()
    }

    #[test]
    fn a_forward_naming_both_groups_fits_and_others_say_what_to_change() {
        let mut problems = Vec::new();
        check_forward("traffic.alb.ruleArn", "the rule", &[forward(&["a", "b"])], &["a", "b"], &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        check_forward("traffic.alb.ruleArn", "the rule", &[forward(&["a", "c"])], &["a", "b"], &mut problems);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].problem.contains("not to b"), "{}", problems[0]);
        let fixed = Action::builder().r#type(ActionTypeEnum::FixedResponse).build();
        check_forward("traffic.alb.ruleArn", "the rule", &[fixed], &["a", "b"], &mut problems);
        assert!(problems[1].problem.contains("no forward action"), "{}", problems[1]);
        assert!(problems[1].to_string().contains("\n  fix: give it a forward action to a (weight 100) and b (weight 0)"));
    }
}
