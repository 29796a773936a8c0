//! Deterministic simulation: the real engine against a simulated platform, router and metrics
//! under a virtual clock, with random faults, spec updates and people's commands. Every schedule
//! is reproducible from its seed; the invariants are checked on every pass.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use sluice::api::*;
use sluice::engine::{Action, revision};
use sluice::simulate::issue;
use sluice::simulate::scenario::{Command, with_version};
use sluice::simulate::world::{Faults, MetricSource, PassOutcome, Sample, World};

const DEFAULT_SCHEDULES: u64 = 10_000;
const LIMIT: Duration = Duration::from_secs(6 * 3600);
const FAULT_WINDOW: Duration = Duration::from_secs(40 * 60);

fn pick<T: Clone>(rng: &mut SmallRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())].clone()
}

fn analysis() -> RolloutAnalysis {
    RolloutAnalysis { templates: vec![AnalysisTemplateRef { template_name: "health".into(), cluster_scope: false }], args: vec![] }
}

fn random_spec(rng: &mut SmallRng) -> RolloutSpec {
    let replicas = rng.random_range(1..=10);
    let template = PodTemplateSpec {
        spec: Some(PodSpec {
            containers: vec![Container { name: "app".into(), image: Some("app:1".into()), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let alb = AlbTraffic {
        listener_arn: Some("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/a/b/c".into()),
        stable_target_group_arn: "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/s/1".into(),
        canary_target_group_arn: "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/c/2".into(),
        test_listener_arn: rng.random_bool(0.3).then(|| "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/a/b/t".into()),
        gradual_abort: rng.random_bool(0.3).then(|| GradualAbort { weight_step: 50, interval: "10s".into() }),
        ..Default::default()
    };
    // A quarter are ECS services: task sets register with the target groups themselves, whose
    // roles swap at every promotion; ECS always has an ALB.
    let ecs = rng.random_bool(0.25);
    let traffic = (ecs || rng.random_bool(0.5)).then_some(Traffic { alb: Some(alb) });
    // Sometimes scaled to zero behind a router: nothing may take weight, and the rollout says so.
    let replicas = if traffic.is_some() && rng.random_bool(0.05) { 0 } else { replicas };
    let workload = match ecs {
        true => Workload {
            kubernetes: None,
            ecs: Some(EcsWorkload {
                cluster: "shop".into(),
                service: "web".into(),
                task_definition: "app:1".into(),
                desired_count: replicas,
                load_balancer: EcsLoadBalancer { container_name: "app".into(), container_port: 80 },
                ..Default::default()
            }),
        },
        false => {
            // Some adopt a Deployment: the world holds its template in place, as the controller does.
            let scale_down = pick(rng, &[ScaleDown::Never, ScaleDown::OnSuccess, ScaleDown::Progressively]);
            let deployment_ref = rng.random_bool(0.2).then(|| DeploymentRef { name: "app".into(), scale_down });
            Workload { kubernetes: Some(KubernetesWorkload { replicas, template, deployment_ref, ..Default::default() }), ecs: None }
        }
    };
    let mut strategy = Strategy::default();
    let mut traffic_allowed = true;
    // ECS has no rolling update: its traffic always moves through the target groups.
    match rng.random_range(0..if ecs { 17 } else { 20 }) {
        0..=11 => {
            let steps = (0..rng.random_range(0..=6))
                .map(|_| match rng.random_range(0..20) {
                    0..=7 => CanaryStep { set_weight: Some(pick(rng, &[5, 10, 20, 25, 33, 50, 75, 100])), ..Default::default() },
                    8..=12 => CanaryStep {
                        pause: Some(Pause { duration: Some(pick(rng, &["0s", "30s", "1m", "5m"]).into()) }),
                        ..Default::default()
                    },
                    13 => CanaryStep { pause: Some(Pause { duration: None }), ..Default::default() },
                    14..=16 => CanaryStep { analysis: Some(analysis()), ..Default::default() },
                    17 if traffic.is_some() => {
                        let value = HeaderValueMatch { exact: Some("1".into()), prefix: None };
                        let matches = match rng.random_bool(0.7) {
                            true => vec![HeaderMatch { header_name: "x-canary".into(), header_value: value }],
                            false => Vec::new(),
                        };
                        CanaryStep { set_header_route: Some(SetHeaderRoute { name: "tester".into(), matches }), ..Default::default() }
                    }
                    17 => CanaryStep { analysis: Some(analysis()), ..Default::default() },
                    _ => CanaryStep {
                        set_canary_scale: Some(SetCanaryScale { replicas: Some(rng.random_range(0..=3)), ..Default::default() }),
                        ..Default::default()
                    },
                })
                .collect();
            strategy.canary = Some(CanaryStrategy {
                steps,
                analysis: rng.random_bool(0.2).then(analysis),
                scale_down_delay_seconds: Some(pick(rng, &[0, 30, 120])),
                abort_scale_down_delay_seconds: Some(pick(rng, &[-1, 0, 30])),
                max_unavailable: rng
                    .random_bool(0.3)
                    .then(|| k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(rng.random_range(1..=2))),
                ..Default::default()
            });
        }
        12..=16 => {
            strategy.blue_green = Some(BlueGreenStrategy {
                active_service: "active".into(),
                preview_service: Some("preview".into()),
                approve_before_preview: rng.random_bool(0.15).then_some(true),
                auto_promotion_enabled: rng.random_bool(0.15).then_some(false),
                auto_promotion_seconds: rng.random_bool(0.3).then(|| rng.random_range(0..120)),
                preview_replica_count: rng.random_bool(0.4).then(|| rng.random_range(1..=replicas.max(1))),
                scale_down_delay_seconds: Some(pick(rng, &[0, 30, 120])),
                pre_promotion_analysis: rng.random_bool(0.3).then(analysis),
                post_promotion_analysis: rng.random_bool(0.3).then(analysis),
            });
        }
        _ => {
            traffic_allowed = false;
            use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
            strategy.rolling = Some(RollingStrategy {
                max_surge: Some(IntOrString::Int(rng.random_range(0..=3))),
                max_unavailable: Some(IntOrString::Int(rng.random_range(0..=2))),
                analysis: rng.random_bool(0.3).then(analysis),
            });
        }
    }
    RolloutSpec {
        workload,
        traffic: if traffic_allowed { traffic } else { None },
        strategy,
        progress_deadline_seconds: Some(pick(rng, &[300, 3600])),
        progress_deadline_abort: rng.random_bool(0.5),
        paused: false,
        restart_at: None,
        rollback_window: rng.random_bool(0.3).then(|| sluice::api::RollbackWindow { revisions: rng.random_range(1..=3) }),
        // Hooks at random stages, measured like the other analysis.
        hooks: (0..rng.random_range(0..=2))
            .map(|i| sluice::api::LifecycleHook {
                name: format!("hook-{i}"),
                stage: pick(rng, &sluice::api::LifecycleStage::ALL),
                analysis: Some(analysis()),
                ..Default::default()
            })
            .collect(),
    }
}

/// Metric values: healthy, turning bad, no data or errors, at random moments.
struct RandomMetrics {
    points: Vec<(Duration, Sample)>,
}

impl MetricSource for RandomMetrics {
    fn sample(&mut self, _metric: &str, elapsed: Duration) -> Sample {
        self.points.iter().rev().find(|(at, _)| *at <= elapsed).map_or(Sample::NoData, |(_, s)| s.clone())
    }
}

fn random_metrics(rng: &mut SmallRng) -> RandomMetrics {
    let mut points = vec![(Duration::ZERO, Sample::Value(serde_json::json!(0.1)))];
    for _ in 0..rng.random_range(0..4) {
        let at = Duration::from_secs(rng.random_range(0..3600));
        let sample = match rng.random_range(0..4) {
            0 => Sample::Value(serde_json::json!(0.9)),
            1 => Sample::NoData,
            2 => Sample::Error("provider unreachable".into()),
            _ => Sample::Value(serde_json::json!(0.1)),
        };
        points.push((at, sample));
    }
    points.sort_by_key(|(at, _)| *at);
    RandomMetrics { points }
}

struct Chaos {
    rng: SmallRng,
    fail: f64,
    crash: f64,
    unreadable: f64,
    slow: u64,
    broken: Option<String>,
}

impl Faults for Chaos {
    fn call_fails(&mut self, _: &str, _: Timestamp) -> bool {
        self.rng.random_bool(self.fail)
    }
    fn crash_after(&mut self, _: usize) -> bool {
        self.rng.random_bool(self.crash)
    }
    fn readiness_delay(&mut self, revision: &str) -> Duration {
        if self.broken.as_deref() == Some(revision) {
            return Duration::from_secs(100 * 86_400);
        }
        Duration::from_secs(self.rng.random_range(0..=self.slow))
    }
    fn weight_unreadable(&mut self) -> bool {
        self.rng.random_bool(self.unreadable)
    }
}

/// Calm after the fault window, except that a broken version stays broken.
struct Calm {
    broken: Option<String>,
}

impl Faults for Calm {
    fn readiness_delay(&mut self, revision: &str) -> Duration {
        if self.broken.as_deref() == Some(revision) { Duration::from_secs(100 * 86_400) } else { Duration::ZERO }
    }
}

enum Happening {
    Command(Command),
    Version(String),
    /// `kubectl sluice restart`: spec.restartAt set to now.
    Restart,
}

struct Outcome {
    passes: u64,
    violations: Vec<String>,
}

fn template() -> AnalysisTemplateSpec {
    AnalysisTemplateSpec {
        args: vec![],
        metrics: vec![Metric {
            name: "health".into(),
            interval: Some("30s".into()),
            count: Some(3.into()),
            success_condition: Some("result < 0.5".into()),
            provider: MetricProvider {
                prometheus: Some(PrometheusMetric { address: "http://p:9090".into(), query: "up".into(), ..Default::default() }),
                ..Default::default()
            },
            ..Default::default()
        }],
    }
}

fn allowed_weights(spec: &RolloutSpec) -> BTreeSet<i32> {
    let mut allowed = BTreeSet::from([0, 100]);
    if let Some(canary) = &spec.strategy.canary {
        allowed.extend(canary.steps.iter().filter_map(|s| s.set_weight));
    }
    // A gradual abort steps down from any of them.
    let gradual = spec.traffic.as_ref().and_then(|t| t.alb.as_ref()).and_then(|a| a.gradual_abort.as_ref());
    if let Some(step) = gradual.map(|g| g.weight_step.max(1)) {
        let stepped: Vec<i32> = allowed.iter().flat_map(|w| (1..=100 / step).map(move |k| (w - k * step).max(0))).collect();
        allowed.extend(stepped);
    }
    allowed
}

/// Waiting for a person, or at rest: the only ways a schedule may end.
fn settled(world: &World) -> Result<&'static str, String> {
    let status = &world.status;
    let n = world.spec.workload.replicas();
    let update = revision::of(&world.spec.workload);
    let stable = status.stable_revision.clone().unwrap_or_default();
    let running = world.running();
    // At rest, previews reach the stable revision only, once the router is configured for them.
    let previews_home = world.preview("header").is_none() && world.preview("test").is_none_or(|role| role == "stable");
    let waiting_for_person = |s: &RolloutStatus| {
        world.spec.paused
            || s.pause_conditions.iter().any(|p| p.reason != PauseReason::CanaryPauseStep || is_manual_pause(world))
            || s.conditions.iter().any(|c| c.reason == "ProgressDeadlineExceeded")
            || s.conditions.iter().any(|c| c.type_ == "ScaledToZero" && c.status == "True")
    };
    // An adopted Deployment that gives way has given way by the time the rollout is at rest.
    let adopted_gave_way = match (world.spec.workload.kubernetes.as_ref().and_then(|k| k.deployment_ref.as_ref()), world.adopted) {
        (Some(reference), Some(adopted)) if reference.scale_down != ScaleDown::Never => adopted.replicas == 0,
        _ => true,
    };
    // abortScaleDownDelaySeconds -1 keeps an aborted canary running behind a router.
    let keeps_aborted =
        world.spec.traffic.is_some() && world.spec.strategy.canary.as_ref().is_some_and(|c| c.abort_scale_down_delay_seconds == Some(-1));
    // A restart asked of pods is done by the time the rollout is at rest.
    let restarted =
        world.spec.workload.kubernetes.is_none() || world.spec.restart_at.is_none() || status.restarted_at == world.spec.restart_at;
    match status.phase {
        Some(RolloutPhase::Healthy)
            if stable == update
                && (running == [update.clone()] || n == 0 && running.is_empty())
                && world.ready(&update) == n
                && world.weight().unwrap_or(0) == 0
                && previews_home
                && restarted
                && adopted_gave_way =>
        {
            Ok("healthy")
        }
        Some(RolloutPhase::Degraded)
            if status.abort
                && running.iter().all(|r| *r == stable || (*r == update && keeps_aborted))
                && world.ready(&stable) == n
                && world.weight().unwrap_or(0) == 0
                && previews_home =>
        {
            Ok("rolled back")
        }
        Some(RolloutPhase::Paused | RolloutPhase::Degraded | RolloutPhase::Progressing) if waiting_for_person(status) => {
            Ok("waiting for a person")
        }
        phase => Err(format!(
            "phase {phase:?}, running {running:?}, weight {:?}, previews test {:?} header {:?}, message {:?}",
            world.weight(),
            world.preview("test"),
            world.preview("header"),
            status.message
        )),
    }
}

fn is_manual_pause(world: &World) -> bool {
    let index = world.status.current_step_index.unwrap_or(0) as usize;
    world
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(|c| c.steps.get(index))
        .and_then(|s| s.pause.as_ref())
        .is_some_and(|p| p.duration.is_none())
}

fn schedule(seed: u64, trace: bool) -> Outcome {
    let mut rng = SmallRng::seed_from_u64(seed);
    let stable_spec = random_spec(&mut rng);
    let start = Timestamp::from_second(1_767_225_600).unwrap();
    let mut world = World::at_rest("app", &stable_spec, start, Box::new(random_metrics(&mut rng)));
    world.templates.insert("health".into(), template());
    world.ready_after = Duration::from_secs(rng.random_range(1..30));
    // The availability the strategy allows to be missing while it moves.
    let max_unavailable = match (&stable_spec.strategy.rolling, &stable_spec.strategy.canary) {
        (Some(rolling), _) => rolling.max_unavailable.as_ref(),
        (None, Some(canary)) => canary.max_unavailable.as_ref(),
        _ => None,
    };
    world.unavailable_allowance = match max_unavailable {
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(u)) => *u,
        _ => 0,
    };
    let first = with_version(&stable_spec, "app:2");
    let broken = rng.random_bool(0.08).then(|| revision::of(&first.workload));
    world.faults = Box::new(Chaos {
        rng: SmallRng::seed_from_u64(seed ^ 0x5eed),
        fail: pick(&mut rng, &[0.0, 0.05, 0.2]),
        crash: pick(&mut rng, &[0.0, 0.03, 0.1]),
        unreadable: pick(&mut rng, &[0.0, 0.05]),
        slow: pick(&mut rng, &[0, 30, 600]),
        broken: broken.clone(),
    });
    world.set_spec(first);

    let mut agenda: Vec<(Duration, Happening)> = Vec::new();
    if rng.random_bool(0.2) {
        agenda.push((Duration::from_secs(rng.random_range(0..1800)), Happening::Version("app:3".into())));
    }
    if rng.random_bool(0.15) {
        agenda.push((Duration::from_secs(rng.random_range(0..2400)), Happening::Restart));
    }
    // Back to the version that was stable at the start: with a rollback window, fast-tracked.
    if rng.random_bool(0.15) {
        agenda.push((Duration::from_secs(rng.random_range(0..2000)), Happening::Version("app:1".into())));
    }
    for _ in 0..rng.random_range(0..4) {
        let command = pick(
            &mut rng,
            &[Command::Promote, Command::Promote, Command::PromoteFull, Command::Abort, Command::Retry, Command::Pause, Command::Resume],
        );
        agenda.push((Duration::from_secs(rng.random_range(0..2400)), Happening::Command(command)));
    }
    if agenda.iter().any(|(_, h)| matches!(h, Happening::Command(Command::Pause))) {
        agenda.push((Duration::from_secs(2500), Happening::Command(Command::Resume)));
    }
    agenda.sort_by_key(|(at, _)| *at);
    let mut agenda = agenda.into_iter().peekable();

    let mut violations = Vec::new();
    let mut passes = 0u64;
    let mut same_instant = 0;
    let mut touched_by_person: BTreeSet<String> = BTreeSet::new();
    let mut completed_steps: BTreeMap<(String, i32), Vec<usize>> = BTreeMap::new();
    let mut calm = false;
    let mut ids = 0;
    // Every revision promoted to stable, oldest first.
    let mut stables: Vec<String> = world.status.stable_revision.clone().into_iter().collect();

    loop {
        while let Some((_, happening)) = agenda.next_if(|(at, _)| *at <= world.elapsed()) {
            match happening {
                Happening::Version(v) => world.set_spec(with_version(&world.spec, &v)),
                Happening::Restart => {
                    let at = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(world.now);
                    world.set_spec(RolloutSpec { restart_at: Some(at), ..world.spec.clone() });
                }
                Happening::Command(command) => {
                    ids += 1;
                    touched_by_person.insert(world.status.update_revision.clone().unwrap_or_default());
                    issue(&mut world, command, format!("c{ids}"));
                }
            }
        }
        if !calm && world.elapsed() >= FAULT_WINDOW {
            calm = true;
            world.faults = Box::new(Calm { broken: broken.clone() });
        }
        let allowed = allowed_weights(&world.spec);
        let before_abort = world.status.abort;
        let adopted_before = world.adopted.map(|d| d.replicas);
        let outcome = world.pass();
        passes += 1;
        if trace {
            match &outcome {
                PassOutcome::Applied { plan, applied, .. } => eprintln!(
                    "{:>6}s {:?} step {:?} weight {:?} abort {} | {:?} | events {:?} | {:?}",
                    world.elapsed().as_secs(),
                    plan.status.phase,
                    plan.status.current_step_index,
                    world.weight(),
                    plan.status.abort,
                    applied,
                    plan.events.iter().map(|e| e.message.clone()).collect::<Vec<_>>(),
                    plan.status.message
                ),
                PassOutcome::Interrupted { applied, reason, .. } => {
                    eprintln!("{:>6}s interrupted ({reason}) after {applied:?}", world.elapsed().as_secs())
                }
            }
        }
        let (applied, requeue) = match &outcome {
            PassOutcome::Applied { applied, requeue_after, .. } => {
                (applied.clone(), if applied.is_empty() { *requeue_after } else { Some(Duration::ZERO) })
            }
            PassOutcome::Interrupted { applied, .. } => (applied.clone(), Some(Duration::from_secs(5))),
        };
        if let PassOutcome::Applied { plan, .. } = &outcome {
            let update = plan.status.update_revision.clone().unwrap_or_default();
            if plan.status.fast_tracked && !touched_by_person.contains(&update) {
                // The one promotion without steps: a return to one of the last stable revisions.
                let window = world.spec.rollback_window.as_ref().map_or(0, |w| w.revisions.max(0) as usize);
                let mut recent: Vec<&String> = Vec::new();
                for revision in stables.iter().rev().skip(1) {
                    if !recent.contains(&revision) && Some(revision) != stables.last() {
                        recent.push(revision);
                    }
                }
                if !recent.iter().take(window).any(|r| **r == update) {
                    violations.push(format!("{update} fast-tracked but not one of the last {window} stable revisions {recent:?}"));
                }
                touched_by_person.insert(update);
            }
            let key = (plan.status.update_revision.clone().unwrap_or_default(), plan.status.attempt);
            for event in &plan.events {
                // The world changes weights only as the engine asks (its faults hide a read, and
                // crashes cut passes short): a weight that drifted is the engine's own mistake.
                if event.reason == sluice::engine::EventReason::TrafficDrift && event.message.contains("read canary weight") {
                    violations.push(format!("drift reported where nothing changed the weights: {}", event.message));
                }
                if event.reason == sluice::engine::EventReason::Resumed {
                    touched_by_person.insert(key.0.clone());
                }
                let Some(index) = step_of(event) else { continue };
                let done = completed_steps.entry(key.clone()).or_default();
                if !touched_by_person.contains(&key.0) && done.last().map_or(0, |l| l + 1) != index {
                    violations.push(format!("step {index} completed after steps {done:?} of {}", key.0));
                }
                done.push(index);
            }
        }
        for action in &applied {
            if let Action::SetWeight { canary_weight, .. } = action {
                // The invariant: weight never lands on a revision with no ready replica.
                let receivers = [(*canary_weight > 0, "canary"), (*canary_weight < 100 && !world.status.abort, "stable")];
                for (role, revision) in receivers.iter().filter(|(gets, _)| *gets).filter_map(|(_, r)| Some((*r, world.serving(r)?))) {
                    if world.ready(&revision) == 0 {
                        violations.push(format!("weight {canary_weight} set while the {role} revision {revision} has no ready replica"));
                    }
                }
            }
            match action {
                Action::SetWeight { canary_weight, .. } if !allowed.contains(canary_weight) => {
                    violations.push(format!("weight {canary_weight} is not one the steps name (allowed {allowed:?})"));
                }
                Action::ScaleAdopted { replicas } => {
                    let reference = world.spec.workload.kubernetes.as_ref().and_then(|k| k.deployment_ref.as_ref());
                    if reference.is_none_or(|r| r.scale_down == ScaleDown::Never) {
                        violations.push(format!("adopted Deployment scaled to {replicas} with scaleDown {reference:?}"));
                    }
                    if adopted_before.is_some_and(|before| *replicas >= before) {
                        violations.push(format!("adopted Deployment scaled from {adopted_before:?} to {replicas}: only ever down"));
                    }
                }
                Action::MarkStable { revision } => {
                    if stables.last() != Some(revision) {
                        stables.push(revision.clone());
                    }
                    if before_abort {
                        violations.push(format!("{revision} promoted while aborted"));
                    }
                    if !touched_by_person.contains(revision) {
                        // A crashed pass still decided: count the steps it completed.
                        let mut completed = completed_steps.clone();
                        if let PassOutcome::Interrupted { plan: Some(plan), .. } = &outcome {
                            let key = (plan.status.update_revision.clone().unwrap_or_default(), plan.status.attempt);
                            completed.entry(key).or_default().extend(plan.events.iter().filter_map(step_of));
                        }
                        check_promotion(&world, revision, &completed, &mut violations);
                    }
                }
                _ => {}
            }
        }
        violations.append(&mut world.unsafe_scale_downs);
        if !violations.is_empty() {
            break;
        }

        let idle = agenda.peek().is_none() && calm;
        if idle && settled(&world).is_ok() && requeue.is_none_or(|r| r > Duration::ZERO) {
            break;
        }
        let wake = [
            requeue.map(|r| world.now + SignedDuration::try_from(r).unwrap()),
            world.next_change(),
            agenda.peek().map(|(at, _)| world.started + SignedDuration::try_from(*at).unwrap()),
            (!calm).then(|| world.started + SignedDuration::try_from(FAULT_WINDOW).unwrap()),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(wake) = wake else { break };
        if wake > world.started + SignedDuration::try_from(LIMIT).unwrap() {
            break;
        }
        if wake <= world.now {
            same_instant += 1;
            if same_instant > 60 {
                violations.push(format!("no progress: {same_instant} passes at {}s", world.elapsed().as_secs()));
                break;
            }
        } else {
            same_instant = 0;
        }
        world.now = wake.max(world.now);
    }
    if violations.is_empty()
        && let Err(state) = settled(&world)
    {
        violations.push(format!("ended half-way after {}s: {state}", world.elapsed().as_secs()));
    }
    Outcome { passes, violations }
}

/// The index of a step an event says was completed (not skipped by a person).
fn step_of(event: &sluice::engine::Event) -> Option<usize> {
    if event.reason != sluice::engine::EventReason::StepCompleted || event.message.contains("skipped") {
        return None;
    }
    event.message.split_whitespace().nth(1).and_then(|i| i.parse().ok())
}

/// No promotion while analysis has no data or errors, and no step skipped.
fn check_promotion(world: &World, revision: &str, completed: &BTreeMap<(String, i32), Vec<usize>>, violations: &mut Vec<String>) {
    let attempt = world.status.attempt;
    let prefix = format!("app-{revision}-{attempt}-");
    for (name, run) in world.runs.iter().filter(|(n, _)| n.starts_with(&prefix)) {
        let background = name.ends_with("background");
        let bad = if background {
            matches!(run.status.phase, AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive)
        } else {
            run.status.phase != AnalysisPhase::Successful
        };
        if bad {
            violations.push(format!("{revision} promoted while analysis run {name} is {:?}: {:?}", run.status.phase, run.status.message));
        }
    }
    if let Some(canary) = &world.spec.strategy.canary {
        let done = completed.get(&(revision.to_string(), attempt)).cloned().unwrap_or_default();
        let expected: Vec<usize> = (0..canary.steps.len()).collect();
        if done != expected {
            violations.push(format!("{revision} promoted after steps {done:?}, expected {expected:?}"));
        }
    }
}

#[test]
fn ten_thousand_random_schedules_keep_every_invariant() {
    // More with SLUICE_SCHEDULES=N; CI runs the default.
    let schedules: u64 = std::env::var("SLUICE_SCHEDULES").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SCHEDULES);
    let mut passes = 0;
    let mut failures = Vec::new();
    for seed in 0..schedules {
        let outcome = schedule(seed, false);
        passes += outcome.passes;
        if !outcome.violations.is_empty() {
            failures.push(format!("seed {seed}: {}", outcome.violations.join(" | ")));
        }
    }
    println!("simulated {schedules} schedules ({passes} engine passes): {} invariant violations", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {schedules} schedules broke an invariant:\n{}",
        failures.len(),
        failures.iter().take(15).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// `SLUICE_SEED=N cargo test --test simulation replay -- --nocapture` prints one schedule pass by pass.
#[test]
fn replay() {
    let seed = std::env::var("SLUICE_SEED").ok().and_then(|s| s.parse().ok());
    let outcome = schedule(seed.unwrap_or(0), seed.is_some());
    assert!(outcome.violations.is_empty(), "{:?}", outcome.violations);
}

/// Runs passes until nothing is due for `limit`, issuing `command` once the rollout waits for a
/// person; returns the names of the analysis runs created.
fn drive_blue_green(command: Command, value: f64) -> (World, Vec<String>) {
    let strategy = BlueGreenStrategy {
        active_service: "active".into(),
        preview_service: Some("preview".into()),
        auto_promotion_enabled: Some(false),
        post_promotion_analysis: Some(analysis()),
        ..Default::default()
    };
    drive_blue_green_with(strategy, PauseReason::BlueGreenPause, command, value, |_| {})
}

/// The same, waiting for the pause `reason`; `at_pause` looks at the world when the command is issued.
fn drive_blue_green_with(
    strategy: BlueGreenStrategy,
    reason: PauseReason,
    command: Command,
    value: f64,
    at_pause: impl FnOnce(&World),
) -> (World, Vec<String>) {
    let mut at_pause = Some(at_pause);
    let mut spec = random_spec(&mut SmallRng::seed_from_u64(1));
    spec.traffic = None;
    spec.strategy = Strategy { blue_green: Some(strategy), ..Default::default() };
    let start = Timestamp::from_second(1_767_225_600).unwrap();
    let metrics = RandomMetrics { points: vec![(Duration::ZERO, Sample::Value(serde_json::json!(value)))] };
    let mut world = World::at_rest("app", &spec, start, Box::new(metrics));
    world.templates.insert("health".into(), template());
    world.set_spec(with_version(&spec, "app:2"));
    let mut issued = false;
    for _ in 0..500 {
        let requeue = match world.pass() {
            PassOutcome::Applied { applied, requeue_after, .. } => {
                if applied.is_empty() {
                    requeue_after
                } else {
                    Some(Duration::ZERO)
                }
            }
            PassOutcome::Interrupted { .. } => Some(Duration::from_secs(5)),
        };
        if !issued && world.status.pause_conditions.iter().any(|p| p.reason == reason) {
            at_pause.take().expect("issued once")(&world);
            issue(&mut world, command, "c1".into());
            issued = true;
            continue;
        }
        let wake = [requeue.map(|r| world.now + SignedDuration::try_from(r).unwrap()), world.next_change()].into_iter().flatten().min();
        let Some(wake) = wake.filter(|w| *w <= start + SignedDuration::from_hours(2)) else { break };
        world.now = wake.max(world.now);
    }
    assert!(issued, "the rollout never waited for approval: {:?}", world.status.message);
    let runs = world.runs.keys().cloned().collect();
    (world, runs)
}

#[test]
fn blue_green_promote_ends_the_approval_pause_and_still_runs_post_promotion_analysis() {
    let (world, runs) = drive_blue_green(Command::Promote, 0.1);
    assert!(runs.iter().any(|r| r.ends_with("post-promotion")), "post-promotion analysis ran: {runs:?}");
    assert_eq!(world.status.phase, Some(RolloutPhase::Healthy), "{:?}", world.status.message);

    let (world, runs) = drive_blue_green(Command::Promote, 0.9);
    assert!(runs.iter().any(|r| r.ends_with("post-promotion")), "{runs:?}");
    assert_eq!(world.status.phase, Some(RolloutPhase::Degraded), "a failed post-promotion analysis rolls back");
    assert!(world.status.abort);
    let stable = world.status.stable_revision.clone().unwrap();
    assert_eq!(world.services.get("stable"), Some(&stable), "production traffic is back on the old revision");
}

#[test]
fn blue_green_approval_before_the_preview_holds_the_new_revision_at_zero_until_promoted() {
    let strategy = BlueGreenStrategy {
        active_service: "active".into(),
        preview_service: Some("preview".into()),
        approve_before_preview: Some(true),
        pre_promotion_analysis: Some(analysis()),
        ..Default::default()
    };
    let (world, runs) = drive_blue_green_with(strategy, PauseReason::PreviewApproval, Command::Promote, 0.1, |world| {
        let update = revision::of(&world.spec.workload);
        assert!(!world.running().contains(&update), "no preview pod before the approval: {:?}", world.running());
        assert_eq!(world.status.phase, Some(RolloutPhase::Paused), "{:?}", world.status.message);
        assert!(world.runs.is_empty(), "no analysis before the approval");
    });
    assert!(runs.iter().any(|r| r.ends_with("pre-promotion")), "the preview was analysed after the approval: {runs:?}");
    assert_eq!(world.status.phase, Some(RolloutPhase::Healthy), "then it promoted by itself: {:?}", world.status.message);
    assert_eq!(world.status.stable_revision, Some(revision::of(&world.spec.workload)));
    assert!(!world.status.preview_approved, "the approval is this revision's only");
}

#[test]
fn blue_green_promote_full_skips_post_promotion_analysis() {
    let (world, runs) = drive_blue_green(Command::PromoteFull, 0.9);
    assert!(runs.is_empty(), "no analysis ran: {runs:?}");
    assert_eq!(world.status.phase, Some(RolloutPhase::Healthy), "{:?}", world.status.message);
    assert_eq!(world.status.stable_revision, Some(revision::of(&world.spec.workload)));
}

#[test]
fn an_update_at_zero_replicas_behind_a_router_waits_with_a_condition_then_goes_on_when_scaled() {
    let mut spec = random_spec(&mut SmallRng::seed_from_u64(2));
    spec.traffic = Some(Traffic {
        alb: Some(AlbTraffic {
            listener_arn: Some("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/a/b/c".into()),
            stable_target_group_arn: "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/s/1".into(),
            canary_target_group_arn: "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/c/2".into(),
            ..Default::default()
        }),
    });
    spec.strategy = Strategy {
        canary: Some(CanaryStrategy { steps: vec![CanaryStep { set_weight: Some(50), ..Default::default() }], ..Default::default() }),
        ..Default::default()
    };
    spec.workload.kubernetes.as_mut().unwrap().replicas = 0;
    // No analysis here: this world has no template for hooks to run.
    spec.hooks.clear();
    let start = Timestamp::from_second(1_767_225_600).unwrap();
    let mut world = World::at_rest("app", &spec, start, Box::new(RandomMetrics { points: vec![] }));
    world.set_spec(with_version(&spec, "app:2"));
    let run = |world: &mut World| {
        let mut weights = Vec::new();
        for _ in 0..200 {
            let requeue = match world.pass() {
                PassOutcome::Applied { applied, requeue_after, .. } => {
                    weights.extend(applied.iter().filter_map(|a| match a {
                        Action::SetWeight { canary_weight, .. } => Some(*canary_weight),
                        _ => None,
                    }));
                    if applied.is_empty() { requeue_after } else { Some(Duration::ZERO) }
                }
                PassOutcome::Interrupted { .. } => Some(Duration::from_secs(5)),
            };
            let wake = [requeue.map(|r| world.now + SignedDuration::try_from(r).unwrap()), world.next_change()].into_iter().flatten().min();
            let Some(wake) = wake.filter(|w| *w <= start + SignedDuration::from_hours(3)) else { break };
            world.now = wake.max(world.now);
        }
        weights
    };
    let weights = run(&mut world);
    assert!(weights.is_empty(), "no weight moves onto a revision without pods: {weights:?}");
    assert_eq!(world.status.phase, Some(RolloutPhase::Paused), "{:?}", world.status.message);
    let condition = world.status.conditions.iter().find(|c| c.type_ == "ScaledToZero").expect("the ScaledToZero condition");
    assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("True", "ZeroReplicasWithRouter"));
    assert!(world.status.message.as_deref().unwrap().contains("scale the rollout above 0"));

    let mut scaled = world.spec.clone();
    scaled.workload.kubernetes.as_mut().unwrap().replicas = 2;
    world.set_spec(scaled);
    let weights = run(&mut world);
    assert_eq!(world.status.phase, Some(RolloutPhase::Healthy), "{:?}", world.status.message);
    assert!(weights.contains(&50) && weights.contains(&100), "{weights:?}");
    assert!(!world.status.conditions.iter().any(|c| c.type_ == "ScaledToZero"));
}
