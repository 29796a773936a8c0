//! The AWS adapters (ALB router, ECS platform) against moto through the real AWS SDK, also
//! behind a fault-injecting proxy. Starts its own stack unless one is attached through the
//! environment (`eval "$(e2e/stack up)"`), and stops what it started, also when a test fails.

#[path = "../support/mod.rs"]
mod support;

mod alb;
mod ecs;
mod faults;
mod fixtures;
mod proxy;
mod timeouts;

use std::sync::Arc;

use support::Stack;

fn main() -> std::process::ExitCode {
    let all = tests![
        alb::rule_weight_steps_rewrite_only_the_forward_action,
        alb::listener_default_actions_keep_their_other_parts,
        alb::wrong_arguments_are_refused_without_a_call,
        alb::a_forward_action_that_is_not_ours_is_reported_not_rewritten,
        alb::test_listener_sends_preview_traffic_to_one_target_group,
        alb::header_route_rule_is_created_kept_and_removed,
        ecs::task_sets_are_created_scaled_promoted_and_deleted,
        ecs::scale_percent_rounds_to_whole_tasks_and_follows_the_spec_desired_count,
        ecs::duplicate_task_sets_of_a_revision_are_cleaned_up,
        ecs::wrong_services_are_reported,
        faults::weight_steps_land_once_through_throttling_and_503,
        faults::ecs_operations_land_once_through_throttling_and_503,
        timeouts::a_silent_endpoint_fails_alb_and_ecs_calls_within_the_timeouts,
        // Last: it spends the SDK's retry quota, which is shared by every client in the process.
        faults::persistent_failures_surface_with_their_category,
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let stack = Arc::new(Stack::start_or_attach());
    let (passed, failed) = support::run_tests(&runtime, stack.clone(), all, |_| {});
    stack.down();
    support::summary("aws_adapters", passed, failed)
}
