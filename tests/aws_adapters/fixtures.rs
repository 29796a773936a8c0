//! What the adapter tests build on moto: SDK configurations, a load balancer with two target
//! groups, an ECS service with the EXTERNAL deployment controller.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, DeploymentController, DeploymentControllerType, NetworkMode, PortMapping};
use aws_sdk_elasticloadbalancingv2 as elbv2;
use elbv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, ForwardActionConfig, ProtocolEnum, Rule, TargetDescription,
    TargetGroupStickinessConfig, TargetGroupTuple, TargetTypeEnum,
};
use sluice::api::{AlbTraffic, EcsLaunchType, EcsLoadBalancer, EcsNetworkConfiguration, EcsWorkload};

use crate::support::{Stack, xml_value};

/// An SDK configuration for `endpoint` (moto, or the fault proxy in front of it) with the
/// standard retry mode: `max_attempts` attempts, backoff from 5 ms (capped at 50 ms, so tests
/// stay fast; production keeps the SDK's defaults).
pub fn sdk(endpoint: &str, max_attempts: u32) -> SdkConfig {
    sluice::aws::install_crypto_provider();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let retry = RetryConfig::standard()
        .with_max_attempts(max_attempts)
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(50));
    SdkConfig::builder()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "aws-adapters",
        )))
        .http_client(http)
        .retry_config(retry)
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build()
}

/// A name unique in this run and among runs against an attached stack (which keeps state).
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed))
}

pub struct Network {
    pub vpc: String,
    pub subnets: Vec<String>,
    pub security_group: String,
}

/// A VPC with DNS hostnames on (moto's ECS answers 500 without), two subnets and a security group.
pub async fn network(stack: &Stack, octet: u8) -> Network {
    let cidr = format!("10.{octet}.0.0/16");
    let vpc_xml = stack.ec2(&[("Action", "CreateVpc"), ("CidrBlock", &cidr)]).await;
    let vpc = xml_value(&vpc_xml, "<vpcId>", "</vpcId>");
    stack.ec2(&[("Action", "ModifyVpcAttribute"), ("VpcId", &vpc), ("EnableDnsHostnames.Value", "true")]).await;
    let mut subnets = Vec::new();
    for (i, zone) in ["us-east-1a", "us-east-1b"].into_iter().enumerate() {
        let cidr = format!("10.{octet}.{}.0/24", i + 1);
        let xml = stack.ec2(&[("Action", "CreateSubnet"), ("VpcId", &vpc), ("CidrBlock", &cidr), ("AvailabilityZone", zone)]).await;
        subnets.push(xml_value(&xml, "<subnetId>", "</subnetId>"));
    }
    let name = unique("sg");
    let group_xml =
        stack.ec2(&[("Action", "CreateSecurityGroup"), ("GroupName", &name), ("GroupDescription", "sluice"), ("VpcId", &vpc)]).await;
    let security_group = xml_value(&group_xml, "<groupId>", "</groupId>");
    Network { vpc, subnets, security_group }
}

/// A load balancer with an HTTP listener (404 by default) and two IP target groups.
pub struct Balancer {
    pub client: elbv2::Client,
    pub network: Network,
    pub lb: String,
    pub listener: String,
    pub stable: String,
    pub canary: String,
}

pub async fn balancer(stack: &Stack, octet: u8) -> Balancer {
    let network = network(stack, octet).await;
    let client = elbv2::Client::new(&stack.aws());
    let name = unique("lb");
    let lb =
        client.create_load_balancer().name(&name).set_subnets(Some(network.subnets.clone())).send().await.expect("load balancer created");
    let lb = lb.load_balancers()[0].load_balancer_arn().unwrap().to_string();
    let stable = target_group(&client, &network.vpc, "stable").await;
    let canary = target_group(&client, &network.vpc, "canary").await;
    let listener = listener(&client, &lb, 80, vec![fixed_404()]).await;
    Balancer { client, network, lb, listener, stable, canary }
}

pub async fn target_group(client: &elbv2::Client, vpc: &str, role: &str) -> String {
    let tg = client
        .create_target_group()
        .name(unique(role))
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(vpc)
        .target_type(TargetTypeEnum::Ip)
        .send()
        .await
        .expect("target group created");
    tg.target_groups()[0].target_group_arn().unwrap().to_string()
}

pub async fn listener(client: &elbv2::Client, lb: &str, port: i32, actions: Vec<Action>) -> String {
    let out = client
        .create_listener()
        .load_balancer_arn(lb)
        .protocol(ProtocolEnum::Http)
        .port(port)
        .set_default_actions(Some(actions))
        .send()
        .await
        .expect("listener created");
    out.listeners()[0].listener_arn().unwrap().to_string()
}

pub async fn register(client: &elbv2::Client, target_group: &str, ips: &[&str]) {
    let targets = ips.iter().map(|ip| TargetDescription::builder().id(*ip).port(8080).build()).collect();
    client.register_targets().target_group_arn(target_group).set_targets(Some(targets)).send().await.expect("targets registered");
}

