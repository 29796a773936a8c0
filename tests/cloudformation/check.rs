//! `sluice aws check` (the real binary) on Rollouts built from the stacks' outputs: clean for
//! the stacks as deployed, and one broken variant per check, each printed with its fix.

use std::sync::Arc;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, ProtocolEnum, RuleCondition, TargetTypeEnum,
};
use serde_json::{Value, json};

use crate::controller::Harness;
use crate::iam::iam;
use crate::stacks::{Deployed, deploy, network, template, without};
use crate::support::{Stack, xml_value};

/// Runs `sluice aws check -f` on the Rollout against moto; (exit code, stdout).
fn aws_check(stack: &Stack, name: &str, rollout: &Value) -> (i32, String) {
    aws_check_as(stack, name, rollout, ("testing", "testing"))
}

/// The same with an access key and secret.
fn aws_check_as(stack: &Stack, name: &str, rollout: &Value, (key, secret): (&str, &str)) -> (i32, String) {
    let file = stack.dir.join(format!("check-{name}.yaml"));
    std::fs::write(&file, serde_json::to_string_pretty(rollout).unwrap()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["aws", "check", "-f"])
        .arg(&file)
        .env("AWS_ENDPOINT_URL", &stack.aws_endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .expect("sluice runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    println!("  sluice aws check ({name}), exit {:?}:\n{}", output.status.code(), indent(&stdout));
    (output.status.code().unwrap_or(-1), stdout)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Asserts the check failed with exactly one problem on `field` saying `says`, with a fix.
fn assert_one_problem(stack: &Stack, name: &str, rollout: &Value, field: &str, says: &str) {
    let (code, stdout) = aws_check(stack, name, rollout);
    assert_eq!(code, 1, "{name}: a problem is exit 1: {stdout}");
    let problems: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("  fix: ")).collect();
    assert_eq!(problems.len(), 1, "{name}: one problem: {stdout}");
    assert!(problems[0].starts_with(&format!("shop/web: {field}: ")) && problems[0].contains(says), "{name}: {stdout}");
    assert!(stdout.lines().nth(1).is_some_and(|l| l.starts_with("  fix: ") && l.len() > 20), "{name}: the fix is printed: {stdout}");
}

fn kubernetes_rollout(alb: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "workload": {"kubernetes": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1"}]}}
            }},
            "traffic": {"alb": alb},
            "strategy": {"canary": {"stableService": "web-stable", "canaryService": "web-canary", "steps": [{"setWeight": 20}, {"pause": {}}]}}
        }
    })
}

fn ecs_rollout(stack: &Deployed, service: &str, container: &str, canary_group: &str) -> Value {
    let subnets: Vec<String> = stack.output("Subnets").split(',').map(String::from).collect();
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "workload": {"ecs": {
                "cluster": stack.output("Cluster"), "service": service, "taskDefinition": stack.output("TaskDefinition"),
                "desiredCount": 2, "launchType": "FARGATE",
                "networkConfiguration": {"subnets": subnets, "securityGroups": [stack.output("SecurityGroup")]},
                "loadBalancer": {"containerName": container, "containerPort": stack.output("ContainerPort").parse::<i32>().unwrap()}
            }},
            "traffic": {"alb": {"ruleArn": stack.output("RuleArn"), "testRuleArn": stack.output("TestRuleArn"),
                "stableTargetGroupArn": stack.output("StableTargetGroupArn"), "canaryTargetGroupArn": canary_group}},
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
        }
    })
}

async fn ecs_service(stack: &Stack, cluster: &str, name: &str, external: bool) {
    let ecs = aws_sdk_ecs::Client::new(&stack.aws());
    let mut create = ecs.create_service().cluster(cluster).service_name(name).desired_count(2);
    if external {
        let controller = aws_sdk_ecs::types::DeploymentController::builder()
            .r#type(aws_sdk_ecs::types::DeploymentControllerType::External)
            .build()
            .unwrap();
        create = create.deployment_controller(controller);
    } else {
        create = create.task_definition("orders");
    }
    create.send().await.expect("CreateService");
}

