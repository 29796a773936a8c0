//! Each setup's template deployed on moto, a Rollout built only from the stack's outputs, and
//! that Rollout rolled out by the real controller.

use std::sync::Arc;

use aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum;
use serde_json::json;
use sluice::api::{Rollout, RolloutPhase};

use crate::controller::Harness;
use crate::stacks::{deploy, network, resource_names, template, without};
use crate::support::registrar::{EcsAgent, REGISTRATION_LAG};
use crate::support::scene::{DEADLINE, Scene};
use crate::support::wait_for;

impl Scene {
    async fn wait_healthy(&self) -> Rollout {
        self.wait("phase Healthy", |r| {
            let status = r.status.as_ref();
            status.and_then(|s| s.phase) == Some(RolloutPhase::Healthy)
                && status.and_then(|s| s.observed_generation) == r.metadata.generation
                && status.is_some_and(|s| s.stable_revision == s.update_revision)
        })
        .await
    }

    async fn wait_manual_pause_at(&self, weight: i32) -> Rollout {
        self.wait(&format!("the manual pause at {weight}%"), |r| {
            let status = r.status.as_ref();
            status.and_then(|s| s.current_step_index) == Some(3) && status.and_then(|s| s.verified_weight) == Some(weight)
        })
        .await
    }
}

/// The weights of two target groups in the forward action of a listener rule, read from moto
/// (-1 for a target group the action does not name).
async fn rule_weights(elb: &aws_sdk_elasticloadbalancingv2::Client, rule: &str, first: &str, second: &str) -> (i32, i32) {
    let described = elb.describe_rules().rule_arns(rule).send().await.expect("DescribeRules");
    let action = described.rules()[0].actions().iter().find(|a| a.forward_config().is_some()).expect("a forward action");
    let groups = action.forward_config().unwrap().target_groups();
    let weight = |arn: &str| groups.iter().find(|t| t.target_group_arn() == Some(arn)).and_then(|t| t.weight()).unwrap_or(-1);
    (weight(first), weight(second))
}

/// What the templates say about the target groups: type ip, as a Rollout's ALB needs for pods
/// and Fargate tasks.
async fn assert_ip_target_groups(elb: &aws_sdk_elasticloadbalancingv2::Client, groups: &[&str]) {
    let described = elb.describe_target_groups().set_target_group_arns(Some(groups.iter().map(|g| g.to_string()).collect())).send();
    let described = described.await.expect("DescribeTargetGroups");
    assert_eq!(described.target_groups().len(), groups.len());
    for group in described.target_groups() {
        assert_eq!(group.target_type(), Some(&TargetTypeEnum::Ip), "{:?}", group.target_group_arn());
    }
}

