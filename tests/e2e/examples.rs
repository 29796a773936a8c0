//! Every file in examples/ applied with `kubectl apply -f`, as a person applies it, and taken
//! to what its comment promises: the first version Healthy, then a new version through its
//! first gate. Only what the stack alone knows is put in: the namespace, Prometheus' address,
//! moto's ARNs and names, and a local answer for the blue/green smoke test.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sluice::api::{Rollout, RolloutPhase, RolloutStatus};

use crate::controller::Harness;
use crate::scenarios::EcsWorld;
use crate::support::registrar::{REGISTRATION_LAG, Registrar};
use crate::support::scene::{DEADLINE, Scene};
use crate::support::{repo, wait_for};

/// Where the examples' Prometheus is; the stack's is put in its place.
const PROMETHEUS: &str = "http://prometheus.monitoring:9090";

/// The example's text in namespace `ns` (its Namespace and every object's namespace), with each
/// of `replacements` put in.
fn example(file: &str, ns: &str, replacements: &[(&str, &str)]) -> String {
    let path = repo().join("examples").join(file);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (namespace, name) = (format!("namespace: {ns}"), format!("name: {ns}\n"));
    let placed = [("namespace: shop", namespace.as_str()), ("name: shop\n", name.as_str())];
    for (from, to) in placed.iter().chain(replacements) {
        assert!(text.contains(from), "{file} no longer holds {from:?}: update this test with the example");
        text = text.replace(from, to);
    }
    text
}

fn status(rollout: &Rollout) -> RolloutStatus {
    rollout.status.clone().unwrap_or_default()
}

async fn wait(api: &Api<Rollout>, name: &str, what: &str, deadline: Duration, check: impl Fn(&RolloutStatus) -> bool) -> Rollout {
    wait_for(what, deadline, || async {
        let rollout = api.get(name).await.ok()?;
        let seen = status(&rollout).observed_generation == rollout.metadata.generation;
        (seen && check(&status(&rollout))).then_some(rollout)
    })
    .await
}

async fn healthy(api: &Api<Rollout>, name: &str) -> Rollout {
    wait(api, name, &format!("{name} Healthy"), DEADLINE, |s| s.phase == Some(RolloutPhase::Healthy)).await
}

/// The paused state of a canary step: the step index, its weight verified, paused.
fn paused_at(status: &RolloutStatus, step: i32, weight: i32) -> bool {
    status.phase == Some(RolloutPhase::Paused) && status.current_step_index == Some(step) && status.verified_weight == Some(weight)
}

async fn set_image(api: &Api<Rollout>, name: &str, container: &str, image: &str) {
    let patch =
        json!({"spec": {"workload": {"kubernetes": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("image set");
}

/// Counters for `http_requests_total{service}`: `ok` answers and no 5xx, over the last minute.
async fn good_traffic(h: &Harness, service: &str) {
    let now = jiff::Timestamp::now().as_millisecond();
    for code in ["200", "500"] {
        let samples: Vec<(f64, i64)> =
            (0..7).map(|i| (if code == "200" { f64::from(i) * 100.0 } else { 0.0 }, now - 60_000 + i64::from(i) * 10_000)).collect();
        h.stack.push_series("http_requests_total", &[("service", service), ("code", code)], &samples).await;
    }
}

register_test!(400, the_first_rollout_in_the_readme_runs_as_written);
pub async fn the_first_rollout_in_the_readme_runs_as_written(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "example-first", &[]).await;
    h.stack.apply(&example("first-rollout.yaml", &s.ns, &[(PROMETHEUS, &h.stack.prometheus_url)]));
    healthy(&s.rollouts, "checkout").await;
    set_image(&s.rollouts, "checkout", "checkout", "nginx:1.28").await;
    wait(&s.rollouts, "checkout", "25 % (1 of 4 pods) for a minute", DEADLINE, |s| paused_at(s, 1, 25)).await;
}

register_test!(410, the_replica_ratio_canary_example_takes_ten_percent_and_pauses);
pub async fn the_replica_ratio_canary_example_takes_ten_percent_and_pauses(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "example-canary", &[]).await;
    h.stack.apply(&example("canary.yaml", &s.ns, &[(PROMETHEUS, &h.stack.prometheus_url)]));
    healthy(&s.rollouts, "checkout").await;
    set_image(&s.rollouts, "checkout", "checkout", "example.com/shop/checkout:2.1.0").await;
    wait(&s.rollouts, "checkout", "10 % (1 of 10 pods) for 2 minutes", DEADLINE, |s| paused_at(s, 1, 10)).await;
}

register_test!(420, the_alb_canary_example_moves_five_percent_on_the_listener);
pub async fn the_alb_canary_example_moves_five_percent_on_the_listener(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "example-alb", &[]).await;
    let (elb, listener, stable, canary) = h.stack.balancer(&format!("example-alb-{}", std::process::id())).await;
    s.allow_aws(&[&listener, &stable, &canary]).await;
    let _targets = [("checkout-stable", &stable), ("checkout-canary", &canary)]
        .map(|(service, group)| Registrar::bind(s.client.clone(), &s.ns, service, elb.clone(), group, REGISTRATION_LAG));
    good_traffic(&h, "checkout").await;
    let placeholders = [
        (PROMETHEUS, h.stack.prometheus_url.as_str()),
        ("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2", listener.as_str()),
        ("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-stable/6d0ecf831eec9f09", stable.as_str()),
        ("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/checkout-canary/a1b2c3d4e5f60718", canary.as_str()),
    ];
    h.stack.apply(&example("canary-alb.yaml", &s.ns, &placeholders));
    healthy(&s.rollouts, "checkout").await;
    set_image(&s.rollouts, "checkout", "checkout", "example.com/shop/checkout:2.1.0").await;
    wait(&s.rollouts, "checkout", "5 % on the listener for a minute", DEADLINE, |s| paused_at(s, 1, 5)).await;
    assert_eq!(crate::support::alb::listener_weights(&elb, &listener, &stable, &canary).await, (95, 5));
}

/// Answers `{"ok": 1}`: the blue/green example's smoke endpoint.
async fn smoke_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a local port");
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/healthz/deep", axum::routing::get(|| async { axum::Json(json!({"ok": 1})) }));
    let serving = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}/healthz/deep"), serving)
}