pub fn fixed_404() -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::FixedResponse)
        .fixed_response_config(FixedResponseActionConfig::builder().status_code("404").content_type("text/plain").build())
        .build()
}

/// A forward action with these weights, in this order, with stickiness on for `sticky_seconds`.
pub fn forward(weights: &[(&str, i32)], sticky_seconds: Option<i32>, order: Option<i32>) -> Action {
    let tuples = weights.iter().map(|(arn, w)| TargetGroupTuple::builder().target_group_arn(*arn).weight(*w).build()).collect();
    let stickiness = match sticky_seconds {
        Some(s) => TargetGroupStickinessConfig::builder().enabled(true).duration_seconds(s).build(),
        None => TargetGroupStickinessConfig::builder().enabled(false).build(),
    };
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(ForwardActionConfig::builder().set_target_groups(Some(tuples)).target_group_stickiness_config(stickiness).build())
        .set_order(order)
        .build()
}

pub fn alb_on_rule(lb: &Balancer, rule: &str) -> AlbTraffic {
    AlbTraffic {
        rule_arn: Some(rule.to_string()),
        stable_target_group_arn: lb.stable.clone(),
        canary_target_group_arn: lb.canary.clone(),
        ..Default::default()
    }
}

pub fn alb_on_listener(lb: &Balancer, listener: &str) -> AlbTraffic {
    AlbTraffic {
        listener_arn: Some(listener.to_string()),
        stable_target_group_arn: lb.stable.clone(),
        canary_target_group_arn: lb.canary.clone(),
        ..Default::default()
    }
}

pub async fn describe_rule(client: &elbv2::Client, rule: &str) -> Rule {
    client.describe_rules().rule_arns(rule).send().await.expect("rule described").rules()[0].clone()
}

pub async fn default_actions(client: &elbv2::Client, listener: &str) -> Vec<Action> {
    let out = client.describe_listeners().listener_arns(listener).send().await.expect("listener described");
    out.listeners()[0].default_actions().to_vec()
}

/// The (target group, weight) pairs of a forward action, in order.
pub fn weights(action: &Action) -> Vec<(String, i32)> {
    action
        .forward_config()
        .map(|c| c.target_groups().iter().map(|t| (t.target_group_arn().unwrap().to_string(), t.weight().unwrap_or(1))).collect())
        .unwrap_or_default()
}

pub fn forward_of(actions: &[Action]) -> &Action {
    actions.iter().find(|a| a.r#type() == Some(&ActionTypeEnum::Forward)).expect("a forward action")
}

/// An ECS cluster and a service with the EXTERNAL deployment controller in front of `lb`'s
/// target groups, and the workload spec that names them.
pub struct Service {
    pub client: aws_sdk_ecs::Client,
    pub workload: EcsWorkload,
}

pub async fn ecs_service(stack: &Stack, lb: &Balancer, desired_count: i32, controller: DeploymentControllerType) -> Service {
    let client = aws_sdk_ecs::Client::new(&stack.aws());
    let cluster = unique("shop");
    client.create_cluster().cluster_name(&cluster).send().await.expect("cluster created");
    let container = ContainerDefinition::builder()
        .name("app")
        .image("registry.invalid/orders:42")
        .memory(256)
        .port_mappings(PortMapping::builder().container_port(8080).build())
        .build();
    let task = client
        .register_task_definition()
        .family(unique("orders"))
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(container)
        .send()
        .await
        .expect("task definition registered");
    let task_definition = task.task_definition().unwrap().task_definition_arn().unwrap().to_string();
    client
        .create_service()
        .cluster(&cluster)
        .service_name("orders")
        .desired_count(desired_count)
        .deployment_controller(DeploymentController::builder().r#type(controller).build().unwrap())
        .send()
        .await
        .expect("service created");
    let workload = EcsWorkload {
        cluster,
        service: "orders".into(),
        task_definition,
        desired_count,
        launch_type: Some(EcsLaunchType::Fargate),
        network_configuration: Some(EcsNetworkConfiguration {
            subnets: lb.network.subnets.clone(),
            security_groups: vec![lb.network.security_group.clone()],
            assign_public_ip: false,
        }),
        load_balancer: EcsLoadBalancer { container_name: "app".into(), container_port: 8080 },
    };
    Service { client, workload }
}

/// The task sets of the service as moto holds them: (externalId, status, target group, scale %).
pub async fn task_sets(service: &Service) -> Vec<(String, String, String, f64)> {
    let out = service
        .client
        .describe_task_sets()
        .cluster(&service.workload.cluster)
        .service(&service.workload.service)
        .send()
        .await
        .expect("task sets described");
    out.task_sets()
        .iter()
        .map(|t| {
            (
                t.external_id().unwrap_or_default().to_string(),
                t.status().unwrap_or_default().to_string(),
                t.load_balancers().first().and_then(|l| l.target_group_arn()).unwrap_or_default().to_string(),
                t.scale().map_or(0.0, |s| s.value()),
            )
        })
        .collect()
}
