use std::sync::Arc;

use aws_sdk_ecs::types::{
    AwsVpcConfiguration, Compatibility, ContainerDefinition, DeploymentController, DeploymentControllerType, LaunchType,
    NetworkConfiguration, NetworkMode, Scale, ScaleUnit,
};
use aws_sdk_elasticloadbalancingv2 as elbv2;
use elbv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, ForwardActionConfig, PathPatternConditionConfig, RuleCondition,
    TargetGroupStickinessConfig, TargetGroupTuple,
};

use crate::support::{Stack, xml_value};

struct Balancer {
    client: elbv2::Client,
    listener: String,
    stable: String,
    canary: String,
}

/// A load balancer with two target groups and a listener answering 404 by default.
async fn balancer(stack: &Stack, name: &str) -> Balancer {
    // Unique names: an attached stack keeps what earlier runs created.
    let name = &format!("{name}-{}", std::process::id());
    let vpc_xml = stack.ec2(&[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")]).await;
    let vpc = xml_value(&vpc_xml, "<vpcId>", "</vpcId>");
    let mut subnets = Vec::new();
    for (cidr, zone) in [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")] {
        let xml = stack.ec2(&[("Action", "CreateSubnet"), ("VpcId", &vpc), ("CidrBlock", cidr), ("AvailabilityZone", zone)]).await;
        subnets.push(xml_value(&xml, "<subnetId>", "</subnetId>"));
    }
    let client = elbv2::Client::new(&stack.aws());
    let lb = client.create_load_balancer().name(name).set_subnets(Some(subnets)).send().await.expect("load balancer created");
    let lb_arn = lb.load_balancers()[0].load_balancer_arn().unwrap().to_string();
    let mut groups = Vec::new();
    for role in ["stable", "canary"] {
        let tg = client
            .create_target_group()
            .name(format!("{name}-{role}"))
            .protocol(elbv2::types::ProtocolEnum::Http)
            .port(80)
            .vpc_id(&vpc)
            .target_type(elbv2::types::TargetTypeEnum::Ip)
            .send()
            .await
            .expect("target group created");
        groups.push(tg.target_groups()[0].target_group_arn().unwrap().to_string());
    }
    let not_found = Action::builder()
        .r#type(ActionTypeEnum::FixedResponse)
        .fixed_response_config(FixedResponseActionConfig::builder().status_code("404").content_type("text/plain").build())
        .build();
    let listener = client
        .create_listener()
        .load_balancer_arn(&lb_arn)
        .protocol(elbv2::types::ProtocolEnum::Http)
        .port(80)
        .default_actions(not_found)
        .send()
        .await
        .expect("listener created");
    Balancer {
        client,
        listener: listener.listeners()[0].listener_arn().unwrap().to_string(),
        stable: groups[0].clone(),
        canary: groups[1].clone(),
    }
}

fn forward(stable: &str, canary: &str, canary_weight: i32, sticky: bool) -> Action {
    let groups = [(stable, 100 - canary_weight), (canary, canary_weight)]
        .into_iter()
        .map(|(arn, weight)| TargetGroupTuple::builder().target_group_arn(arn).weight(weight).build())
        .collect();
    let config = ForwardActionConfig::builder()
        .set_target_groups(Some(groups))
        .target_group_stickiness_config(TargetGroupStickinessConfig::builder().enabled(sticky).duration_seconds(300).build())
        .build();
    Action::builder().r#type(ActionTypeEnum::Forward).forward_config(config).order(1).build()
}

fn weights(action: &Action) -> Vec<(String, i32)> {
    action
        .forward_config()
        .unwrap()
        .target_groups()
        .iter()
        .map(|t| (t.target_group_arn().unwrap().to_string(), t.weight().unwrap()))
        .collect()
}

register_test!(30, alb_rule_weights_round_trip);
pub async fn alb_rule_weights_round_trip(stack: Arc<Stack>) {
    let lb = balancer(&stack, "rule-lb").await;
    let path = RuleCondition::builder()
        .field("path-pattern")
        .path_pattern_config(PathPatternConditionConfig::builder().values("/api/*").build())
        .build();
    let host = RuleCondition::builder().field("host-header").values("shop.example.com").build();
    let rule = lb
        .client
        .create_rule()
        .listener_arn(&lb.listener)
        .priority(10)
        .conditions(path)
        .conditions(host)
        .actions(forward(&lb.stable, &lb.canary, 0, true))
        .send()
        .await
        .expect("rule created");
    let rule_arn = rule.rules()[0].rule_arn().unwrap().to_string();

    lb.client.modify_rule().rule_arn(&rule_arn).actions(forward(&lb.stable, &lb.canary, 20, true)).send().await.expect("rule modified");

    let described = lb.client.describe_rules().rule_arns(&rule_arn).send().await.expect("rules described");
    let rule = &described.rules()[0];
    let action = &rule.actions()[0];
    assert_eq!(weights(action), vec![(lb.stable.clone(), 80), (lb.canary.clone(), 20)]);
    let stickiness = action.forward_config().unwrap().target_group_stickiness_config().unwrap();
    assert_eq!((stickiness.enabled(), stickiness.duration_seconds()), (Some(true), Some(300)), "stickiness survives");
    let fields: Vec<&str> = rule.conditions().iter().filter_map(|c| c.field()).collect();
    assert_eq!(fields, ["path-pattern", "host-header"], "conditions survive a weight change");
    assert_eq!(rule.priority(), Some("10"));
}

register_test!(40, alb_listener_default_action_weights_round_trip);
pub async fn alb_listener_default_action_weights_round_trip(stack: Arc<Stack>) {
    let lb = balancer(&stack, "listener-lb").await;
    lb.client
        .modify_listener()
        .listener_arn(&lb.listener)
        .default_actions(forward(&lb.stable, &lb.canary, 35, false))
        .send()
        .await
        .expect("listener modified");
    let described = lb.client.describe_listeners().listener_arns(&lb.listener).send().await.expect("listeners described");
    let action = &described.listeners()[0].default_actions()[0];
    assert_eq!(weights(action), vec![(lb.stable.clone(), 65), (lb.canary.clone(), 35)]);
}

register_test!(50, ecs_external_service_gets_a_task_set);
pub async fn ecs_external_service_gets_a_task_set(stack: Arc<Stack>) {
    let vpc_xml = stack.ec2(&[("Action", "CreateVpc"), ("CidrBlock", "10.1.0.0/16")]).await;
    let vpc = xml_value(&vpc_xml, "<vpcId>", "</vpcId>");
    stack.ec2(&[("Action", "ModifyVpcAttribute"), ("VpcId", &vpc), ("EnableDnsHostnames.Value", "true")]).await;
    let subnet_xml =
        stack.ec2(&[("Action", "CreateSubnet"), ("VpcId", &vpc), ("CidrBlock", "10.1.1.0/24"), ("AvailabilityZone", "us-east-1a")]).await;
    let subnet = xml_value(&subnet_xml, "<subnetId>", "</subnetId>");
    let group_xml =
        stack.ec2(&[("Action", "CreateSecurityGroup"), ("GroupName", "orders"), ("GroupDescription", "orders"), ("VpcId", &vpc)]).await;
    let group = xml_value(&group_xml, "<groupId>", "</groupId>");
    let network = NetworkConfiguration::builder()
        .awsvpc_configuration(AwsVpcConfiguration::builder().subnets(&subnet).security_groups(&group).build().unwrap())
        .build();

    let ecs = aws_sdk_ecs::Client::new(&stack.aws());
    let cluster = format!("shop-{}", std::process::id());
    let cluster = cluster.as_str();
    ecs.create_cluster().cluster_name(cluster).send().await.expect("cluster created");
    let container = ContainerDefinition::builder().name("app").image("registry.invalid/orders:42").memory(256).build();
    let task = ecs
        .register_task_definition()
        .family("orders")
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(container)
        .send()
        .await
        .expect("task definition registered");
    let task_definition = task.task_definition().unwrap().task_definition_arn().unwrap().to_string();
    let controller = DeploymentController::builder().r#type(DeploymentControllerType::External).build().unwrap();
    ecs.create_service()
        .cluster(cluster)
        .service_name("orders")
        .desired_count(4)
        .deployment_controller(controller)
        .send()
        .await
        .expect("service created");

    let created = ecs
        .create_task_set()
        .cluster(cluster)
        .service("orders")
        .task_definition(&task_definition)
        .launch_type(LaunchType::Fargate)
        .network_configuration(network)
        .scale(Scale::builder().unit(ScaleUnit::Percent).value(10.0).build())
        .send()
        .await
        .expect("task set created");
    let task_set = created.task_set().unwrap();
    let id = task_set.id().unwrap().to_string();
    // By ARN: AWS takes an id or an ARN, moto matches only the ARN.
    let arn = task_set.task_set_arn().unwrap().to_string();
    ecs.update_service_primary_task_set().cluster(cluster).service("orders").primary_task_set(&arn).send().await.expect("primary set");

    let described = ecs.describe_task_sets().cluster(cluster).service("orders").send().await.expect("task sets described");
    let found = described.task_sets().iter().find(|t| t.id() == Some(id.as_str())).expect("the task set is listed");
    assert_eq!(found.task_definition(), Some(task_definition.as_str()));
    assert_eq!(found.scale().map(|s| s.value()), Some(10.0));
    assert_eq!(found.status(), Some("PRIMARY"));
    let services = ecs.describe_services().cluster(cluster).services("orders").send().await.expect("service described");
    let controller = services.services()[0].deployment_controller().map(|d| d.r#type().clone());
    assert_eq!(controller, Some(DeploymentControllerType::External));
}