register_test!(10, kubernetes_canary_stack_is_rolled_out_on_its_rule);
pub async fn kubernetes_canary_stack_is_rolled_out_on_its_rule(h: Arc<Harness>) {
    let (vpc, subnets) = network(&h.stack, 31).await;
    let name = format!("k8s-canary-{}", std::process::id());
    let body = template("kubernetes-canary-alb.yaml");
    let stack = deploy(&h.stack, &name, &body, &[("VpcId", &vpc), ("Subnets", &subnets), ("CreateTestListener", "true")]).await;
    let (rule, test_rule) = (stack.output("RuleArn"), stack.output("TestRuleArn"));
    let (stable, canary) = (stack.output("StableTargetGroupArn"), stack.output("CanaryTargetGroupArn"));
    assert!(rule.contains(":listener-rule/app/") && test_rule.contains(":listener-rule/app/"), "{rule} {test_rule}");
    let listed: Vec<&str> = stack.resources.iter().map(|(l, _, _)| l.as_str()).collect();
    assert_eq!(listed, resource_names(&body), "every resource of the template is created");
    // moto gives an AWS::EC2::SecurityGroupIngress no physical id; its rule is checked instead.
    let security_group = stack.output("LoadBalancerSecurityGroupId");
    let described = h.stack.ec2(&[("Action", "DescribeSecurityGroups"), ("GroupId.1", &security_group)]).await;
    for port in ["80", "8080"] {
        assert!(described.contains(&format!("<fromPort>{port}</fromPort>")), "the load balancer's group opens {port}: {described}");
    }

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&h.stack.aws());
    assert_ip_target_groups(&elb, &[&stable, &canary]).await;
    assert_eq!(rule_weights(&elb, &rule, &stable, &canary).await, (100, 0), "the template's rule: all traffic on stable");
    assert_eq!(rule_weights(&elb, &test_rule, &stable, &canary).await, (100, 0));

    // The Rollout: its traffic section is the stack's outputs and nothing else.
    let s = Scene::new(&h.stack, "cfn-k8s", &["web-stable", "web-canary"]).await;
    let _targets = s.bind_target_groups(&elb, &stable, &canary, REGISTRATION_LAG);
    s.allow_aws(&[&rule, &test_rule, &stable, &canary]).await;
    let rollout: Rollout = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "workload": {"kubernetes": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}
            }},
            "traffic": {"alb": {"ruleArn": rule, "testRuleArn": test_rule, "stableTargetGroupArn": stable, "canaryTargetGroupArn": canary}},
            "strategy": {"canary": {"stableService": "web-stable", "canaryService": "web-canary",
                "steps": [{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {}}]}}
        }
    }))
    .expect("a Rollout from the outputs");
    s.create(&rollout).await;
    s.wait_healthy().await;

    s.patch(json!({"spec": {"workload": {"kubernetes": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}}}}))
        .await;
    s.wait_manual_pause_at(50).await;
    assert_eq!(rule_weights(&elb, &rule, &stable, &canary).await, (50, 50), "the weights Sluice set, read back from the stack's rule");
    wait_for("the test rule to reach the canary", DEADLINE, || async {
        (rule_weights(&elb, &test_rule, &stable, &canary).await == (0, 100)).then_some(())
    })
    .await;
    s.command("promote", "p-1").await;
    s.wait_healthy().await;
    assert_eq!(rule_weights(&elb, &rule, &stable, &canary).await, (100, 0), "promoted: all traffic on stable, now the new revision");
    wait_for("the test rule back on stable", DEADLINE, || async {
        (rule_weights(&elb, &test_rule, &stable, &canary).await == (100, 0)).then_some(())
    })
    .await;
}

