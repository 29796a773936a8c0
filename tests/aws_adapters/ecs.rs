//! The ECS platform against moto through the real SDK.

use std::sync::Arc;

use aws_sdk_ecs::types::{AwsVpcConfiguration, DeploymentControllerType, NetworkConfiguration, Scale, ScaleUnit};
use sluice::engine::RevisionObservation;
use sluice::platform::ecs::EcsPlatform;

use crate::fixtures::{self, Service};
use crate::support::Stack;

fn observation(revision: &str, replicas: i32, ready: i32) -> RevisionObservation {
    RevisionObservation { revision: revision.into(), replicas, ready, available: ready, addresses: Default::default() }
}

/// The network of a task set or task in `network`'s subnets and security group.
fn awsvpc(network: &fixtures::Network) -> NetworkConfiguration {
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(network.subnets.clone()))
        .security_groups(&network.security_group)
        .build()
        .expect("subnets are set");
    NetworkConfiguration::builder().awsvpc_configuration(vpc).build()
}

async fn statuses(service: &Service) -> Vec<(String, String)> {
    let mut sets: Vec<(String, String)> = fixtures::task_sets(service).await.into_iter().map(|(rev, status, _, _)| (rev, status)).collect();
    sets.sort();
    sets
}

register_test!(70, task_sets_are_created_scaled_promoted_and_deleted);
pub async fn task_sets_are_created_scaled_promoted_and_deleted(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 21).await;
    let service = fixtures::ecs_service(&stack, &lb, 4, DeploymentControllerType::External).await;
    let workload = &service.workload;
    let platform = EcsPlatform::new(&fixtures::sdk(&stack.aws_endpoint, 1));

    // The first revision ever: stableTargetGroupArn, at full size.
    platform.scale(workload, "rev-a", 4, Some(lb.stable.as_str())).await.expect("first task set");
    platform.mark_stable(workload, "rev-a").await.expect("primary");
    let state = platform.observe(workload).await.unwrap();
    assert_eq!(state.revisions(), vec![observation("rev-a", 4, 4)], "moto: STEADY_STATE and no counts, so ready = desired");
    assert_eq!(state.primary_revision(), Some("rev-a"));
    assert_eq!(state.target_group_of("rev-a"), Some(lb.stable.as_str()));

    // Idempotent: the same calls again only read.
    let calls = platform.calls();
    let before = fixtures::task_sets(&service).await;
    platform.scale(workload, "rev-a", 4, Some(lb.stable.as_str())).await.unwrap();
    platform.mark_stable(workload, "rev-a").await.unwrap();
    assert_eq!(platform.calls() - calls, 3, "DescribeServices + DescribeTaskSets, then DescribeTaskSets: no write");
    assert_eq!(fixtures::task_sets(&service).await, before, "nothing changed");

    // A canary of one task: the other target group, 25 %.
    platform.scale(workload, "rev-b", 1, Some(lb.canary.as_str())).await.expect("canary task set");
    let state = platform.observe(workload).await.unwrap();
    assert_eq!(state.target_group_of("rev-b"), Some(lb.canary.as_str()), "not the stable revision's target group");
    assert_eq!(state.task_set("rev-b").unwrap().scale_percent, 25.0);
    assert_eq!(state.revision_on(&lb.canary), Some("rev-b"));
    assert_eq!(state.revisions(), vec![observation("rev-a", 4, 4), observation("rev-b", 1, 1)]);
    let calls = platform.calls();
    platform.scale(workload, "rev-b", 1, Some(lb.canary.as_str())).await.unwrap();
    assert_eq!(platform.calls() - calls, 2, "second call: reads only");

    // Grow, promote, retire the old one.
    platform.scale(workload, "rev-b", 4, Some(lb.canary.as_str())).await.unwrap();
    platform.mark_stable(workload, "rev-b").await.unwrap();
    assert_eq!(statuses(&service).await, [("rev-a".to_string(), "ACTIVE".to_string()), ("rev-b".to_string(), "PRIMARY".to_string())]);
    platform.scale(workload, "rev-a", 0, None).await.expect("old task set deleted");
    platform.scale(workload, "rev-a", 0, None).await.expect("deleting again is a no-op");
    let state = platform.observe(workload).await.unwrap();
    assert_eq!(state.revisions(), vec![observation("rev-b", 4, 4)]);
    assert_eq!(state.primary_revision(), Some("rev-b"));

    // The next deployment goes back to the first target group: roles alternate.
    platform.scale(workload, "rev-c", 2, Some(lb.stable.as_str())).await.unwrap();
    let state = platform.observe(workload).await.unwrap();
    assert_eq!(state.target_group_of("rev-c"), Some(lb.stable.as_str()));
    assert_eq!(state.task_set("rev-c").unwrap().scale_percent, 50.0);
}

