//! Drift: the listener's weights and forward action changed in ELBv2 behind Sluice's back, as a
//! person in the console would, while a canary waits at a step with no timer (no pass would
//! come) and at rest. The controller of these tests checks every [`DRIFT_CHECK_INTERVAL`]; the
//! planned weight is back within the interval and a pass, with a TrafficDrift event and
//! condition. Every other test shares that controller, so the last one here holds the whole
//! suite to "no drift where nothing changed".

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_elasticloadbalancingv2 as elbv2;
use elbv2::types::{Action, ActionTypeEnum, FixedResponseActionConfig, ForwardActionConfig, TargetGroupTuple};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;
use sluice::api::{Rollout, RolloutPhase};

use crate::controller::{DRIFT_CHECK_INTERVAL, Harness};
use crate::scenarios::{behind_alb, rollout};
use crate::support::registrar::REGISTRATION_LAG;
use crate::support::scene::Scene;
use crate::support::{alb::listener_weights, wait_for};

/// The namespace prefix of the tests that change ALB rules outside Sluice on purpose.
const PREFIX: &str = "drift";

/// How long a restore may take: a check interval, then a pass and its write.
fn restore_deadline() -> Duration {
    DRIFT_CHECK_INTERVAL + Duration::from_secs(15)
}

async fn set_listener(elb: &elbv2::Client, listener: &str, action: Action) {
    elb.modify_listener().listener_arn(listener).default_actions(action).send().await.expect("ModifyListener");
}

fn forward(weights: &[(&str, i32)]) -> Action {
    let tuples = weights.iter().map(|(arn, w)| TargetGroupTuple::builder().target_group_arn(*arn).weight(*w).build());
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(ForwardActionConfig::builder().set_target_groups(Some(tuples.collect())).build())
        .build()
}

fn drift_condition(rollout: &Rollout) -> Option<(String, String, String)> {
    let status = rollout.status.as_ref()?;
    let condition = status.conditions.iter().find(|c| c.type_ == "TrafficDrift")?;
    Some((condition.status.clone(), condition.reason.clone(), condition.message.clone()))
}

/// Waits until the listener reads `weights` again; returns how long it took from `since`.
async fn restored(elb: &elbv2::Client, listener: &str, groups: (&str, &str), weights: (i32, i32), since: Instant) -> Duration {
    wait_for(&format!("the listener back at {weights:?}"), restore_deadline(), || async {
        (listener_weights(elb, listener, groups.0, groups.1).await == weights).then_some(())
    })
    .await;
    since.elapsed()
}

