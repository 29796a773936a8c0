//! No request lands on a target group that cannot serve it: a sampler reads the listener's
//! weights and both target groups' health every 20 ms through a Kubernetes canary, a
//! Kubernetes blue/green and an ECS canary, while targets join their groups only
//! [`REGISTRATION_LAG`] after they are ready (the registrar and the ECS agent of
//! `support::registrar`). At no sampled instant may a group hold weight with fewer healthy
//! targets than its share of the replicas: ⌈weight × replicas / 100⌉.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2 as elbv2;
use elbv2::types::TargetHealthStateEnum;
use kube::api::Api;
use serde_json::json;
use sluice::api::{Rollout, RolloutPhase};

use crate::controller::Harness;
use crate::scenarios::{EcsWorld, rollout};
use crate::support::registrar::REGISTRATION_LAG;
use crate::support::scene::Scene;
use crate::support::{alb::listener_weights, wait_for};

const EVERY: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Samples {
    taken: usize,
    /// The longest gap between two samples.
    widest_gap: Duration,
    violations: Vec<String>,
    /// Whether the Rollout was seen waiting for registration: the gate, not luck, held.
    waited_for_registration: bool,
}

/// Samples weights, health and the Rollout's message until stopped.
struct Sampler {
    samples: Arc<Mutex<Samples>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(elb: elbv2::Client, listener: String, groups: [String; 2], replicas: i32, rollouts: Api<Rollout>) -> Self {
        let samples = Arc::new(Mutex::new(Samples::default()));
        let sink = samples.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = Instant::now();
            loop {
                ticks.tick().await;
                let (weights, first, second, rollout) = tokio::join!(
                    listener_weights(&elb, &listener, &groups[0], &groups[1]),
                    healthy(&elb, &groups[0]),
                    healthy(&elb, &groups[1]),
                    rollouts.get("web"),
                );
                let mut samples = sink.lock().unwrap();
                samples.taken += 1;
                samples.widest_gap = samples.widest_gap.max(last.elapsed());
                last = Instant::now();
                for (group, weight, healthy) in [(&groups[0], weights.0, first), (&groups[1], weights.1, second)] {
                    let needed = (weight * replicas + 99) / 100;
                    if weight > 0 && healthy < needed {
                        samples.violations.push(format!("{group} at weight {weight} with {healthy} healthy targets, {needed} needed"));
                    }
                }
                let message = rollout.ok().and_then(|r| r.status).and_then(|s| s.message).unwrap_or_default();
                samples.waited_for_registration |= message.contains("waiting for registration");
            }
        });
        Sampler { samples, task }
    }

    /// Stops sampling and checks what was seen.
    fn finish(self, scenario: &str) {
        self.task.abort();
        let samples = self.samples.lock().unwrap();
        println!(
            "  {scenario}: {} samples, widest gap {} ms, {} violations",
            samples.taken,
            samples.widest_gap.as_millis(),
            samples.violations.len()
        );
        assert!(samples.taken > 100, "{scenario}: too few samples ({}) to say anything", samples.taken);
        assert!(samples.violations.is_empty(), "{scenario}: {:?}", &samples.violations[..samples.violations.len().min(10)]);
        assert!(samples.waited_for_registration, "{scenario}: the rollout never waited for registration: the lag went unexercised");
    }
}

async fn healthy(elb: &elbv2::Client, group: &str) -> i32 {
    let described = elb.describe_target_health().target_group_arn(group).send().await.expect("DescribeTargetHealth");
    let healthy = described
        .target_health_descriptions()
        .iter()
        .filter(|d| d.target_health().and_then(|h| h.state()) == Some(&TargetHealthStateEnum::Healthy));
    healthy.count() as i32
}

fn stable_revision(rollout: &Rollout) -> String {
    rollout.status.as_ref().and_then(|s| s.stable_revision.clone()).expect("a stable revision")
}

/// Waits until a revision other than `first` is stable and the rollout at rest.
async fn promoted(s: &Scene, first: &str) {
    let deadline = Duration::from_secs(180);
    wait_for("the new revision promoted and at rest", deadline, || async {
        let rollout = s.rollouts.get("web").await.ok()?;
        let status = rollout.status.as_ref()?;
        let at_rest = status.phase == Some(RolloutPhase::Healthy) && status.observed_generation == rollout.metadata.generation;
        (at_rest && status.stable_revision.as_deref().is_some_and(|r| r != first)).then_some(())
    })
    .await;
}

/// Waits until `group` holds `count` healthy targets: the first version registered.
async fn registered(elb: &elbv2::Client, group: &str, count: i32) {
    wait_for(&format!("{count} healthy targets in {group}"), Duration::from_secs(60), || async {
        (healthy(elb, group).await >= count).then_some(())
    })
    .await;
}

/// A Kubernetes rollout of `replicas` pods behind a new listener, sampled from web:1 at rest
/// through web:2 promoted with all traffic back on the stable group.
async fn sample_kubernetes(h: &Harness, scenario: &str, prefix: &str, replicas: i32, strategy: serde_json::Value) {
    let s = Scene::new(&h.stack, prefix, &["web-stable", "web-canary"]).await;
    let (elb, listener, stable, canary) = h.stack.balancer(&format!("{prefix}-{}", std::process::id())).await;
    s.allow_aws(&[&listener, &stable, &canary]).await;
    let _targets = s.bind_target_groups(&elb, &stable, &canary, REGISTRATION_LAG);
    let mut r = rollout(replicas, "web:1", strategy);
    crate::scenarios::behind_alb(&mut r, &listener, &stable, &canary);
    s.create(&r).await;
    let first = stable_revision(&s.wait_phase(RolloutPhase::Healthy).await);
    registered(&elb, &stable, replicas).await;

    let sampler = Sampler::start(elb.clone(), listener.clone(), [stable.clone(), canary.clone()], replicas, s.rollouts.clone());
    s.set_image("web:2").await;
    promoted(&s, &first).await;
    wait_for("all traffic on the stable group", Duration::from_secs(60), || async {
        (listener_weights(&elb, &listener, &stable, &canary).await == (100, 0)).then_some(())
    })
    .await;
    sampler.finish(scenario);
}