register_test!(60, aws_check_passes_the_stacks_and_names_each_broken_part);
pub async fn aws_check_passes_the_stacks_and_names_each_broken_part(h: Arc<Harness>) {
    let id = std::process::id();
    let (vpc, subnets) = network(&h.stack, 33).await;
    let k8s =
        deploy(&h.stack, &format!("check-k8s-{id}"), &template("kubernetes-canary-alb.yaml"), &[("VpcId", &vpc), ("Subnets", &subnets)])
            .await;
    let cluster = format!("check-{id}");
    let ecs_parameters = [
        ("VpcId", vpc.as_str()),
        ("Subnets", &subnets),
        ("ClusterName", &cluster),
        ("ServiceName", "orders"),
        ("ContainerImage", "orders:1"),
    ];
    // As in the rollout test: moto's CloudFormation cannot create the EXTERNAL service.
    let ecs = deploy(&h.stack, &format!("check-ecs-{id}"), &without(&template("ecs-service.yaml"), "Service"), &ecs_parameters).await;
    ecs_service(&h.stack, &cluster, "orders", true).await;
    let good_alb = json!({"ruleArn": k8s.output("RuleArn"), "stableTargetGroupArn": k8s.output("StableTargetGroupArn"),
        "canaryTargetGroupArn": k8s.output("CanaryTargetGroupArn")});

    let (code, stdout) = aws_check(&h.stack, "kubernetes stack", &kubernetes_rollout(good_alb.clone()));
    assert_eq!((code, stdout.as_str()), (0, "shop/web: ok\n"), "the Kubernetes stack's outputs fit");
    let green = ecs.output("CanaryTargetGroupArn");
    let (code, stdout) = aws_check(&h.stack, "ECS stack", &ecs_rollout(&ecs, "orders", "app", &green));
    assert_eq!((code, stdout.as_str()), (0, "shop/web: ok\n"), "the ECS stack's outputs fit");

    // A rule without a forward action, on the stack's listener.
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&h.stack.aws());
    let fixed = Action::builder()
        .r#type(ActionTypeEnum::FixedResponse)
        .fixed_response_config(FixedResponseActionConfig::builder().status_code("503").build())
        .build();
    let path = RuleCondition::builder().field("path-pattern").values("/maintenance/*").build();
    let created = elb.create_rule().listener_arn(k8s.output("ListenerArn")).priority(20).conditions(path).actions(fixed).send();
    let fixed_rule = created.await.expect("CreateRule").rules()[0].rule_arn().unwrap().to_string();
    let mut alb = good_alb.clone();
    alb["ruleArn"] = json!(fixed_rule);
    assert_one_problem(&h.stack, "rule without forward", &kubernetes_rollout(alb), "traffic.alb.ruleArn", "has no forward action");

    // A rule that forwards to other target groups than the Rollout's.
    let mut alb = good_alb.clone();
    alb["ruleArn"] = json!(ecs.output("RuleArn"));
    assert_one_problem(&h.stack, "rule of other groups", &kubernetes_rollout(alb), "traffic.alb.ruleArn", "forwards to");

    // A listener that does not exist.
    let mut alb = good_alb.clone();
    alb.as_object_mut().unwrap().remove("ruleArn");
    let listener = k8s.output("ListenerArn");
    let gone = format!("{}/0123456789abcdef", listener.rsplit_once('/').unwrap().0);
    alb["listenerArn"] = json!(gone);
    assert_one_problem(&h.stack, "missing listener", &kubernetes_rollout(alb), "traffic.alb.listenerArn", "no listener");

    // A target group of type instance for Fargate tasks (and so not in the rule's forward).
    let instance = elb
        .create_target_group()
        .name(format!("check-instance-{}", id % 10_000))
        .protocol(ProtocolEnum::Http)
        .port(8080)
        .vpc_id(&vpc)
        .target_type(TargetTypeEnum::Instance)
        .send()
        .await
        .expect("CreateTargetGroup");
    let instance = instance.target_groups()[0].target_group_arn().unwrap().to_string();
    let (code, stdout) = aws_check(&h.stack, "instance target group", &ecs_rollout(&ecs, "orders", "app", &instance));
    assert_eq!(code, 1);
    assert!(
        stdout.contains("traffic.alb.canaryTargetGroupArn: target group check-instance-") && stdout.contains("is of type instance"),
        "{stdout}"
    );
    assert!(stdout.contains("fix: create it with TargetType ip (tasks in awsvpc mode register by IP)"), "{stdout}");

    // An ECS service on the ECS deployment controller.
    ecs_service(&h.stack, &cluster, "legacy", false).await;
    assert_one_problem(&h.stack, "ECS controller", &ecs_rollout(&ecs, "legacy", "app", &green), "workload.ecs.service", "not EXTERNAL");

    // A container the task definition does not have.
    assert_one_problem(
        &h.stack,
        "wrong container",
        &ecs_rollout(&ecs, "orders", "web", &green),
        "workload.ecs.loadBalancer.containerName",
        "has no container web",
    );
}

