//! The AWS adapters (ALB router, ECS platform) against moto through the real AWS SDK, also
//! behind a fault-injecting proxy. Starts its own stack unless one is attached through the
//! environment (`eval "$(e2e/stack up)"`), and stops what it started, also when a test fails.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod alb;
mod ecs;
mod faults;
mod fixtures;
mod proxy;
mod timeouts;

use support::Stack;

fn main() -> std::process::ExitCode {
    support::harness::run(|| async { Stack::start_or_attach() }, |_| {}, Stack::down)
}
