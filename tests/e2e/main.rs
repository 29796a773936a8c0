//! End to end on the real local control plane: the chart installed with helm, the controller
//! running as a process under the chart's ServiceAccount token (so the chart's RBAC is what is
//! tested), rollouts driven through the API server as a person or a pipeline would.

#[path = "../support/mod.rs"]
mod support;

mod controller;
mod hostile;
mod hostile_analysis;
mod scenarios;

use std::sync::Arc;

use controller::Harness;
use support::Stack;

fn main() -> std::process::ExitCode {
    let all = tests![
        scenarios::chart_renders_and_lints,
        scenarios::canary_by_replicas_with_timed_and_manual_pauses,
        scenarios::canary_aborted_returns_to_stable,
        scenarios::blue_green_switches_and_scales_down_after_the_delay,
        scenarios::rolling_update_within_surge_and_unavailable,
        scenarios::new_image_mid_canary_restarts_the_steps,
        scenarios::rollout_deleted_mid_canary,
        scenarios::controller_killed_at_random_moments_converges,
        scenarios::canary_with_alb_weights,
        scenarios::the_scale_subresource_holds_an_autoscaler_steady_across_an_alb_canary,
        scenarios::ecs_canary_promoted_then_aborted,
        scenarios::ecs_blue_green_previews_on_the_test_listener,
        scenarios::ecs_canary_under_30_percent_aws_faults,
        scenarios::prometheus_analysis_with_good_numbers_promotes,
        scenarios::prometheus_error_rate_turning_bad_rolls_back,
        scenarios::blue_green_failing_pre_promotion_analysis_is_never_promoted,
        scenarios::blue_green_promote_runs_post_promotion_analysis_promote_full_skips_it,
        scenarios::leader_killed_the_follower_takes_over,
        scenarios::missing_service_holds_the_rollout_until_it_exists,
        scenarios::unreadable_rollout_is_degraded_and_blocks_no_other,
        scenarios::imported_manifests_are_accepted_by_the_api_server,
        scenarios::webhooks_and_delivery_metrics,
        hostile::hostile_specs_are_refused_with_the_limit,
        hostile::hostile_specs_that_slip_through_harm_no_one,
        hostile::analysis_that_cannot_be_built_aborts_with_the_reason,
        hostile::restarts_of_a_healthy_fleet_are_silent,
        hostile::notifications_survive_a_controller_kill,
        hostile_analysis::a_condition_that_never_ends_aborts_only_its_rollout,
        hostile_analysis::an_endless_answer_aborts_only_its_rollout,
        hostile_analysis::metadata_and_loopback_addresses_are_refused_and_abort_only_their_rollout,
        hostile_analysis::a_secret_header_is_read_only_once_offered,
        hostile_analysis::unreadable_analysis_run_is_reported_and_blocks_no_analysis,
        scenarios::namespace_b_cannot_use_namespace_a_listener,
        scenarios::rollout_naming_another_apps_service_leaves_it_alone,
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let stack = Stack::start_or_attach();
    let harness = match runtime.block_on(async { tokio::spawn(Harness::install(stack)).await }) {
        Ok(h) => Arc::new(h),
        Err(e) => {
            println!("e2e: installing the chart failed: {e}");
            return support::summary("e2e", 0, 1);
        }
    };
    let (passed, failed) = support::run_tests(&runtime, harness.clone(), all, Harness::dump_log);
    harness.stop_all();
    harness.stack.down();
    support::summary("e2e", passed, failed)
}
