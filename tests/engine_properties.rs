//! The engine on arbitrary input: every spec the CRD schema admits (up to its bounds, and past
//! them where a field is not bounded by the schema alone), any status a person or an earlier
//! version may have left, and any observation, at any time. It never panics, and what it asks
//! for stays within range. Run with `PROPTEST_CASES=N` for a longer search.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use serde_json::{Value, json};
use sluice::api::{AnalysisPhase, RolloutCommands, RolloutSpec, RolloutStatus};
use sluice::engine::{self, Action, AnalysisRunObservation, Input, MAX_REPLICAS, Observed, RevisionObservation, TrafficObservation};

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0s".to_string()),
        Just("1ms".to_string()),
        Just("8760h".to_string()),
        (0u32..=8760).prop_map(|h| format!("{h}h")),
        (0u64..=525_600).prop_map(|m| format!("{m}m")),
        (0u64..=31_536_000).prop_map(|s| format!("{s}s")),
    ]
}

fn count_or_percent() -> impl Strategy<Value = Value> {
    prop_oneof![(0..=100_000i32).prop_map(|n| json!(n)), (0..=9999u32).prop_map(|p| json!(format!("{p}%")))]
}

fn analysis() -> impl Strategy<Value = Value> {
    (1usize..=3).prop_map(|n| json!({"templates": (0..n).map(|i| json!({"templateName": format!("t{i}")})).collect::<Vec<_>>()}))
}

fn canary_step() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0..=100i32).prop_map(|w| json!({"setWeight": w})),
        2 => option::of(duration()).prop_map(|d| json!({"pause": d.map_or(json!({}), |d| json!({"duration": d}))})),
        1 => analysis().prop_map(|a| json!({"analysis": a})),
        1 => (0..=100_000i32).prop_map(|r| json!({"setCanaryScale": {"replicas": r}})),
        1 => (0..=100i32).prop_map(|w| json!({"setCanaryScale": {"weight": w}})),
        1 => Just(json!({"setCanaryScale": {"matchTrafficWeight": true}})),
        1 => Just(json!({"setHeaderRoute": {"name": "testers", "match": [{"headerName": "x-canary", "headerValue": {"exact": "1"}}]}})),
        1 => Just(json!({"setHeaderRoute": {"name": "testers"}})),
    ]
}

fn seconds(max: i32) -> impl Strategy<Value = Option<i32>> {
    option::of(prop_oneof![Just(0), Just(max), 0..=max])
}

fn strategy() -> impl Strategy<Value = Value> {
    let canary = (
        vec(canary_step(), 0..=20),
        option::of(count_or_percent()),
        option::of(count_or_percent()),
        seconds(604_800),
        option::of(prop_oneof![Just(-1), 0..=604_800i32]),
        option::of(analysis()),
        any::<bool>(),
    )
        .prop_map(|(steps, surge, unavailable, delay, abort_delay, analysis, services)| {
            let mut canary = json!({"steps": steps});
            let fields = [
                ("maxSurge", surge),
                ("maxUnavailable", unavailable),
                ("scaleDownDelaySeconds", delay.map(|d| json!(d))),
                ("abortScaleDownDelaySeconds", abort_delay.map(|d| json!(d))),
                ("analysis", analysis),
                ("stableService", services.then(|| json!("web-stable"))),
                ("canaryService", services.then(|| json!("web-canary"))),
            ];
            for (key, value) in fields {
                if let Some(value) = value {
                    canary[key] = value;
                }
            }
            json!({"canary": canary})
        });
    let blue_green = (
        any::<bool>(),
        option::of(any::<bool>()),
        seconds(2_592_000),
        option::of(1..=100_000i32),
        seconds(604_800),
        option::of(analysis()),
        option::of(analysis()),
    )
        .prop_map(|(preview, auto, auto_seconds, preview_count, delay, pre, post)| {
            let mut blue_green = json!({"activeService": "web-active"});
            let fields = [
                ("previewService", preview.then(|| json!("web-preview"))),
                ("autoPromotionEnabled", auto.map(|a| json!(a))),
                ("autoPromotionSeconds", auto_seconds.map(|s| json!(s))),
                ("previewReplicaCount", preview_count.map(|c| json!(c))),
                ("scaleDownDelaySeconds", delay.map(|d| json!(d))),
                ("prePromotionAnalysis", pre),
                ("postPromotionAnalysis", post),
            ];
            for (key, value) in fields {
                if let Some(value) = value {
                    blue_green[key] = value;
                }
            }
            json!({"blueGreen": blue_green})
        });
    let rolling = (option::of(count_or_percent()), option::of(count_or_percent()), option::of(analysis())).prop_map(
        |(surge, unavailable, analysis)| {
            let mut rolling = json!({});
            for (key, value) in [("maxSurge", surge), ("maxUnavailable", unavailable), ("analysis", analysis)] {
                if let Some(value) = value {
                    rolling[key] = value;
                }
            }
            json!({"rolling": rolling})
        },
    );
    prop_oneof![3 => canary, 1 => blue_green, 1 => rolling]
}

