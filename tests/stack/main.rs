//! Tests against the real local stack: a kube-apiserver with kwok nodes, moto through the real
//! AWS SDK, and Prometheus. Starts its own stack unless one is attached through the environment
//! (`eval "$(e2e/stack up)"`), and stops what it started, also when a test fails.

#[path = "../support/mod.rs"]
mod support;

mod aws;
mod kubernetes;
mod prometheus;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use support::Stack;

type TestFn = fn(Arc<Stack>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! tests {
    ($($module:ident :: $name:ident),* $(,)?) => {
        vec![$((concat!(stringify!($module), "::", stringify!($name)), (|stack| Box::pin($module::$name(stack))) as TestFn)),*]
    };
}

fn main() -> std::process::ExitCode {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let all = tests![
        kubernetes::replica_set_gets_ready_pods,
        kubernetes::crds_apply_client_side_and_refuse_bad_rollouts,
        aws::alb_rule_weights_round_trip,
        aws::alb_listener_default_action_weights_round_trip,
        aws::ecs_external_service_gets_a_task_set,
        prometheus::pushed_sample_is_queryable,
    ];
    let selected: Vec<_> =
        all.into_iter().filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()))).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let stack = Arc::new(Stack::start_or_attach());
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in selected {
        let started = Instant::now();
        let outcome = runtime.block_on(async { tokio::spawn(test(stack.clone())).await });
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.1}s)", started.elapsed().as_secs_f64());
            }
            Err(error) => {
                failed += 1;
                println!("test {name} ... FAILED ({:.1}s): {error}", started.elapsed().as_secs_f64());
            }
        }
    }
    stack.down();
    println!("\nstack: {passed} passed, {failed} failed");
    if failed == 0 { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}
