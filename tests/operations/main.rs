//! How Sluice is run: the chart's values and what it renders (against the real API server's
//! schemas), and leader election when the leader is cut off from the API server. Starts its own
//! stack unless one is attached through the environment (`eval "$(e2e/stack up)"`).

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod chart;
mod leadership;

use support::Stack;

fn main() -> std::process::ExitCode {
    support::harness::run(|| async { Stack::start_or_attach() }, |_| {}, Stack::down)
}
