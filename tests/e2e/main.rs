//! End to end on the real local control plane: the chart installed with helm, the controller
//! running as a process under the chart's ServiceAccount token (so the chart's RBAC is what is
//! tested), rollouts driven through the API server as a person or a pipeline would.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod adoption;
mod analysis_args;
mod controller;
mod drift;
mod examples;
mod hooks;
mod hostile;
mod hostile_analysis;
mod ingress;
mod job_analysis;
mod lambda_analysis;
mod notify_aws;
mod registration;
mod scenarios;

use controller::Harness;

fn main() -> std::process::ExitCode {
    support::harness::run(Harness::install, Harness::dump_log, Harness::tear_down)
}
