//! The CloudFormation templates under deploy/aws, deployed through CloudFormation on the local
//! stack's moto with the real AWS SDK; Rollouts built from their outputs and rolled out by the
//! real controller (the chart installed with helm, the controller under its ServiceAccount).

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

#[path = "../e2e/controller.rs"]
#[allow(dead_code)]
mod controller;

mod check;
mod iam;
mod stacks;
mod templates;

use controller::Harness;

fn main() -> std::process::ExitCode {
    support::harness::run(Harness::install, Harness::dump_log, Harness::tear_down)
}