register_test!(80, scale_percent_rounds_to_whole_tasks_and_follows_the_services_desired_count);
pub async fn scale_percent_rounds_to_whole_tasks_and_follows_the_services_desired_count(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 22).await;
    let service = fixtures::ecs_service(&stack, &lb, 3, DeploymentControllerType::External).await;
    let platform = EcsPlatform::new(&fixtures::sdk(&stack.aws_endpoint, 1));

    platform.scale(&service.workload, "rev-a", 1, Some(lb.stable.as_str())).await.unwrap();
    let state = platform.observe(&service.workload).await.unwrap();
    assert_eq!(state.task_set("rev-a").unwrap().scale_percent, 33.33);
    assert_eq!(state.revisions(), vec![observation("rev-a", 1, 1)], "⌈33.33 % × 3⌉ = 1");

    // Scaling a task set leaves the service's desiredCount alone (an autoscaler may have set it).
    let calls = platform.calls();
    platform.scale(&service.workload, "rev-a", 1, Some(lb.stable.as_str())).await.unwrap();
    assert_eq!(platform.calls() - calls, 2, "one DescribeServices and one DescribeTaskSets, no UpdateService");
    assert_eq!(platform.observe(&service.workload).await.unwrap().service_desired_count, 3);

    // The desiredCount becomes 6: the scale is recomputed against the service's count.
    assert!(platform.set_desired_count(&service.workload, 6).await.unwrap());
    assert!(!platform.set_desired_count(&service.workload, 6).await.unwrap(), "already so: nothing called");
    platform.scale(&service.workload, "rev-a", 1, Some(lb.stable.as_str())).await.unwrap();
    let state = platform.observe(&service.workload).await.unwrap();
    assert_eq!(state.service_desired_count, 6);
    assert_eq!(state.task_set("rev-a").unwrap().scale_percent, 16.66);
    assert_eq!(state.revisions(), vec![observation("rev-a", 1, 1)]);

    let error = platform.scale(&service.workload, "rev-a", 7, Some(lb.stable.as_str())).await.unwrap_err();
    assert_eq!(error.category(), "invalid", "{error}");
}

register_test!(90, duplicate_task_sets_of_a_revision_are_cleaned_up);
pub async fn duplicate_task_sets_of_a_revision_are_cleaned_up(stack: Arc<Stack>) {
    // What a retried CreateTaskSet can leave when AWS applied the first attempt and still
    // answered with an error: two task sets with the same externalId.
    let lb = fixtures::balancer(&stack, 23).await;
    let service = fixtures::ecs_service(&stack, &lb, 4, DeploymentControllerType::External).await;
    let platform = EcsPlatform::new(&fixtures::sdk(&stack.aws_endpoint, 1));
    platform.scale(&service.workload, "rev-a", 4, Some(lb.stable.as_str())).await.unwrap();
    platform.mark_stable(&service.workload, "rev-a").await.unwrap();
    service
        .client
        .create_task_set()
        .cluster(&service.workload.cluster)
        .service(&service.workload.service)
        .task_definition(&service.workload.task_definition)
        .external_id("rev-a")
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .network_configuration(awsvpc(&lb.network))
        .scale(Scale::builder().unit(ScaleUnit::Percent).value(100.0).build())
        .send()
        .await
        .unwrap();
    assert_eq!(platform.observe(&service.workload).await.unwrap().revisions().len(), 1, "reported once");
    platform.scale(&service.workload, "rev-a", 4, Some(lb.stable.as_str())).await.unwrap();
    assert_eq!(statuses(&service).await, [("rev-a".to_string(), "PRIMARY".to_string())], "the primary one is kept");
}