register_test!(20, ecs_stack_is_rolled_out_as_task_sets);
pub async fn ecs_stack_is_rolled_out_as_task_sets(h: Arc<Harness>) {
    let (vpc, subnets) = network(&h.stack, 32).await;
    let id = std::process::id();
    let (cluster_name, service_name) = (format!("cfn-{id}"), "orders");
    let parameters = [
        ("VpcId", vpc.as_str()),
        ("Subnets", &subnets),
        ("ClusterName", &cluster_name),
        ("ServiceName", service_name),
        ("DesiredCount", "4"),
        ("ContainerImage", "orders:1"),
    ];
    // moto 5.2's AWS::ECS::Service needs a TaskDefinition (a service with the EXTERNAL
    // deployment controller has none: its task sets do) and ignores DeploymentController and
    // LoadBalancers. So the stack is created without the Service resource and its output, and
    // the service is created through the ECS API with the template's own properties.
    let body = without(&template("ecs-service.yaml"), "Service");
    let stack = deploy(&h.stack, &format!("ecs-{id}"), &body, &parameters).await;
    let ecs = aws_sdk_ecs::Client::new(&h.stack.aws());
    let controller =
        aws_sdk_ecs::types::DeploymentController::builder().r#type(aws_sdk_ecs::types::DeploymentControllerType::External).build().unwrap();
    let created = ecs
        .create_service()
        .cluster(stack.output("Cluster"))
        .service_name(service_name)
        .desired_count(4)
        .scheduling_strategy(aws_sdk_ecs::types::SchedulingStrategy::Replica)
        .deployment_controller(controller)
        .send()
        .await
        .expect("CreateService");
    let service_arn = created.service().and_then(|s| s.service_arn()).expect("a service ARN").to_string();

    let (cluster, v1) = (stack.output("Cluster"), stack.output("TaskDefinition"));
    assert_eq!(cluster, cluster_name);
    let (rule, test_rule) = (stack.output("RuleArn"), stack.output("TestRuleArn"));
    let (blue, green) = (stack.output("StableTargetGroupArn"), stack.output("CanaryTargetGroupArn"));
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&h.stack.aws());
    assert_ip_target_groups(&elb, &[&blue, &green]).await;
    assert_eq!(rule_weights(&elb, &rule, &blue, &green).await, (100, 0));
    // ECS's part: moto runs no tasks.
    let _agent = EcsAgent::run(&h.stack, &cluster, service_name, REGISTRATION_LAG).await;
    let described = ecs.describe_task_definition().task_definition(&v1).send().await.expect("DescribeTaskDefinition");
    let container = &described.task_definition().expect("the template's task definition").container_definitions()[0];
    assert_eq!((container.name(), container.image()), (Some("app"), Some("orders:1")));

    let s = Scene::new(&h.stack, "cfn-ecs", &[]).await;
    s.allow_aws(&[&rule, &test_rule, &blue, &green, &service_arn]).await;
    let subnets: Vec<String> = stack.output("Subnets").split(',').map(String::from).collect();
    let port: i32 = stack.output("ContainerPort").parse().expect("a port");
    let rollout: Rollout = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {
            "workload": {"ecs": {
                "cluster": cluster, "service": service_name, "taskDefinition": v1, "desiredCount": 4, "launchType": "FARGATE",
                "networkConfiguration": {"subnets": subnets, "securityGroups": [stack.output("SecurityGroup")]},
                "loadBalancer": {"containerName": stack.output("ContainerName"), "containerPort": port}
            }},
            "traffic": {"alb": {"ruleArn": rule, "testRuleArn": test_rule, "stableTargetGroupArn": blue, "canaryTargetGroupArn": green}},
            "strategy": {"canary": {"scaleDownDelaySeconds": 0, "abortScaleDownDelaySeconds": 0,
                "steps": [{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {}}]}}
        }
    }))
    .expect("a Rollout from the outputs");
    s.create(&rollout).await;
    s.wait_healthy().await;
    let task_sets = || async {
        let described = ecs.describe_task_sets().cluster(&cluster).service(service_name).send().await.expect("DescribeTaskSets");
        let mut defs: Vec<String> = described.task_sets().iter().filter_map(|t| t.task_definition().map(String::from)).collect();
        defs.sort();
        defs
    };
    assert_eq!(task_sets().await, vec![v1.clone()], "the first version runs as one task set");
    assert_eq!(rule_weights(&elb, &rule, &blue, &green).await, (100, 0));

    // A second version: a new revision of the template's task definition family.
    let registered = ecs
        .register_task_definition()
        .family(service_name)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("app")
                .image("orders:2")
                .memory(512)
                .port_mappings(aws_sdk_ecs::types::PortMapping::builder().container_port(port).build())
                .build(),
        )
        .send()
        .await
        .expect("RegisterTaskDefinition");
    let v2 = registered.task_definition().and_then(|t| t.task_definition_arn()).unwrap().to_string();
    s.patch(json!({"spec": {"workload": {"ecs": {"taskDefinition": v2}}}})).await;
    s.wait_manual_pause_at(50).await;
    assert_eq!(rule_weights(&elb, &rule, &blue, &green).await, (50, 50), "the canary task set on green, read back from the rule");
    let mut both = vec![v1.clone(), v2.clone()];
    both.sort();
    assert_eq!(task_sets().await, both, "one task set per version");
    s.command("promote", "p-1").await;
    s.wait_healthy().await;
    assert_eq!(rule_weights(&elb, &rule, &blue, &green).await, (0, 100), "green serves the new stable task set");
    wait_for("the old task set deleted", DEADLINE, || async { (task_sets().await == vec![v2.clone()]).then_some(()) }).await;
}

register_test!(30, ecs_stack_with_green_live_serves_from_green);
/// `LiveTargetGroup=Green` (for a stack update after a promotion left green serving) writes the
/// rules all on green. moto re-applies no rule on an update that changes only this parameter, so
/// it is tested on a new stack.
pub async fn ecs_stack_with_green_live_serves_from_green(h: Arc<Harness>) {
    let (vpc, subnets) = network(&h.stack, 35).await;
    let id = std::process::id();
    let cluster = format!("green-{id}");
    let parameters = [
        ("VpcId", vpc.as_str()),
        ("Subnets", &subnets),
        ("ClusterName", &cluster),
        ("ServiceName", "orders"),
        ("ContainerImage", "orders:1"),
        ("LiveTargetGroup", "Green"),
    ];
    let stack = deploy(&h.stack, &format!("green-{id}"), &without(&template("ecs-service.yaml"), "Service"), &parameters).await;
    let (blue, green) = (stack.output("StableTargetGroupArn"), stack.output("CanaryTargetGroupArn"));
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&h.stack.aws());
    for rule in [stack.output("RuleArn"), stack.output("TestRuleArn")] {
        assert_eq!(rule_weights(&elb, &rule, &blue, &green).await, (0, 100), "{rule}");
    }
}