register_test!(490, a_kubernetes_canary_never_weights_a_group_before_its_pods_are_registered);
pub async fn a_kubernetes_canary_never_weights_a_group_before_its_pods_are_registered(h: Arc<Harness>) {
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary", "scaleDownDelaySeconds": 0,
        "steps": [{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {"duration": "1s"}}]}});
    sample_kubernetes(&h, "Kubernetes canary", "lag-canary", 4, strategy).await;
}

register_test!(492, a_kubernetes_blue_green_switches_only_onto_registered_pods);
pub async fn a_kubernetes_blue_green_switches_only_onto_registered_pods(h: Arc<Harness>) {
    let strategy = json!({"blueGreen": {"activeService": "web-stable", "previewService": "web-canary",
        "autoPromotionEnabled": true, "scaleDownDelaySeconds": 0}});
    sample_kubernetes(&h, "Kubernetes blue/green", "lag-bg", 3, strategy).await;
}

register_test!(494, an_ecs_canary_never_weights_a_group_before_its_tasks_are_registered);
pub async fn an_ecs_canary_never_weights_a_group_before_its_tasks_are_registered(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "lag-ecs", &[]).await;
    let world = EcsWorld::new(&h, &format!("lag-ecs-{}", std::process::id())).await;
    world.allow_in(&s, &[]).await;
    let v1 = world.task_definition("orders:1").await;
    let mut r = world.rollout(&v1);
    r.spec.strategy = serde_json::from_value(json!({"canary": {"scaleDownDelaySeconds": 0,
        "steps": [{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {"duration": "1s"}}]}}))
    .unwrap();
    s.create(&r).await;
    let first = stable_revision(&s.wait_phase(RolloutPhase::Healthy).await);
    registered(&world.elb, &world.blue, 4).await;

    let sampler =
        Sampler::start(world.elb.clone(), world.listener.clone(), [world.blue.clone(), world.green.clone()], 4, s.rollouts.clone());
    let v2 = world.task_definition("orders:2").await;
    s.patch(json!({"spec": {"workload": {"ecs": {"taskDefinition": v2}}}})).await;
    promoted(&s, &first).await;
    wait_for("all traffic on green, the new stable's group", Duration::from_secs(60), || async {
        (world.weights().await == (0, 100)).then_some(())
    })
    .await;
    sampler.finish("ECS canary");
}

register_test!(496, a_gradual_abort_steps_the_listener_down_on_its_schedule);
/// `gradualAbort`: an abort at 60 % lowers the canary's weight 20 points every 3 s on the real
/// listener, instead of all at once, and the canary is retired once it is at 0. The schedule
/// counts from the abort's time as the status holds it, in whole seconds, so a step may come up
/// to a second early against a clock started when the abort was asked.
pub async fn a_gradual_abort_steps_the_listener_down_on_its_schedule(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "gradual-abort", &["web-stable", "web-canary"]).await;
    let (elb, listener, stable, canary) = h.stack.balancer(&format!("gradual-{}", std::process::id())).await;
    s.allow_aws(&[&listener, &stable, &canary]).await;
    let _targets = s.bind_target_groups(&elb, &stable, &canary, REGISTRATION_LAG);
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary", "abortScaleDownDelaySeconds": 0,
        "steps": [{"setWeight": 60}, {"pause": {}}]}});
    let mut r = rollout(5, "web:1", strategy);
    r.spec.traffic = Some(
        serde_json::from_value(json!({"alb": {"listenerArn": listener, "stableTargetGroupArn": stable, "canaryTargetGroupArn": canary,
            "gradualAbort": {"weightStep": 20, "interval": "3s"}}}))
        .unwrap(),
    );
    s.create(&r).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    s.set_image("web:2").await;
    s.wait("the pause at 60 %", |r| r.status.as_ref().and_then(|s| s.verified_weight) == Some(60)).await;

    let asked = Instant::now();
    s.command("abort", "a-1").await;
    let mut seen: Vec<(i32, Instant)> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let weight = listener_weights(&elb, &listener, &stable, &canary).await.1;
        if seen.last().map(|(w, _)| *w) != Some(weight) {
            seen.push((weight, Instant::now()));
        }
        if weight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let weights: Vec<i32> = seen.iter().map(|(w, _)| *w).collect();
    assert_eq!(weights, [60, 40, 20, 0], "one step at a time");
    let interval = Duration::from_secs(3);
    for (k, (weight, at)) in seen.iter().enumerate().skip(2) {
        let earliest = interval * (k as u32 - 1) - Duration::from_secs(1);
        let after = *at - asked;
        assert!(after >= earliest, "weight {weight} came {after:?} after the abort, before its step at {earliest:?}");
    }
    // Steps after the first both count from the abort's time: they land an interval apart.
    let last_gap = seen[3].1 - seen[2].1;
    assert!(last_gap >= Duration::from_secs(2), "20 → 0 came {last_gap:?} after 40 → 20");
    s.wait_replicas(&[("web:1", 5)]).await;
}