register_test!(95, task_addresses_are_the_ips_of_each_task_sets_running_tasks);
/// What the ALB gate matches against healthy targets: each task set's RUNNING tasks, found by
/// `startedBy` (ECS starts a task set's tasks with its ID; moto runs none itself, so they are
/// started here as ECS would).
pub async fn task_addresses_are_the_ips_of_each_task_sets_running_tasks(stack: Arc<Stack>) {
    crate::support::registrar::tasks_keep_running(&stack.aws_endpoint).await;
    let lb = fixtures::balancer(&stack, 24).await;
    let service = fixtures::ecs_service(&stack, &lb, 4, DeploymentControllerType::External).await;
    let workload = &service.workload;
    let platform = EcsPlatform::new(&fixtures::sdk(&stack.aws_endpoint, 1));
    platform.scale(workload, "rev-a", 4, Some(lb.stable.as_str())).await.unwrap();
    platform.scale(workload, "rev-b", 1, Some(lb.canary.as_str())).await.unwrap();
    let state = platform.observe(workload).await.unwrap();
    let id = |revision: &str| state.task_set(revision).map(|t| t.id.clone()).expect("a task set");
    let (a, b) = (id("rev-a"), id("rev-b"));
    let network = awsvpc(&lb.network);
    let run = |started_by: String, count: i32| {
        let request = service
            .client
            .run_task()
            .cluster(&workload.cluster)
            .task_definition(&workload.task_definition)
            .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
            .network_configuration(network.clone())
            .started_by(started_by)
            .count(count);
        async move { request.send().await.expect("RunTask").tasks().to_vec() }
    };
    let ip = |task: &aws_sdk_ecs::types::Task| {
        let details = task.attachments().iter().flat_map(|a| a.details());
        details.filter(|d| d.name() == Some("privateIPv4Address")).find_map(|d| d.value().map(String::from)).expect("an IP")
    };
    let of_a = run(a.clone(), 3).await;
    let of_b = run(b.clone(), 1).await;
    let stranger = run("someone-else".into(), 1).await;
    let stopped = &of_a[2];
    service.client.stop_task().cluster(&workload.cluster).task(stopped.task_arn().unwrap()).send().await.expect("StopTask");

    let calls = platform.calls();
    let found = platform.task_addresses(workload, &[a.as_str(), b.as_str()]).await.expect("addresses");
    assert_eq!(platform.calls() - calls, 3, "one ListTasks per task set and one DescribeTasks for all");
    assert_eq!(
        found[&a],
        of_a[..2].iter().map(ip).collect::<std::collections::BTreeSet<_>>(),
        "the running tasks of rev-a, not the stopped one"
    );
    assert_eq!(found[&b], of_b.iter().map(ip).collect::<std::collections::BTreeSet<_>>());
    assert!(!found.values().flatten().any(|address| *address == ip(&stranger[0])), "a task no task set started is no one's");
}

register_test!(100, wrong_services_are_reported);
pub async fn wrong_services_are_reported(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 24).await;
    let platform = EcsPlatform::new(&fixtures::sdk(&stack.aws_endpoint, 1));
    let rolling = fixtures::ecs_service(&stack, &lb, 2, DeploymentControllerType::Ecs).await;
    let error = platform.observe(&rolling.workload).await.unwrap_err();
    println!("    ECS-controlled service: [{}] {error}", error.category());
    assert_eq!(error.category(), "invalid");

    let mut missing = rolling.workload.clone();
    missing.service = "no-such-service".into();
    let error = platform.scale(&missing, "rev-a", 1, Some(lb.stable.as_str())).await.unwrap_err();
    println!("    missing service: [{}] {error}", error.category());
    assert_eq!(error.category(), "not_found");

    let external = fixtures::ecs_service(&stack, &lb, 2, DeploymentControllerType::External).await;
    let error = platform.mark_stable(&external.workload, "rev-x").await.unwrap_err();
    assert_eq!(error.category(), "not_found", "{error}");
    let calls = platform.calls();
    let error = platform.scale(&external.workload, "", 1, None).await.unwrap_err();
    assert_eq!((error.category(), platform.calls() - calls), ("invalid", 0), "refused before any call");
}
