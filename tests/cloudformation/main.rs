//! The CloudFormation templates under deploy/aws, deployed through CloudFormation on the local
//! stack's moto with the real AWS SDK; Rollouts built from their outputs and rolled out by the
//! real controller (the chart installed with helm, the controller under its ServiceAccount).

#[path = "../support/mod.rs"]
mod support;

#[path = "../e2e/controller.rs"]
#[allow(dead_code)]
mod controller;

mod check;
mod iam;
mod stacks;
mod templates;

use std::sync::Arc;

use controller::Harness;
use support::Stack;

fn main() -> std::process::ExitCode {
    let all = tests![
        templates::kubernetes_canary_stack_is_rolled_out_on_its_rule,
        templates::ecs_stack_is_rolled_out_as_task_sets,
        templates::ecs_stack_with_green_live_serves_from_green,
        iam::controller_role_grants_exactly_docs_iam,
        iam::pod_identity_role_trusts_eks_pods,
        check::aws_check_passes_the_stacks_and_names_each_broken_part,
        // Last: moto checks IAM while it runs.
        check::aws_check_names_a_missing_permission,
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let stack = Stack::start_or_attach();
    let harness = match runtime.block_on(async { tokio::spawn(Harness::install(stack)).await }) {
        Ok(h) => Arc::new(h),
        Err(e) => {
            println!("cloudformation: installing the chart failed: {e}");
            return support::summary("cloudformation", 0, 1);
        }
    };
    let (passed, failed) = support::run_tests(&runtime, harness.clone(), all, Harness::dump_log);
    harness.stop_all();
    harness.stack.down();
    support::summary("cloudformation", passed, failed)
}
