//! How Sluice is run: the chart's values and what it renders (against the real API server's
//! schemas), and leader election when the leader is cut off from the API server. Starts its own
//! stack unless one is attached through the environment (`eval "$(e2e/stack up)"`).

#[path = "../support/mod.rs"]
mod support;

mod chart;
mod leadership;

use std::sync::Arc;

use support::Stack;

fn main() -> std::process::ExitCode {
    let all = tests![
        chart::defaults_lint_and_log_json,
        chart::several_replicas_without_leader_election_are_refused,
        chart::network_policy_allows_only_what_the_controller_needs,
        chart::notes_say_how_to_check_start_and_uninstall,
        leadership::leader_cut_off_from_the_api_server_stops_before_its_lease_expires,
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let stack = Arc::new(Stack::start_or_attach());
    let (passed, failed) = support::run_tests(&runtime, stack.clone(), all, |_| {});
    stack.down();
    support::summary("operations", passed, failed)
}
