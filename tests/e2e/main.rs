//! End to end on the real local control plane: the chart installed with helm, the controller
//! running as a process under the chart's ServiceAccount token (so the chart's RBAC is what is
//! tested), rollouts driven through the API server as a person or a pipeline would.

#[path = "../support/mod.rs"]
mod support;

mod controller;
mod scenarios;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use controller::Harness;
use support::Stack;

type TestFn = fn(Arc<Harness>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), (|h| Box::pin(scenarios::$name(h))) as TestFn)),*]
    };
}

fn main() -> std::process::ExitCode {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let all = tests![
        chart_renders_and_lints,
        canary_by_replicas_with_timed_and_manual_pauses,
        canary_aborted_returns_to_stable,
        blue_green_switches_and_scales_down_after_the_delay,
        rolling_update_within_surge_and_unavailable,
        new_image_mid_canary_restarts_the_steps,
        rollout_deleted_mid_canary,
        controller_killed_at_random_moments_converges,
        canary_with_alb_weights,
        ecs_canary_promoted_then_aborted,
        prometheus_analysis_with_good_numbers_promotes,
        prometheus_error_rate_turning_bad_rolls_back,
        blue_green_failing_pre_promotion_analysis_is_never_promoted,
        leader_killed_the_follower_takes_over,
    ];
    let selected: Vec<_> =
        all.into_iter().filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()))).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let stack = Stack::start_or_attach();
    let harness = match runtime.block_on(async { tokio::spawn(Harness::install(stack)).await }) {
        Ok(h) => Arc::new(h),
        Err(e) => {
            println!("e2e: installing the chart failed: {e}\ne2e: 0 passed, 1 failed");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in selected {
        let started = Instant::now();
        match runtime.block_on(async { tokio::spawn(test(harness.clone())).await }) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.1}s)", started.elapsed().as_secs_f64());
            }
            Err(error) => {
                failed += 1;
                println!("test {name} ... FAILED ({:.1}s): {error}", started.elapsed().as_secs_f64());
                harness.dump_log();
            }
        }
    }
    harness.stop_all();
    harness.stack.down();
    println!("\ne2e: {passed} passed, {failed} failed");
    if failed == 0 { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}
