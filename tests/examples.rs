//! Every example simulates to the outcome its comments promise.

use std::collections::BTreeMap;
use std::process::Command;

use sluice::api::RolloutPhase;
use sluice::cli::load_manifests;
use sluice::simulate::{self, Scenario, Timeline};

fn simulate(example: &str, scenario: Option<&str>) -> Timeline {
    let dir = env!("CARGO_MANIFEST_DIR");
    let manifests = load_manifests(&std::fs::read_to_string(format!("{dir}/examples/{example}.yaml")).unwrap()).unwrap();
    let scenario: Scenario = scenario
        .map(|s| serde_saphyr::from_str(&std::fs::read_to_string(format!("{dir}/examples/scenarios/{s}.yaml")).unwrap()).unwrap())
        .unwrap_or_default();
    simulate::run(&manifests.rollouts[0], manifests.templates, &scenario).unwrap()
}

fn replicas(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn the_first_rollout_waits_for_its_promote_then_is_stable() {
    let t = simulate("first-rollout", Some("canary-alb-promoted"));
    assert_eq!(t.final_phase, Some(RolloutPhase::Healthy), "{}", t.render());
    assert_eq!(t.final_replicas, replicas(&[("nginx:1.27", 4)]));
    let promoted_at = t.entries.iter().find_map(|e| match e {
        simulate::timeline::Entry::Action { at, text } if text.starts_with("mark") => Some(*at),
        _ => None,
    });
    assert!(promoted_at.unwrap().as_secs() >= 600, "not promoted before the person's promote at 10m");
}

#[test]
fn canary_with_good_numbers_is_promoted() {
    let t = simulate("canary", Some("canary-healthy"));
    assert_eq!(t.final_phase, Some(RolloutPhase::Healthy), "{}", t.render());
    assert_eq!(t.final_replicas, replicas(&[("example.com/shop/checkout:2.0.0", 10)]));
}

#[test]
fn canary_whose_error_rate_turns_bad_rolls_back_by_itself() {
    let t = simulate("canary", Some("canary-rollback"));
    assert_eq!(t.final_phase, Some(RolloutPhase::Degraded), "{}", t.render());
    assert!(t.final_message.contains("metric error-rate") && t.final_message.contains("last value 0.07"), "{}", t.final_message);
    assert!(t.final_message.contains("kubectl sluice retry checkout"), "the message says what a person can do");
    assert_eq!(t.final_replicas, replicas(&[("example.com/shop/checkout:2.0.0-previous", 10)]));
}

#[test]
fn alb_canary_walks_its_weights_and_waits_for_the_person() {
    let t = simulate("canary-alb", Some("canary-alb-promoted"));
    assert_eq!(t.final_phase, Some(RolloutPhase::Healthy), "{}", t.render());
    assert_eq!(t.weights, [5, 25, 50, 100, 0], "{}", t.render());
    let promoted_at = t.entries.iter().find_map(|e| match e {
        simulate::timeline::Entry::Action { at, text } if text.starts_with("mark") => Some(*at),
        _ => None,
    });
    assert!(promoted_at.unwrap().as_secs() >= 600, "not promoted before the person's promote at 10m");
}

#[test]
fn blue_green_is_analysed_then_switched() {
    let t = simulate("blue-green", Some("blue-green-smoke"));
    assert_eq!(t.final_phase, Some(RolloutPhase::Healthy), "{}", t.render());
    assert_eq!(t.final_replicas, replicas(&[("example.com/shop/payments:5.1.0", 4)]));
}

#[test]
fn rolling_update_completes() {
    let t = simulate("rolling", Some("rolling-latency"));
    assert_eq!(t.final_phase, Some(RolloutPhase::Healthy), "{}", t.render());
    assert_eq!(t.final_replicas, replicas(&[("example.com/shop/search:3.4.0", 8)]));
}

#[test]
fn codedeploy_equivalents_for_ecs() {
    let canary = simulate("ecs-canary-10-percent-5-minutes", Some("ecs-alarm-rollback"));
    assert_eq!(canary.final_phase, Some(RolloutPhase::Degraded), "{}", canary.render());
    assert_eq!(canary.weights, [10, 0], "the alarm sends traffic home");
    assert!(canary.final_message.contains("orders-5xx-alarm"));

    let linear = simulate("ecs-linear-10-percent-every-1-minute", None);
    assert_eq!(linear.final_phase, Some(RolloutPhase::Healthy));
    // The promoted task set keeps its target group and its traffic: the roles swap, so the canary
    // role's group (the old one) is already at 0 and no weight moves back.
    assert_eq!(linear.weights, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    assert!(linear.ended_at.as_secs() >= 9 * 60, "one minute per 10%");

    let all_at_once = simulate("ecs-all-at-once", None);
    assert_eq!(all_at_once.final_phase, Some(RolloutPhase::Healthy));
    assert_eq!(all_at_once.weights, [100]);

    let blue_green = simulate("ecs-blue-green", None);
    assert_eq!(blue_green.final_phase, Some(RolloutPhase::Paused), "waits for `kubectl sluice promote`");
    assert!(blue_green.weights.iter().all(|w| *w == 0), "no production traffic before promotion");
}

#[test]
fn the_cli_prints_the_timeline() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "simulate",
            "-f",
            &format!("{dir}/examples/canary.yaml"),
            "--scenario",
            &format!("{dir}/examples/scenarios/canary-rollback.yaml"),
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("** Aborted:") && text.contains("in phase Degraded"), "{text}");

    let missing = Command::new(env!("CARGO_BIN_EXE_sluice")).args(["simulate", "-f", "/nonexistent.yaml"]).output().unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent.yaml"));
}
