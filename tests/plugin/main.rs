//! The real `kubectl-sluice` binary against a real API server: each command's effect is read back
//! from the API server; with the real controller running, the plugin drives a canary from start
//! to promotion, abort, retry and undo; and once in a real terminal (tmux) the live view is drawn.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod reading;
mod requests;
mod scenario;
mod spec_changes;
mod world;

use world::World;

fn main() -> std::process::ExitCode {
    support::harness::run(World::install, World::dump_logs, World::tear_down)
}
