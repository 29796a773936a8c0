//! Metric providers against the real local stack: Prometheus fed by remote write, moto's
//! CloudWatch through the real AWS SDK, Secrets in the real API server, and local HTTP servers
//! started (and stopped) by the tests. Starts its own stack unless one is attached through the
//! environment (`eval "$(e2e/stack up)"`), and stops what it started, also when a test fails.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod cloudwatch;
mod common;
mod datadog;
mod egress;
mod judge;
mod lambda;
mod newrelic;
mod prometheus;
mod web;

use support::Stack;

fn main() -> std::process::ExitCode {
    support::harness::run(|| async { Stack::start_or_attach() }, |_| {}, Stack::down)
}