register_test!(430, the_blue_green_example_passes_its_smoke_test_and_promotes_itself);
pub async fn the_blue_green_example_passes_its_smoke_test_and_promotes_itself(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "example-bg", &[]).await;
    let (smoke, serving) = smoke_endpoint().await;
    h.stack.apply(&example("blue-green.yaml", &s.ns, &[("http://payments-preview.shop/healthz/deep", &smoke)]));
    let first = healthy(&s.rollouts, "payments").await;
    set_image(&s.rollouts, "payments", "payments", "example.com/shop/payments:5.2.0").await;
    let update = wait(&s.rollouts, "payments", "the new version previewed", DEADLINE, |s| s.update_revision != s.stable_revision).await;
    let update = status(&update).update_revision.unwrap();
    // Two smoke measurements 20 s apart, then 60 s of auto-promotion after the preview is ready.
    let promoted = wait(&s.rollouts, "payments", "promoted by itself", DEADLINE + Duration::from_secs(60), |s| {
        s.phase == Some(RolloutPhase::Healthy) && s.stable_revision.as_deref() == Some(update.as_str())
    })
    .await;
    assert_ne!(status(&first).stable_revision, status(&promoted).stable_revision);
    serving.abort();
}

register_test!(440, the_rolling_example_replaces_every_pod_under_its_latency_analysis);
pub async fn the_rolling_example_replaces_every_pod_under_its_latency_analysis(h: Arc<Harness>) {
    let s = Scene::new(&h.stack, "example-rolling", &[]).await;
    // A p99 of 0.1 s, well under the template's 0.5 s.
    let now = jiff::Timestamp::now().as_millisecond();
    for bucket in ["0.1", "0.5", "+Inf"] {
        let samples: Vec<(f64, i64)> = (0..7).map(|i| (f64::from(i) * 50.0, now - 60_000 + i64::from(i) * 10_000)).collect();
        h.stack.push_series("http_request_duration_seconds_bucket", &[("app", "search"), ("le", bucket)], &samples).await;
    }
    h.stack.apply(&example("rolling.yaml", &s.ns, &[(PROMETHEUS, &h.stack.prometheus_url)]));
    let first = healthy(&s.rollouts, "search").await;
    set_image(&s.rollouts, "search", "search", "example.com/shop/search:3.5.0").await;
    let done = wait(&s.rollouts, "search", "every pod replaced", DEADLINE, |s| {
        s.phase == Some(RolloutPhase::Healthy) && s.stable_revision == s.update_revision && s.updated_replicas == 8
    })
    .await;
    assert_ne!(status(&first).stable_revision, status(&done).stable_revision);
}

