//! The one pass (`sluice::pass`) against the simulated ports: no API server, the same dispatch
//! as the controller's, for both platforms.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sluice::api::*;
use sluice::engine::{Action, revision};
use sluice::simulate::scenario::with_version;
use sluice::simulate::world::{Faults, MetricSource, PassOutcome, Sample, World};

const STABLE_TG: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/blue/1";
const CANARY_TG: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/green/2";

struct NoMetrics;
impl MetricSource for NoMetrics {
    fn sample(&mut self, _: &str, _: Duration) -> Sample {
        Sample::NoData
    }
}

fn alb() -> Traffic {
    Traffic {
        alb: Some(AlbTraffic {
            listener_arn: Some("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/a/b/c".into()),
            stable_target_group_arn: STABLE_TG.into(),
            canary_target_group_arn: CANARY_TG.into(),
            ..Default::default()
        }),
    }
}

fn ecs_canary(steps: Vec<CanaryStep>) -> RolloutSpec {
    RolloutSpec {
        workload: Workload {
            kubernetes: None,
            ecs: Some(EcsWorkload {
                cluster: "shop".into(),
                service: "web".into(),
                task_definition: "web:1".into(),
                desired_count: 4,
                load_balancer: EcsLoadBalancer { container_name: "web".into(), container_port: 80 },
                ..Default::default()
            }),
        },
        strategy: Strategy { canary: Some(CanaryStrategy { steps, ..Default::default() }), ..Default::default() },
        traffic: Some(alb()),
        progress_deadline_seconds: None,
        progress_deadline_abort: false,
        paused: false,
        restart_at: None,
        rollback_window: None,
        hooks: Vec::new(),
    }
}

fn weight(percent: i32) -> CanaryStep {
    CanaryStep { set_weight: Some(percent), ..Default::default() }
}

/// Passes until nothing changes and nothing is due, as the controller would run them.
fn settle(world: &mut World) -> Vec<Action> {
    let mut applied_all = Vec::new();
    for _ in 0..500 {
        let requeue = match world.pass() {
            PassOutcome::Applied { applied, requeue_after, .. } => {
                let again = if applied.is_empty() { requeue_after } else { Some(Duration::ZERO) };
                applied_all.extend(applied);
                again
            }
            PassOutcome::Interrupted { applied, .. } => {
                applied_all.extend(applied);
                Some(Duration::from_secs(5))
            }
        };
        let next = [requeue.map(|r| world.now + SignedDuration::try_from(r).unwrap()), world.next_change()].into_iter().flatten().min();
        match next {
            Some(at)
                if at > world.now + SignedDuration::from_hours(1)
                    || world.status.phase == Some(RolloutPhase::Healthy) && requeue.is_none() =>
            {
                return applied_all;
            }
            Some(at) => world.now = at.max(world.now),
            None => return applied_all,
        }
    }
    panic!("no rest after 500 passes: {:?}", world.status.message);
}

fn start() -> Timestamp {
    Timestamp::from_second(1_767_225_600).unwrap()
}

#[test]
fn an_ecs_promotion_swaps_the_target_group_roles() {
    let v1 = ecs_canary(vec![weight(25), weight(100)]);
    let mut world = World::at_rest("web", &v1, start(), Box::new(NoMetrics));
    let (r1, v2) = (revision::of(&v1.workload), with_version(&v1, "web:2"));
    let r2 = revision::of(&v2.workload);
    world.set_spec(v2.clone());
    let applied = settle(&mut world);
    assert_eq!(world.status.phase, Some(RolloutPhase::Healthy), "{:?}", world.status.message);
    assert_eq!(world.status.stable_revision.as_deref(), Some(r2.as_str()));
    assert!(
        applied.iter().any(|a| matches!(a, Action::Scale { revision, target_group: Some(tg), .. } if *revision == r2 && tg == CANARY_TG)),
        "the new task set registers with the group the stable one does not use: {applied:?}"
    );
    assert_eq!(world.registration(&r2), Some(CANARY_TG));
    assert_eq!(world.running(), vec![r2.clone()], "the old task set is retired");
    assert_eq!((world.weight_of(CANARY_TG), world.weight_of(STABLE_TG)), (Some(100), Some(0)), "production stays where it went");
    assert_eq!(world.weight(), Some(0), "the canary role is now the other group, with no traffic");
    assert_eq!(world.registration(&r1), None);

    // The next version goes back to the first group, and the weights move that way.
    let v3 = with_version(&v2, "web:3");
    let r3 = revision::of(&v3.workload);
    world.set_spec(v3);
    settle(&mut world);
    assert_eq!(world.status.stable_revision.as_deref(), Some(r3.as_str()), "{:?}", world.status.message);
    assert_eq!(world.registration(&r3), Some(STABLE_TG));
    assert_eq!((world.weight_of(STABLE_TG), world.weight_of(CANARY_TG)), (Some(100), Some(0)));
}

/// Fails the first call named `call`, then none.
struct FailOnce {
    call: &'static str,
    failed: bool,
}

impl Faults for FailOnce {
    fn call_fails(&mut self, call: &str, _: Timestamp) -> bool {
        let fail = !self.failed && call == self.call;
        self.failed |= fail;
        fail
    }
}

