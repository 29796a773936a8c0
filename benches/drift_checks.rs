//! What drift checks cost at fleet size: 1,000 resting rollouts whose weights live in listener
//! rules, 100 rules on each of 10 listeners, in moto. A proxy counts every call the router's
//! sweep makes; a sweep at rest is all the controller calls per check interval (a Rollout gets
//! a pass only when its rule changed). Prints calls per sweep, calls per minute at the shortest
//! and a common interval, the sweep's time, and what a sweep costs when some rules drifted.
//! Asserts nothing.
//!
//! `cargo bench --bench drift_checks` (the local stack must be installed: `e2e/stack install`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2 as elbv2;
use elbv2::types::{Action, ActionTypeEnum, ForwardActionConfig, RuleCondition, TargetGroupTuple};
use sluice::traffic::alb::AlbRouter;
use support::Stack;
use support::aws_proxy::AwsProxy;

const LISTENERS: usize = 10;
const RULES_PER_LISTENER: usize = 100;
const QUIET_SWEEPS: usize = 6;
const DRIFTED: usize = 5;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let stack = Stack::start_or_attach();
    runtime.block_on(measure(&stack));
    stack.down();
}

fn forward(stable: &str, canary: &str, canary_weight: i32) -> Action {
    let tuples = [(stable, 100 - canary_weight), (canary, canary_weight)]
        .map(|(arn, weight)| TargetGroupTuple::builder().target_group_arn(arn).weight(weight).build());
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(ForwardActionConfig::builder().set_target_groups(Some(tuples.to_vec())).build())
        .build()
}

/// A load balancer with one listener and `RULES_PER_LISTENER` rules, each the weight location
/// of a rollout at rest (stable 100, canary 0) between the listener's two target groups.
/// Returns the rules' ARNs.
async fn listener_with_rules(stack: &Stack, index: usize) -> (elbv2::Client, Vec<String>) {
    let (elb, listener, stable, canary) = stack.balancer(&format!("drift-{index}-{}", std::process::id())).await;
    let mut rules = Vec::new();
    for priority in 1..=RULES_PER_LISTENER {
        let rule = elb
            .create_rule()
            .listener_arn(&listener)
            .priority(priority as i32)
            .conditions(RuleCondition::builder().field("host-header").values(format!("app-{priority}.example.com")).build())
            .actions(forward(&stable, &canary, 0))
            .send()
            .await
            .expect("rule");
        rules.push(rule.rules()[0].rule_arn().unwrap().to_string());
    }
    (elb, rules)
}

async fn measure(stack: &Stack) {
    let setup = Instant::now();
    let mut locations = BTreeSet::new();
    let mut elb = None;
    for index in 0..LISTENERS {
        let (client, rules) = listener_with_rules(stack, index).await;
        locations.extend(rules);
        elb = Some(client);
    }
    let elb = elb.expect("a client");
    println!(
        "set up: {} rollouts' rules on {LISTENERS} listeners ({RULES_PER_LISTENER} each) in {:.1} s",
        locations.len(),
        setup.elapsed().as_secs_f64()
    );

    let proxy = AwsProxy::start(&stack.aws_endpoint, 0.0, 1).await;
    let config = stack.aws().to_builder().endpoint_url(&proxy.endpoint).build();
    let router = AlbRouter::new(&config);

    let started = Instant::now();
    let first = router.sweep(&locations).await;
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    println!(
        "first sweep (nothing known; every rollout gets a pass): {} calls, {} ms, {} locations new",
        proxy.calls().len(),
        started.elapsed().as_millis(),
        first.changed.len()
    );

    let mut times = Vec::new();
    let before = proxy.calls().len();
    for _ in 0..QUIET_SWEEPS {
        let started = Instant::now();
        let sweep = router.sweep(&locations).await;
        times.push(started.elapsed());
        assert!(sweep.changed.is_empty() && sweep.failed.is_empty(), "a quiet sweep found {:?}", sweep.changed);
    }
    let per_sweep = (proxy.calls().len() - before) as f64 / QUIET_SWEEPS as f64;
    times.sort();
    let median = times[times.len() / 2];
    println!("a sweep at rest: {per_sweep:.1} calls (DescribeRules, one per listener), median {} ms", median.as_millis());
    for interval in [Duration::from_secs(10), Duration::from_secs(60)] {
        let per_minute = per_sweep * 60.0 / interval.as_secs_f64();
        println!(
            "  at --drift-check-interval {}s: {per_minute:.0} ELBv2 calls per minute for {} rollouts",
            interval.as_secs(),
            locations.len()
        );
    }

    // Some rules changed by hand: the sweep names exactly those, at the same cost.
    let drifted: Vec<&String> = locations.iter().step_by(locations.len() / DRIFTED).take(DRIFTED).collect();
    for rule in &drifted {
        let described = elb.describe_rules().rule_arns(rule.as_str()).send().await.expect("rule");
        let targets = described.rules()[0].actions()[0].forward_config().unwrap().target_groups().to_vec();
        let (stable, canary) = (targets[0].target_group_arn().unwrap(), targets[1].target_group_arn().unwrap());
        elb.modify_rule().rule_arn(rule.as_str()).actions(forward(stable, canary, 50)).send().await.expect("changed by hand");
    }
    let before = proxy.calls().len();
    let started = Instant::now();
    let sweep = router.sweep(&locations).await;
    println!(
        "a sweep after {DRIFTED} rules changed by hand: {} calls, {} ms, {} rollouts named for a pass",
        proxy.calls().len() - before,
        started.elapsed().as_millis(),
        sweep.changed.len()
    );
    assert_eq!(sweep.changed.len(), DRIFTED, "exactly the changed rules");
}