/// An ECS example with its cluster, service, task definition, network and ALB put in from moto.
async fn ecs_example(h: &Harness, s: &Scene, world: &EcsWorld, file: &str, extra: &[(&str, &str)]) -> String {
    let v1 = world.task_definition("orders:1").await;
    let cluster = format!("cluster: {}", world.cluster);
    let mut placeholders = vec![
        ("cluster: shop", cluster.as_str()),
        ("arn:aws:ecs:us-east-1:123456789012:task-definition/orders:42", v1.as_str()),
        ("subnet-0a1b2c3d4e5f60718", world.subnet.as_str()),
        ("sg-0123456789abcdef0", world.group.as_str()),
        (
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2",
            world.listener.as_str(),
        ),
        ("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/orders-blue/6d0ecf831eec9f09", world.blue.as_str()),
        ("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/orders-green/a1b2c3d4e5f60718", world.green.as_str()),
    ];
    placeholders.extend_from_slice(extra);
    h.stack.apply(&example(file, &s.ns, &placeholders));
    healthy(&s.rollouts, "orders").await;
    let v2 = world.task_definition("orders:2").await;
    let patch = json!({"spec": {"workload": {"ecs": {"taskDefinition": v2}}}});
    s.rollouts.patch("orders", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("task definition set");
    v2
}

async fn ecs_scene(h: &Harness, prefix: &str) -> (Scene, EcsWorld) {
    let s = Scene::new(&h.stack, prefix, &[]).await;
    let world = EcsWorld::new(h, &format!("{prefix}-{}", std::process::id())).await;
    world.allow_in(&s, &[]).await;
    (s, world)
}

register_test!(450, the_ecs_all_at_once_example_moves_all_traffic_when_ready);
pub async fn the_ecs_all_at_once_example_moves_all_traffic_when_ready(h: Arc<Harness>) {
    let (s, world) = ecs_scene(&h, "example-ecs-once").await;
    let v2 = ecs_example(&h, &s, &world, "ecs-all-at-once.yaml", &[]).await;
    wait(&s.rollouts, "orders", "the new task set stable", DEADLINE, |status| {
        status.phase == Some(RolloutPhase::Healthy) && status.stable_revision == status.update_revision && status.update_revision.is_some()
    })
    .await;
    wait_for("only the new task set left", DEADLINE, || async { (world.task_sets().await == vec![v2.clone()]).then_some(()) }).await;
    assert_eq!(world.weights().await, (0, 100), "all traffic on the new task set's target group");
}

register_test!(460, the_ecs_canary_example_takes_ten_percent_under_its_alarm);
pub async fn the_ecs_canary_example_takes_ten_percent_under_its_alarm(h: Arc<Harness>) {
    let (s, world) = ecs_scene(&h, "example-ecs-canary").await;
    let alarm = format!("orders-target-5xx-{}", s.ns);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&h.stack.aws().to_builder().endpoint_url(&h.cloudwatch.address).build());
    cloudwatch
        .put_metric_alarm()
        .alarm_name(&alarm)
        .namespace("AWS/ApplicationELB")
        .metric_name("HTTPCode_Target_5XX_Count")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(10.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
    cloudwatch
        .set_alarm_state()
        .alarm_name(&alarm)
        .state_value(aws_sdk_cloudwatch::types::StateValue::Ok)
        .state_reason("no 5xx")
        .send()
        .await
        .expect("SetAlarmState");
    let alarm_name = format!("alarmName: {alarm}");
    ecs_example(&h, &s, &world, "ecs-canary-10-percent-5-minutes.yaml", &[("alarmName: orders-target-5xx", &alarm_name)]).await;
    wait(&s.rollouts, "orders", "10 % for 5 minutes", DEADLINE, |s| paused_at(s, 1, 10)).await;
    assert_eq!(world.weights().await, (90, 10));
}

register_test!(470, the_ecs_linear_example_takes_its_first_ten_percent);
pub async fn the_ecs_linear_example_takes_its_first_ten_percent(h: Arc<Harness>) {
    let (s, world) = ecs_scene(&h, "example-ecs-linear").await;
    ecs_example(&h, &s, &world, "ecs-linear-10-percent-every-1-minute.yaml", &[]).await;
    wait(&s.rollouts, "orders", "10 % for the first minute", DEADLINE, |s| paused_at(s, 1, 10)).await;
    assert_eq!(world.weights().await, (90, 10));
}

register_test!(480, the_ecs_blue_green_example_previews_on_the_test_listener_until_promoted);
pub async fn the_ecs_blue_green_example_previews_on_the_test_listener_until_promoted(h: Arc<Harness>) {
    let (s, world) = ecs_scene(&h, "example-ecs-bg").await;
    let test_listener = world.test_listener().await;
    world.allow_in(&s, &[&test_listener]).await;
    ecs_example(
        &h,
        &s,
        &world,
        "ecs-blue-green.yaml",
        &[("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/50dc6c495c0c9188/0a1b2c3d4e5f6071", &test_listener)],
    )
    .await;
    wait(&s.rollouts, "orders", "waiting for the manual promotion", DEADLINE, |s| {
        s.phase == Some(RolloutPhase::Paused) && !s.pause_conditions.is_empty()
    })
    .await;
    assert_eq!(world.weights().await, (100, 0), "production stays on the stable task set");
    assert_eq!(world.weights_on(&test_listener).await, (0, 100), "the test listener reaches the new task set");
}