#[test]
fn a_failed_call_leaves_the_status_unwritten_and_the_next_pass_converges() {
    let v1 = ecs_canary(vec![weight(50), weight(100)]);
    let mut world = World::at_rest("web", &v1, start(), Box::new(NoMetrics));
    world.faults = Box::new(FailOnce { call: "set weight", failed: false });
    world.set_spec(with_version(&v1, "web:2"));
    let mut interrupted = None;
    for _ in 0..50 {
        let before = world.status.clone();
        match world.pass() {
            PassOutcome::Interrupted { reason, plan, .. } => {
                assert_eq!(world.status, before, "nothing is written when a call fails");
                assert!(plan.is_some_and(|p| p.actions.iter().any(|a| matches!(a, Action::SetWeight { .. }))));
                interrupted = Some(reason);
                break;
            }
            PassOutcome::Applied { .. } => world.now = world.next_change().unwrap_or(world.now).max(world.now),
        }
    }
    assert_eq!(interrupted.as_deref(), Some("set weight failed"));
    settle(&mut world);
    assert_eq!(world.status.phase, Some(RolloutPhase::Healthy), "{:?}", world.status.message);
    assert_eq!(world.status.stable_revision, Some(revision::of(&world.spec.workload)));
}

#[test]
fn a_kubernetes_canary_behind_an_alb_keeps_its_target_group_roles() {
    let v1 = with_kubernetes(&ecs_canary(vec![weight(30), weight(100)]));
    let mut world = World::at_rest("web", &v1, start(), Box::new(NoMetrics));
    world.set_spec(with_version(&v1, "web:2"));
    let applied = settle(&mut world);
    assert_eq!(world.status.phase, Some(RolloutPhase::Healthy), "{:?}", world.status.message);
    let groups: Vec<(String, String)> = applied
        .iter()
        .filter_map(|a| match a {
            Action::SetWeight { target_groups, .. } => Some((target_groups.stable.clone(), target_groups.canary.clone())),
            _ => None,
        })
        .collect();
    assert!(!groups.is_empty());
    assert!(
        groups.iter().all(|g| *g == (STABLE_TG.to_string(), CANARY_TG.to_string())),
        "Services steer: the roles never swap: {groups:?}"
    );
    assert_eq!(world.weight(), Some(0), "at rest all traffic is on the stable group, whose Service selects the new revision");
    assert_eq!(world.serving("stable"), world.status.stable_revision);
    assert_eq!(world.registration(&revision::of(&world.spec.workload)), None, "no task sets");
}

#[test]
fn an_ecs_rollout_in_motion_is_looked_at_again_within_the_poll_interval_and_not_at_rest() {
    // A pause of an hour: the engine alone would wait the hour, but task sets send no events.
    let pause = CanaryStep { pause: Some(Pause { duration: Some(DurationString("1h".into())) }), ..Default::default() };
    let v1 = ecs_canary(vec![weight(25), pause, weight(100)]);
    let mut world = World::at_rest("web", &v1, start(), Box::new(NoMetrics));
    assert!(
        matches!(world.pass(), PassOutcome::Applied { requeue_after: None, .. }),
        "a Healthy ECS rollout is not polled: {:?}",
        world.status.message
    );
    world.set_spec(with_version(&v1, "web:2"));
    let mut requeues = Vec::new();
    for _ in 0..30 {
        let PassOutcome::Applied { plan, requeue_after, .. } = world.pass() else { panic!("no call fails here") };
        requeues.push((plan.requeue_after, requeue_after));
        if world.status.phase == Some(RolloutPhase::Paused) {
            break;
        }
        world.now = world.next_change().unwrap_or(world.now).max(world.now);
    }
    let (engine, pass) = *requeues.last().unwrap();
    assert_eq!(world.status.phase, Some(RolloutPhase::Paused), "{:?}", world.status.message);
    assert_eq!(engine, Some(Duration::from_secs(3600)), "the engine waits for the pause to end");
    assert_eq!(pass, Some(sluice::platform::ecs::POLL), "the pass looks again at the poll interval");

    let mut kubernetes = World::at_rest("web", &with_kubernetes(&v1), start(), Box::new(NoMetrics));
    kubernetes.set_spec(with_version(&with_kubernetes(&v1), "web:2"));
    for _ in 0..30 {
        let PassOutcome::Applied { plan, requeue_after, .. } = kubernetes.pass() else { panic!("no call fails here") };
        assert_eq!(plan.requeue_after, requeue_after, "watched objects need no polling");
        if kubernetes.status.phase == Some(RolloutPhase::Paused) {
            return;
        }
        kubernetes.now = kubernetes.next_change().unwrap_or(kubernetes.now).max(kubernetes.now);
    }
    panic!("the Kubernetes canary never paused: {:?}", kubernetes.status.message);
}

fn with_kubernetes(spec: &RolloutSpec) -> RolloutSpec {
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    let template = PodTemplateSpec {
        spec: Some(PodSpec {
            containers: vec![Container { name: "web".into(), image: Some("web:1".into()), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut spec = spec.clone();
    spec.workload = Workload { kubernetes: Some(KubernetesWorkload { replicas: 3, template, ..Default::default() }), ecs: None };
    spec
}
