//! The adapters behind a proxy that throttles or fails requests: with the SDK's standard retry
//! every operation lands exactly once with the planned value; a persistent failure surfaces as
//! an error of a bounded category and leaves a planned weight behind.

use std::sync::Arc;

use aws_sdk_ecs::types::DeploymentControllerType;
use sluice::platform::ecs::EcsPlatform;
use sluice::traffic::alb::AlbRouter;

use crate::fixtures;
use crate::proxy::{Fault, Plan, Proxy};
use crate::support::Stack;

const FLAKY_SEED: u64 = 0x5107_ce00;

/// 30 % of requests answered with throttling or 503, never more than 3 times for one operation.
fn flaky() -> Plan {
    Plan { percent: 30, fault: Fault::Mixed, only: Vec::new(), max_per_operation: 3 }
}

fn always(fault: Fault, only: &[&'static str]) -> Plan {
    Plan { percent: 100, fault, only: only.to_vec(), max_per_operation: u32::MAX }
}

register_test!(110, weight_steps_land_once_through_throttling_and_503);
pub async fn weight_steps_land_once_through_throttling_and_503(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 31).await;
    fixtures::register(&lb.client, &lb.stable, &["10.31.1.10", "10.31.1.11"]).await;
    fixtures::register(&lb.client, &lb.canary, &["10.31.1.20"]).await;
    let rule = lb
        .client
        .create_rule()
        .listener_arn(&lb.listener)
        .priority(5)
        .conditions(aws_sdk_elasticloadbalancingv2::types::RuleCondition::builder().field("host-header").values("shop.example.com").build())
        .actions(fixtures::forward(&[(&lb.stable, 100), (&lb.canary, 0)], Some(600), None))
        .send()
        .await
        .unwrap()
        .rules()[0]
        .rule_arn()
        .unwrap()
        .to_string();
    let alb = fixtures::alb_on_rule(&lb, &rule);
    let proxy = Proxy::start(&stack.aws_endpoint, FLAKY_SEED).await;
    // Standard retry, 5 attempts: more than the proxy's 3 faults per operation.
    let router = AlbRouter::new(&fixtures::sdk(&proxy.url, 5));
    proxy.set_plan(flaky());

    let state = router.read(&alb, &lb.stable, &lb.canary).await.expect("read through faults");
    assert_eq!((state.canary_weight, state.stable_healthy.len(), state.canary_healthy.len()), (Some(0), 2, 1));
    let plan = [5, 10, 25, 50, 75, 100, 0];
    let mut faults_seen = 0;
    for weight in plan {
        proxy.clear();
        let calls = router.calls();
        let got = router.set_weight(&alb, &lb.stable, &lb.canary, weight).await.expect("the weight lands despite faults");
        assert_eq!(got, weight);
        let (requests, faulted) = proxy.totals();
        faults_seen += faulted;
        println!(
            "    flaky alb: weight {weight:>3}: {} ELBv2 calls, {requests} HTTP attempts ({faulted} answered with a fault); reached moto: {:?}",
            router.calls() - calls,
            proxy.forwarded_counts()
        );
        assert_eq!(router.calls() - calls, 2);
        assert_eq!(proxy.forwarded("ModifyRule"), 1, "the write reached moto exactly once");
        assert_eq!(proxy.forwarded("DescribeRules"), 1, "the read back reached moto exactly once");
        let forward = fixtures::forward_of(fixtures::describe_rule(&lb.client, &rule).await.actions()).clone();
        assert_eq!(fixtures::weights(&forward), vec![(lb.stable.clone(), 100 - weight), (lb.canary.clone(), weight)]);
        assert_eq!(forward.forward_config().unwrap().target_group_stickiness_config().unwrap().duration_seconds(), Some(600));
    }
    assert!(faults_seen > 0, "the proxy did inject faults");
}

register_test!(120, ecs_operations_land_once_through_throttling_and_503);
pub async fn ecs_operations_land_once_through_throttling_and_503(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 32).await;
    let service = fixtures::ecs_service(&stack, &lb, 4, DeploymentControllerType::External).await;
    let proxy = Proxy::start(&stack.aws_endpoint, FLAKY_SEED + 1).await;
    let platform = EcsPlatform::new(&fixtures::sdk(&proxy.url, 5));
    proxy.set_plan(flaky());
    let workload = &service.workload;

    platform.scale(workload, "rev-a", 4, Some(lb.stable.as_str())).await.expect("created through faults");
    platform.mark_stable(workload, "rev-a").await.expect("primary through faults");
    platform.scale(workload, "rev-b", 1, Some(lb.canary.as_str())).await.unwrap();
    platform.scale(workload, "rev-b", 2, Some(lb.canary.as_str())).await.unwrap();
    platform.scale(workload, "rev-b", 0, None).await.unwrap();
    let (requests, faulted) = proxy.totals();
    println!(
        "    flaky ecs: {} ECS calls, {requests} HTTP attempts ({faulted} faults); reached moto: {:?}",
        platform.calls(),
        proxy.forwarded_counts()
    );
    assert!(faulted > 0);
    assert_eq!(proxy.forwarded("CreateTaskSet"), 2, "one create per revision, never duplicated");
    assert_eq!(proxy.forwarded("UpdateTaskSet"), 1);
    assert_eq!(proxy.forwarded("DeleteTaskSet"), 1);
    assert_eq!(proxy.forwarded("UpdateServicePrimaryTaskSet"), 1);
    let sets = fixtures::task_sets(&service).await;
    assert_eq!(sets.len(), 1);
    assert_eq!((sets[0].0.as_str(), sets[0].1.as_str(), sets[0].3), ("rev-a", "PRIMARY", 100.0));
}

