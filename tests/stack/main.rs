//! Tests against the real local stack: a kube-apiserver with kwok nodes, moto through the real
//! AWS SDK, and Prometheus. Starts its own stack unless one is attached through the environment
//! (`eval "$(e2e/stack up)"`), and stops what it started, also when a test fails.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod aws;
mod kubernetes;
mod prometheus;

use support::Stack;

fn main() -> std::process::ExitCode {
    support::harness::run(|| async { Stack::start_or_attach() }, |_| {}, Stack::down)
}
