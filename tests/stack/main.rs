//! Tests against the real local stack: a kube-apiserver with kwok nodes, moto through the real
//! AWS SDK, and Prometheus. Starts its own stack unless one is attached through the environment
//! (`eval "$(e2e/stack up)"`), and stops what it started, also when a test fails.

#[path = "../support/mod.rs"]
mod support;

mod aws;
mod kubernetes;
mod prometheus;

use std::sync::Arc;

use support::Stack;

fn main() -> std::process::ExitCode {
    let all = tests![
        kubernetes::replica_set_gets_ready_pods,
        kubernetes::crds_apply_client_side_and_refuse_bad_rollouts,
        aws::alb_rule_weights_round_trip,
        aws::alb_listener_default_action_weights_round_trip,
        aws::ecs_external_service_gets_a_task_set,
        prometheus::pushed_sample_is_queryable,
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let stack = Arc::new(Stack::start_or_attach());
    let (passed, failed) = support::run_tests(&runtime, stack.clone(), all, |_| {});
    stack.down();
    support::summary("stack", passed, failed)
}