register_test!(500, weights_and_forward_actions_changed_outside_sluice_are_restored);
async fn weights_and_forward_actions_changed_outside_sluice_are_restored(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, PREFIX, &["web-stable", "web-canary"]).await;
    let (elb, listener, stable, canary) = h.stack.balancer(&format!("drift-{}", std::process::id())).await;
    s.allow_aws(&[&listener, &stable, &canary]).await;
    let _targets = s.bind_target_groups(&elb, &stable, &canary, REGISTRATION_LAG);
    let strategy = json!({"canary": {"stableService": "web-stable", "canaryService": "web-canary",
        "steps": [{"setWeight": 20}, {"pause": {}}]}});
    let mut r = rollout(2, "web:1", strategy);
    behind_alb(&mut r, &listener, &stable, &canary);
    s.create(&r).await;
    s.wait("web:1 at rest", |r| r.status.as_ref().is_some_and(|st| st.phase == Some(RolloutPhase::Healthy))).await;
    s.set_image("web:2").await;
    s.wait("paused at 20 % with 20 % verified", |r| {
        r.status.as_ref().is_some_and(|st| st.phase == Some(RolloutPhase::Paused) && st.verified_weight == Some(20))
    })
    .await;
    assert_eq!(listener_weights(&elb, &listener, &stable, &canary).await, (80, 20));

    // Weights changed by hand while the step waits for a person: nothing else would wake it.
    let changed = Instant::now();
    set_listener(&elb, &listener, forward(&[(&stable, 50), (&canary, 50)])).await;
    let took = restored(&elb, &listener, (&stable, &canary), (80, 20), changed).await;
    println!("  weights 50/50 restored to 80/20 in {} ms", took.as_millis());
    let paused =
        s.wait("the TrafficDrift condition False, Restored", |r| drift_condition(r).is_some_and(|(status, _, _)| status == "False")).await;
    let (_, reason, message) = drift_condition(&paused).expect("the condition");
    assert_eq!(reason, "Restored");
    assert!(message.contains("read canary weight 50% where 20% is planned"), "{message}");
    assert_eq!(paused.status.as_ref().and_then(|st| st.phase), Some(RolloutPhase::Paused), "still waiting at the step");
    let events = s.events().await;
    let drifts: Vec<_> = events.iter().filter(|(reason, _, _)| reason == "TrafficDrift").collect();
    assert_eq!(drifts.len(), 1, "one event for one drift: {events:?}");
    assert!(drifts[0].1.contains("read canary weight 50% where 20% is planned; restoring 20%"), "{:?}", drifts[0]);

    // The forward action replaced by a fixed response: taken back, with both groups at 80/20.
    let changed = Instant::now();
    let outage = Action::builder()
        .r#type(ActionTypeEnum::FixedResponse)
        .fixed_response_config(FixedResponseActionConfig::builder().status_code("503").build())
        .build();
    set_listener(&elb, &listener, outage).await;
    let took = restored(&elb, &listener, (&stable, &canary), (80, 20), changed).await;
    println!("  fixed response reclaimed as a forward at 80/20 in {} ms", took.as_millis());
    s.wait("the forward action's drift said", |r| {
        drift_condition(r).is_some_and(|(_, _, m)| m.contains("a forward action that no longer holds both target groups"))
    })
    .await;

    // At rest after promotion: every request on the stable group, and kept there.
    s.promote_full("drift-promote").await;
    s.wait("web:2 at rest", |r| {
        r.status.as_ref().is_some_and(|st| st.phase == Some(RolloutPhase::Healthy) && st.verified_weight == Some(0))
    })
    .await;
    let changed = Instant::now();
    set_listener(&elb, &listener, forward(&[(&stable, 70), (&canary, 30)])).await;
    let took = restored(&elb, &listener, (&stable, &canary), (100, 0), changed).await;
    println!("  at rest, 70/30 restored to 100/0 in {} ms", took.as_millis());
    // The pass publishes its events after its writes: the listener may read back first.
    let events = wait_for("the drift at rest said", Duration::from_secs(10), || async {
        let events = s.events().await;
        let said = events.iter().any(|(reason, note, _)| reason == "TrafficDrift" && note.contains("read canary weight 30% where 0%"));
        said.then_some(events)
    })
    .await;
    let drifts = events.iter().filter(|(reason, _, _)| reason == "TrafficDrift").count();
    assert_eq!(drifts, 3, "{events:?}");
    let drifted_weights =
        events.iter().filter(|(reason, note, _)| reason == "WeightSet" && (note.contains(" 50%") || note.contains(" 30%")));
    assert_eq!(drifted_weights.count(), 0, "a weight read but not set by Sluice is no WeightSet: {events:?}");
}

register_test!(999, no_drift_is_reported_where_nothing_changed_the_rules);
/// Last of the suite: every test before ran under the same drift checks, and only this file's
/// namespaces changed rules behind Sluice's back.
async fn no_drift_is_reported_where_nothing_changed_the_rules(h: Arc<Harness>) {
    let events: Api<Event> = Api::all(h.stack.kube().await);
    let listed = events.list(&ListParams::default()).await.expect("events listed");
    let elsewhere: Vec<String> = listed
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("TrafficDrift"))
        .filter(|e| !e.metadata.namespace.as_deref().unwrap_or_default().starts_with(PREFIX))
        .map(|e| format!("{}: {}", e.metadata.namespace.as_deref().unwrap_or_default(), e.note.as_deref().unwrap_or_default()))
        .collect();
    assert!(elsewhere.is_empty(), "drift reported where no one changed a rule: {elsewhere:#?}");
}
