//! The real `kubectl-sluice` binary against a real API server: each command's effect is read back
//! from the API server; with the real controller running, the plugin drives a canary from start
//! to promotion, abort, retry and undo; and once in a real terminal (tmux) the live view is drawn.

#[path = "../support/mod.rs"]
mod support;

mod reading;
mod requests;
mod scenario;
mod spec_changes;
mod world;

use std::sync::Arc;

use support::Stack;
use world::World;

fn main() -> std::process::ExitCode {
    let all = tests![
        reading::list_shows_each_rollout_and_all_namespaces,
        reading::get_shows_one_rollout_and_says_when_it_is_missing,
        reading::context_and_namespace_come_from_the_kubeconfig,
        reading::status_exit_codes_follow_the_phase,
        reading::status_times_out_on_a_rollout_that_does_not_finish,
        requests::promote_abort_retry_write_requests_for_the_update_revision,
        requests::requests_the_controller_would_ignore_are_refused,
        spec_changes::pause_resume_and_restart_write_the_spec,
        spec_changes::set_image_changes_the_named_containers_only,
        spec_changes::undo_explains_what_it_cannot_do,
        scenario::a_canary_driven_through_the_plugin,
        scenario::promote_needs_patch_on_rollouts_and_the_status_cannot_be_forged,
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let stack = Stack::start_or_attach();
    let world = match runtime.block_on(async { tokio::spawn(World::install(stack)).await }) {
        Ok(world) => Arc::new(world),
        Err(error) => {
            println!("plugin: applying the CRDs failed: {error}");
            return support::summary("plugin", 0, 1);
        }
    };
    let (passed, failed) = support::run_tests(&runtime, world.clone(), all, World::dump_logs);
    world.stop_controllers();
    world.stack.down();
    support::summary("plugin", passed, failed)
}