fn workload() -> impl Strategy<Value = Value> {
    let kubernetes = (0..=100_000i32, 0u8..4).prop_map(|(replicas, version)| {
        json!({"kubernetes": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": format!("web:{version}")}]}}
        }})
    });
    let ecs = (1..=10_000i32, 0u8..4).prop_map(|(desired, version)| {
        json!({"ecs": {
            "cluster": "prod", "service": "web", "taskDefinition": format!("arn:aws:ecs:us-east-1:1:task-definition/web:{version}"),
            "desiredCount": desired, "loadBalancer": {"containerName": "web", "containerPort": 8080}
        }})
    });
    prop_oneof![3 => kubernetes, 1 => ecs]
}

fn traffic() -> impl Strategy<Value = Option<Value>> {
    option::of((any::<bool>(), any::<bool>(), option::of(-10..=200i32)).prop_map(|(test, gradual, healthy)| {
        let mut alb = json!({
            "listenerArn": "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/a/b/c",
            "stableTargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/s/1",
            "canaryTargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/c/2",
        });
        if test {
            alb["testListenerArn"] = json!("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/a/b/t");
        }
        if gradual {
            alb["gradualAbort"] = json!({"weightStep": 25, "interval": "10s"});
        }
        if let Some(healthy) = healthy {
            alb["healthyTargetsPercent"] = json!(healthy);
        }
        json!({"alb": alb})
    }))
}

fn spec() -> impl Strategy<Value = RolloutSpec> {
    (workload(), traffic(), strategy(), seconds(2_592_000), any::<bool>(), any::<bool>()).prop_map(
        |(workload, traffic, strategy, deadline, deadline_abort, paused)| {
            let mut spec = json!({"workload": workload, "strategy": strategy, "paused": paused, "progressDeadlineAbort": deadline_abort});
            if let Some(traffic) = traffic {
                spec["traffic"] = traffic;
            }
            if let Some(deadline) = deadline {
                spec["progressDeadlineSeconds"] = json!(deadline.max(1));
            }
            serde_json::from_value(spec).expect("the generated spec is a RolloutSpec")
        },
    )
}

/// Any instant the API server can store, the ends of time included.
fn instant() -> impl Strategy<Value = Timestamp> {
    let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    prop_oneof![
        Just(Timestamp::MIN),
        Just(Timestamp::MAX),
        (0i64..=4_102_444_800).prop_map(|s| Timestamp::from_second(s).expect("in range")),
        (min..=max).prop_map(|s| Timestamp::from_second(s).expect("in range")),
    ]
}