/// moto checks credentials and IAM policies while this lives (its `reset-auth` API), and stops
/// when dropped, also on a panic: the other tests and the controller use unchecked test keys.
struct Enforced {
    endpoint: String,
}

impl Enforced {
    fn start(endpoint: &str) -> Enforced {
        moto_auth(endpoint, "0");
        Enforced { endpoint: endpoint.to_string() }
    }
}

impl Drop for Enforced {
    fn drop(&mut self) {
        moto_auth(&self.endpoint, "inf");
    }
}

/// Sets how many more requests moto serves before it checks IAM ("inf": never).
fn moto_auth(endpoint: &str, count: &str) {
    use std::io::{Read, Write};
    let address = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("moto listens");
    let request = format!(
        "POST /moto-api/reset-auth HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{count}",
        count.len()
    );
    stream.write_all(request.as_bytes()).expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("moto answers");
    assert!(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"), "reset-auth: {answer}");
}

// Last: moto checks IAM while it runs.
register_test!(70, aws_check_names_a_missing_permission);
pub async fn aws_check_names_a_missing_permission(h: Arc<Harness>) {
    let id = std::process::id();
    let (vpc, subnets) = network(&h.stack, 34).await;
    let k8s =
        deploy(&h.stack, &format!("perm-k8s-{id}"), &template("kubernetes-canary-alb.yaml"), &[("VpcId", &vpc), ("Subnets", &subnets)])
            .await;
    // A user with the router's reads (and DescribeTargetGroups, which the check also calls) but
    // without elasticloadbalancing:DescribeRules.
    let user = format!("check-{id}");
    iam(&h.stack, &[("Action", "CreateUser"), ("UserName", &user)]).await;
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*",
        "Action": ["elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTargetGroups"]}]});
    let policy = policy.to_string();
    iam(&h.stack, &[("Action", "PutUserPolicy"), ("UserName", &user), ("PolicyName", "reads"), ("PolicyDocument", &policy)]).await;
    let key = iam(&h.stack, &[("Action", "CreateAccessKey"), ("UserName", &user)]).await;
    let (key, secret) = (xml_value(&key, "<AccessKeyId>", "</AccessKeyId>"), xml_value(&key, "<SecretAccessKey>", "</SecretAccessKey>"));
    let alb = json!({"ruleArn": k8s.output("RuleArn"), "stableTargetGroupArn": k8s.output("StableTargetGroupArn"),
        "canaryTargetGroupArn": k8s.output("CanaryTargetGroupArn")});

    let enforced = Enforced::start(&h.stack.aws_endpoint);
    let (code, stdout) = aws_check_as(&h.stack, "without DescribeRules", &kubernetes_rollout(alb.clone()), (&key, &secret));
    drop(enforced);
    assert_eq!(code, 1, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one problem and its fix: {stdout}");
    assert!(
        lines[0].starts_with("shop/web: traffic.alb.ruleArn: elasticloadbalancing:DescribeRules was refused: the caller lacks elasticloadbalancing:DescribeRules (HTTP 403)"),
        "{stdout}"
    );
    assert!(lines[1].starts_with("  fix: grant elasticloadbalancing:DescribeRules as docs/iam.md lists it"), "{stdout}");

    // With the permission, the same check is clean.
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*",
        "Action": ["elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeTargetGroups"]}]});
    let policy = policy.to_string();
    iam(&h.stack, &[("Action", "PutUserPolicy"), ("UserName", &user), ("PolicyName", "reads"), ("PolicyDocument", &policy)]).await;
    let enforced = Enforced::start(&h.stack.aws_endpoint);
    let (code, stdout) = aws_check_as(&h.stack, "with DescribeRules", &kubernetes_rollout(alb), (&key, &secret));
    drop(enforced);
    assert_eq!((code, stdout.as_str()), (0, "shop/web: ok\n"));
}