// Last: it spends the SDK's retry quota, which is shared by every client in the process.
register_test!(140, persistent_failures_surface_with_their_category);
pub async fn persistent_failures_surface_with_their_category(stack: Arc<Stack>) {
    let lb = fixtures::balancer(&stack, 33).await;
    let listener =
        fixtures::listener(&lb.client, &lb.lb, 8081, vec![fixtures::forward(&[(&lb.stable, 80), (&lb.canary, 20)], None, None)]).await;
    let alb = fixtures::alb_on_listener(&lb, &listener);
    let proxy = Proxy::start(&stack.aws_endpoint, FLAKY_SEED + 2).await;
    let router = AlbRouter::new(&fixtures::sdk(&proxy.url, 3));
    let weight_in_moto = || async { fixtures::weights(fixtures::forward_of(&fixtures::default_actions(&lb.client, &listener).await))[1].1 };

    assert_eq!(router.read(&alb, &lb.stable, &lb.canary).await.unwrap().canary_weight, Some(20));

    proxy.clear();
    proxy.set_plan(always(Fault::Throttle, &[]));
    let error = router.set_weight(&alb, &lb.stable, &lb.canary, 50).await.unwrap_err();
    println!("    always throttled: [{}] {error}", error.category());
    assert_eq!(error.category(), "throttled");
    assert_eq!(proxy.totals(), (3, 3), "the SDK tried 3 times, as configured");
    assert_eq!(weight_in_moto().await, 20, "the write never landed: the last planned weight stays");

    proxy.clear();
    proxy.set_plan(always(Fault::Unavailable, &[]));
    let error = router.set_weight(&alb, &lb.stable, &lb.canary, 50).await.unwrap_err();
    println!("    always 503: [{}] {error}", error.category());
    assert_eq!(error.category(), "aws_5xx");
    assert_eq!(weight_in_moto().await, 20);
    let error = router.read(&alb, &lb.stable, &lb.canary).await.unwrap_err();
    assert_eq!(error.category(), "aws_5xx");

    // The write lands, the read back fails: the error says so, and the weight left behind is
    // the new planned one.
    proxy.clear();
    proxy.set_plan(Plan::none());
    assert_eq!(router.read(&alb, &lb.stable, &lb.canary).await.unwrap().canary_weight, Some(20));
    proxy.set_plan(always(Fault::Throttle, &["DescribeListeners"]));
    let error = router.set_weight(&alb, &lb.stable, &lb.canary, 50).await.unwrap_err();
    println!("    read back throttled: [{}] {error}", error.category());
    assert_eq!(error.category(), "throttled");
    assert_eq!(proxy.forwarded("ModifyListener"), 1);
    assert_eq!(weight_in_moto().await, 50);
    proxy.set_plan(Plan::none());
    assert_eq!(router.read(&alb, &lb.stable, &lb.canary).await.unwrap().canary_weight, Some(50), "the next pass reads it back");

    // ECS the same way.
    let service = fixtures::ecs_service(&stack, &lb, 2, DeploymentControllerType::External).await;
    let platform = EcsPlatform::new(&fixtures::sdk(&proxy.url, 3));
    proxy.set_plan(always(Fault::Throttle, &[]));
    let error = platform.scale(&service.workload, "rev-a", 2, Some(lb.stable.as_str())).await.unwrap_err();
    println!("    ecs always throttled: [{}] {error}", error.category());
    assert_eq!(error.category(), "throttled");
    proxy.set_plan(always(Fault::Unavailable, &["CreateTaskSet"]));
    let error = platform.scale(&service.workload, "rev-a", 2, Some(lb.stable.as_str())).await.unwrap_err();
    println!("    ecs create 503: [{}] {error}", error.category());
    assert_eq!(error.category(), "aws_5xx");
    proxy.set_plan(Plan::none());
    assert!(fixtures::task_sets(&service).await.is_empty(), "nothing was created");
}