/// A status as someone may have left it: any step, weight, counts and times, any revisions.
fn status() -> impl Strategy<Value = RolloutStatus> {
    (
        option::of(any::<i32>()),
        any::<i32>(),
        option::of(prop_oneof![Just("old"), Just("older")]),
        any::<i32>(),
        option::of(instant()),
        option::of(instant()),
        vec((prop_oneof![Just("old"), Just("older")], instant()), 0..3),
        vec((0u8..3, instant()), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(step, weight, stable, attempt, progress, ready_at, scale_downs, pauses, abort, switched)| {
            let reasons = ["CanaryPauseStep", "InconclusiveAnalysis", "BlueGreenPause"];
            let at = |t: Timestamp| json!(t.to_string());
            let mut status = json!({
                "canaryWeight": weight,
                "attempt": attempt,
                "abort": abort,
                "switched": switched,
                "scaleDowns": scale_downs.iter().map(|(r, t)| json!({"revision": r, "at": at(*t)})).collect::<Vec<_>>(),
                "pauseConditions": pauses.iter().map(|(r, t)| json!({"reason": reasons[*r as usize], "startTime": at(*t)})).collect::<Vec<_>>(),
            });
            if let Some(step) = step {
                status["currentStepIndex"] = json!(step);
            }
            if let Some(stable) = stable {
                status["stableRevision"] = json!(stable);
            }
            if let Some(progress) = progress {
                status["lastProgressAt"] = at(progress);
            }
            if let Some(ready_at) = ready_at {
                status["previewReadyAt"] = at(ready_at);
            }
            serde_json::from_value(status).expect("the generated status is a RolloutStatus")
        })
}

/// What the platform, router and runs report on one pass; counts are any `i32`, as a broken
/// or hostile platform may report.
#[derive(Clone, Debug)]
struct Report {
    counts: Vec<(i32, i32, i32)>,
    traffic: Option<(Option<i32>, i32, i32)>,
    run_phase: u8,
    services: (Option<u8>, Option<u8>),
    /// Request ids for promote (and whether full), abort and retry; a new id is a new request.
    commands: (Option<(u8, bool)>, Option<u8>, Option<u8>),
    advance: Duration,
}

fn report() -> impl Strategy<Value = Report> {
    (
        vec((any::<i32>(), any::<i32>(), any::<i32>()), 0..4),
        option::of((option::of(any::<i32>()), any::<i32>(), any::<i32>())),
        0u8..6,
        (option::of(0u8..3), option::of(0u8..3)),
        (option::of((0u8..4, any::<bool>())), option::of(0u8..4), option::of(0u8..4)),
        prop_oneof![Just(Duration::ZERO), (0u64..=3600).prop_map(Duration::from_secs), (0u64..=31_536_000).prop_map(Duration::from_secs)],
    )
        .prop_map(|(counts, traffic, run_phase, services, commands, advance)| Report {
            counts,
            traffic,
            run_phase,
            services,
            commands,
            advance,
        })
}

const PHASES: [AnalysisPhase; 6] = [
    AnalysisPhase::Pending,
    AnalysisPhase::Running,
    AnalysisPhase::Successful,
    AnalysisPhase::Failed,
    AnalysisPhase::Error,
    AnalysisPhase::Inconclusive,
];

/// Up to 64 addresses, shared between revisions and groups: any overlap may be reported.
fn addresses(count: i32) -> std::collections::BTreeSet<String> {
    (0..count.clamp(0, 64)).map(|i| format!("10.0.0.{i}")).collect()
}

fn observe(report: &Report, revisions: &[String], runs: &[String]) -> Observed {
    let name = |i: usize| revisions[i % revisions.len()].clone();
    Observed {
        revisions: report
            .counts
            .iter()
            .enumerate()
            .map(|(i, (replicas, ready, available))| RevisionObservation {
                revision: name(i),
                replicas: *replicas,
                ready: *ready,
                available: *available,
                addresses: addresses(*ready),
            })
            .collect(),
        traffic: report.traffic.map(|(canary_weight, stable, canary)| TrafficObservation {
            canary_weight,
            stable_healthy: addresses(stable),
            canary_healthy: addresses(canary),
            last_written: None,
            target_groups: None,
        }),
        analysis_runs: runs
            .iter()
            .map(|run| AnalysisRunObservation { name: run.clone(), phase: PHASES[report.run_phase as usize], message: None })
            .collect(),
        services: sluice::engine::ServiceSelection {
            stable: report.services.0.map(|i| name(i as usize)),
            canary: report.services.1.map(|i| name(i as usize)),
            missing: Vec::new(),
        },
        ..Default::default()
    }
}

fn commands(report: &Report) -> RolloutCommands {
    let (promote, abort, retry) = report.commands;
    serde_json::from_value(json!({
        "promote": promote.map(|(id, full)| json!({"id": format!("p{id}"), "full": full})),
        "abort": abort.map(|id| json!({"id": format!("a{id}")})),
        "retry": retry.map(|id| json!({"id": format!("r{id}")})),
    }))
    .expect("the generated requests are RolloutCommands")
}

fn later(at: Timestamp, by: Duration) -> Timestamp {
    SignedDuration::try_from(by).ok().and_then(|by| at.checked_add(by).ok()).unwrap_or(Timestamp::MAX)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_never_panics_and_asks_only_for_what_is_in_range(
        spec in spec(),
        status in status(),
        start in instant(),
        reports in vec(report(), 1..12),
    ) {
        let update = engine::revision::of(&spec.workload);
        let revisions = vec![update, "old".to_string(), "older".to_string()];
        let mut status = status;
        let mut now = start;
        let mut runs: Vec<String> = Vec::new();
        for report in &reports {
            let observed = observe(report, &revisions, &runs);
            let commands = commands(report);
            let input = Input {
                name: "web",
                generation: Some(1),
                spec: &spec,
                status: &status,
                commands: &commands,
                observed: &observed,
                commit_time: None,
                now,
            };
            let plan = engine::step(input);
            for action in &plan.actions {
                match action {
                    Action::SetWeight { canary_weight, .. } => prop_assert!((0..=100).contains(canary_weight), "{action:?}"),
                    Action::Scale { replicas, .. } => prop_assert!((0..=MAX_REPLICAS).contains(replicas), "{action:?}"),
                    Action::CreateAnalysisRun { name, .. } => runs.push(name.clone()),
                    _ => {}
                }
            }
            prop_assert!(plan.requeue_after.is_none_or(|after| after <= Duration::from_secs(3600)), "{:?}", plan.requeue_after);
            status = plan.status;
            now = later(now, report.advance);
        }
    }
}
