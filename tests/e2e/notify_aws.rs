//! Notifications to SNS topics and EventBridge buses, read back as a subscriber would: from SQS
//! queues subscribed to the topics and targeted by rules on the buses, all in moto.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_eventbridge as eventbridge;
use aws_sdk_sns as sns;
use aws_sdk_sqs as sqs;
use serde_json::{Value, json};
use sluice::api::RolloutPhase;

use crate::controller::Harness;
use crate::scenarios::rollout;
use crate::support::scene::{DEADLINE, Scene};
use crate::support::{Stack, wait_for};

/// An SQS queue of one region, read back whole.
struct Queue {
    client: sqs::Client,
    url: String,
    arn: String,
}

impl Queue {
    async fn create(config: &aws_config::SdkConfig, name: &str) -> Queue {
        let client = sqs::Client::new(config);
        let url = client.create_queue().queue_name(name).send().await.expect("queue created").queue_url.unwrap();
        let attributes = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes");
        let arn = attributes.attributes().unwrap()[&sqs::types::QueueAttributeName::QueueArn].clone();
        Queue { client, url, arn }
    }

    /// Every message waiting, each parsed as JSON, taken off the queue.
    async fn drain(&self) -> Vec<Value> {
        let mut got = Vec::new();
        loop {
            let answer = self.client.receive_message().queue_url(&self.url).max_number_of_messages(10).send().await.expect("received");
            let messages = answer.messages();
            if messages.is_empty() {
                return got;
            }
            for message in messages {
                got.push(serde_json::from_str(message.body().unwrap()).expect("a JSON message"));
                self.client.delete_message().queue_url(&self.url).receipt_handle(message.receipt_handle().unwrap()).send().await.unwrap();
            }
        }
    }
}

fn in_region(stack: &Stack, region: &'static str) -> aws_config::SdkConfig {
    stack.aws().to_builder().region(aws_config::Region::new(region)).build()
}

/// A topic with a queue subscribed to it (the SNS envelope in each message body).
async fn topic(stack: &Stack, name: &str) -> (String, Queue) {
    let config = stack.aws();
    let queue = Queue::create(&config, name).await;
    let sns = sns::Client::new(&config);
    let arn = sns.create_topic().name(name).send().await.expect("topic created").topic_arn.unwrap();
    sns.subscribe().topic_arn(&arn).protocol("sqs").endpoint(&queue.arn).send().await.expect("subscribed");
    (arn, queue)
}

/// A bus in `region` with a rule on Sluice's source whose target is a queue.
async fn bus(stack: &Stack, region: &'static str, name: &str) -> (String, Queue) {
    let config = in_region(stack, region);
    let queue = Queue::create(&config, name).await;
    let events = eventbridge::Client::new(&config);
    let arn = events.create_event_bus().name(name).send().await.expect("bus created").event_bus_arn.unwrap();
    let pattern = json!({"source": [sluice::notify::aws::EVENT_SOURCE]}).to_string();
    events.put_rule().name("sluice").event_bus_name(name).event_pattern(pattern).send().await.expect("rule put");
    let target = eventbridge::types::Target::builder().id("queue").arn(&queue.arn).build().unwrap();
    events.put_targets().rule("sluice").event_bus_name(name).targets(target).send().await.expect("target put");
    (arn, queue)
}

/// The CDEvents of namespace `ns` in SNS envelopes, with their message attributes checked.
fn from_sns(envelopes: &[Value], ns: &str) -> Vec<Value> {
    envelopes
        .iter()
        .map(|envelope| {
            let event: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).expect("the message is a CDEvent");
            let attributes = &envelope["MessageAttributes"];
            assert_eq!(attributes["cdevents_id"]["Value"], event["context"]["id"], "{envelope}");
            assert_eq!(attributes["cdevents_type"]["Value"], event["context"]["type"], "{envelope}");
            event
        })
        .filter(|event| event["customData"]["namespace"] == ns)
        .collect()
}

/// The CDEvents of namespace `ns` in EventBridge events, with their envelope checked.
fn from_eventbridge(envelopes: &[Value], ns: &str) -> Vec<Value> {
    envelopes
        .iter()
        .map(|envelope| {
            assert_eq!(envelope["source"], "sluice.dev", "{envelope}");
            assert_eq!(envelope["detail-type"], envelope["detail"]["context"]["type"], "{envelope}");
            envelope["detail"].clone()
        })
        .filter(|event| event["customData"]["namespace"] == ns)
        .collect()
}

/// Reads `queue` until `count` CDEvents of `ns` came, then a little longer for any extra one.
async fn read(queue: &Queue, count: usize, parse: impl Fn(&[Value]) -> Vec<Value>) -> Vec<Value> {
    let got = std::sync::Mutex::new(Vec::new());
    wait_for(&format!("{count} CDEvents"), DEADLINE, || async {
        let more = queue.drain().await;
        let mut got = got.lock().unwrap();
        got.extend(more);
        (parse(&got).len() >= count).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut got = got.into_inner().unwrap();
    got.extend(queue.drain().await);
    parse(&got)
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["context"]["type"].as_str().unwrap().trim_start_matches("dev.cdevents.")).collect()
}

fn sample(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok()).unwrap_or(0.0)
}

register_test!(600, a_rollouts_deployments_reach_sns_and_eventbridge_as_cdevents);
/// A canary started, promoted, then aborted, told to the Rollout's own topic and to its own bus
/// in another region, and to the controller's topic, which its namespace does not list.
pub async fn a_rollouts_deployments_reach_sns_and_eventbridge_as_cdevents(h: Arc<Harness>) {
    let id = std::process::id();
    let (own_topic, topic_queue) = topic(&h.stack, &format!("deploys-{id}")).await;
    let (own_bus, bus_queue) = bus(&h.stack, "eu-west-1", &format!("delivery-{id}")).await;
    let (platform_topic, platform_queue) = topic(&h.stack, &format!("platform-{id}")).await;
    h.kill("main");
    h.start("main", &["--webhook-url", &platform_topic]);

    let s = Scene::new(&h.stack, "cdevents", &[]).await;
    s.allow_aws(&[&own_topic, &own_bus]).await;
    let mut web = rollout(1, "web:1", json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}));
    web.metadata.annotations = Some([(sluice::notify::ANNOTATION.to_string(), format!("{own_topic}, {own_bus}"))].into());
    s.create(&web).await;
    let first = s.wait_phase(RolloutPhase::Healthy).await.status.unwrap().stable_revision.unwrap();
    s.set_image("web:2").await;
    s.wait("the manual pause of web:2", |r| r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Paused)).await;
    s.command("promote", "p-1").await;
    let second = s.wait_phase(RolloutPhase::Healthy).await.status.unwrap().stable_revision.unwrap();
    assert_ne!(first, second);
    s.set_image("web:3").await;
    s.wait("the manual pause of web:3", |r| r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Paused)).await;
    s.command("abort", "a-1").await;
    s.wait_phase(RolloutPhase::Degraded).await;

    let expected = [
        "pipelinerun.started.0.2.0",
        "service.deployed.0.2.0",
        "pipelinerun.started.0.2.0",
        "service.upgraded.0.2.0",
        "service.deployed.0.2.0",
        "pipelinerun.started.0.2.0",
        "service.rolledback.0.2.0",
    ];
    let ns = s.ns.clone();
    let on_topic = read(&topic_queue, expected.len(), |m| from_sns(m, &ns)).await;
    assert_eq!(types(&on_topic), expected, "{on_topic:#?}");
    let on_bus = read(&bus_queue, expected.len(), |m| from_eventbridge(m, &ns)).await;
    assert_eq!(types(&on_bus), expected, "the bus in eu-west-1 got the same: {on_bus:#?}");
    let on_platform = read(&platform_queue, expected.len(), |m| from_sns(m, &ns)).await;
    assert_eq!(types(&on_platform), expected, "the controller's own topic is trusted: {on_platform:#?}");

    let ids = |events: &[Value]| events.iter().map(|e| e["context"]["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let mut unique = ids(&on_topic);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), expected.len(), "one id per notification");
    assert_eq!(ids(&on_bus), ids(&on_topic), "each notification has the same id everywhere");
    for event in &on_topic {
        assert_eq!(event["context"]["version"], "0.4.1");
        assert_eq!(event["context"]["source"], format!("/apis/sluice.dev/v1alpha1/namespaces/{ns}/rollouts/web"));
        assert!(event["context"]["timestamp"].as_str().unwrap().parse::<jiff::Timestamp>().is_ok(), "{event}");
    }
    let artifact = |event: &Value| event["subject"]["content"]["artifactId"].as_str().unwrap().to_string();
    assert_eq!(on_topic[1]["subject"]["id"], format!("{ns}/web"));
    assert_eq!(on_topic[1]["subject"]["content"]["environment"]["id"], ns.as_str());
    assert_eq!(artifact(&on_topic[1]), format!("pkg:generic/{ns}/web@{first}"), "web:1 deployed");
    assert_eq!(artifact(&on_topic[3]), format!("pkg:generic/{ns}/web@{second}"), "upgraded to web:2");
    assert_eq!(artifact(&on_topic[6]), format!("pkg:generic/{ns}/web@{second}"), "rolled back to web:2, not to web:3");
    assert_eq!(on_topic[2]["subject"]["type"], "pipelineRun");
    assert_eq!(on_topic[2]["subject"]["id"], format!("{ns}/web/{second}"), "the run of web:2");
    assert_eq!(on_topic[6]["customData"]["reason"], "Aborted");

    s.wait("the outbox emptied", |r| r.status.as_ref().is_some_and(|s| s.notifications.is_empty())).await;
    h.kill("main");
    h.start("main", &[]);
}

register_test!(601, a_rollouts_topic_its_namespace_does_not_allow_is_never_published);
/// The namespace allows the Rollout's bus but not its topic: the bus gets every CDEvent, the topic
/// none; each one denied is counted and the log says how to allow it. The Rollout is not held.
pub async fn a_rollouts_topic_its_namespace_does_not_allow_is_never_published(h: Arc<Harness>) {
    let id = std::process::id();
    let (topic_arn, topic_queue) = topic(&h.stack, &format!("unlisted-{id}")).await;
    let (bus_arn, bus_queue) = bus(&h.stack, "us-east-1", &format!("listed-{id}")).await;
    let denied_before = sample(&h.metrics("main").await, r#"sluice_notifications_total{outcome="denied"}"#);
    let s = Scene::new(&h.stack, "cdevents-denied", &[]).await;
    s.allow_aws(&[&bus_arn]).await;
    let mut web = rollout(1, "web:1", json!({"canary": {"steps": [{"setWeight": 50}]}}));
    web.metadata.annotations = Some([(sluice::notify::ANNOTATION.to_string(), format!("{topic_arn},{bus_arn}"))].into());
    s.create(&web).await;
    s.wait_phase(RolloutPhase::Healthy).await;

    let ns = s.ns.clone();
    let on_bus = read(&bus_queue, 2, |m| from_eventbridge(m, &ns)).await;
    assert_eq!(types(&on_bus), ["pipelinerun.started.0.2.0", "service.deployed.0.2.0"]);
    s.wait("the outbox emptied", |r| r.status.as_ref().is_some_and(|s| s.notifications.is_empty())).await;
    assert!(topic_queue.drain().await.is_empty(), "nothing was published to the topic the namespace does not allow");
    let denied = sample(&h.metrics("main").await, r#"sluice_notifications_total{outcome="denied"}"#) - denied_before;
    assert_eq!(denied, 2.0, "both notifications denied for the topic");
    let log = h.log("main");
    let warning = log.lines().find(|l| l.contains("not published") && l.contains(&topic_arn)).expect("a warning names the topic");
    assert!(warning.contains(sluice::engine::tenancy::ALLOWED_AWS_RESOURCES_ANNOTATION) && warning.contains(&ns), "{warning}");
}

register_test!(602, a_failing_destination_never_holds_the_rollout);
/// Ten topics and buses that do not exist fail every delivery, while the Rollout goes through its
/// timed steps at their pace and its one live bus gets every CDEvent; the failures stay in the
/// outbox, to be tried again.
pub async fn a_failing_destination_never_holds_the_rollout(h: Arc<Harness>) {
    let id = std::process::id();
    let (live, live_queue) = bus(&h.stack, "us-east-1", &format!("live-{id}")).await;
    let mut destinations: Vec<String> = (0..5).map(|i| format!("arn:aws:sns:us-east-1:123456789012:missing-{id}-{i}")).collect();
    destinations.extend((0..5).map(|i| format!("arn:aws:events:us-west-2:123456789012:event-bus/missing-{id}-{i}")));
    destinations.push(live.clone());
    let failed_before = sample(&h.metrics("main").await, r#"sluice_notifications_total{outcome="failed"}"#);
    let s = Scene::new(&h.stack, "cdevents-failing", &[]).await;
    s.allow_aws(&[&format!("arn:aws:*:*:123456789012:*missing-{id}-*"), &live]).await;
    let steps =
        json!({"canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "1s"}}, {"setWeight": 60}, {"pause": {"duration": "1s"}}]}});
    let mut web = rollout(1, "web:1", steps);
    web.metadata.annotations = Some([(sluice::notify::ANNOTATION.to_string(), destinations.join(","))].into());
    s.create(&web).await;
    s.wait_phase(RolloutPhase::Healthy).await;
    let started = std::time::Instant::now();
    s.set_image("web:2").await;
    s.wait_phase(RolloutPhase::Healthy).await;
    assert!(started.elapsed() < Duration::from_secs(30), "the canary took {:?}", started.elapsed());

    let ns = s.ns.clone();
    let on_bus = read(&live_queue, 5, |m| from_eventbridge(m, &ns)).await;
    assert_eq!(
        types(&on_bus),
        [
            "pipelinerun.started.0.2.0",
            "service.deployed.0.2.0",
            "pipelinerun.started.0.2.0",
            "service.upgraded.0.2.0",
            "service.deployed.0.2.0"
        ]
    );
    let failed = wait_for("the failures counted", DEADLINE, || async {
        let failed = sample(&h.metrics("main").await, r#"sluice_notifications_total{outcome="failed"}"#) - failed_before;
        (failed >= 50.0).then_some(failed)
    })
    .await;
    assert!(failed >= 50.0, "five notifications failed at each of the ten: {failed}");
    let waiting = s.rollouts.get("web").await.unwrap().status.unwrap().notifications;
    assert!(!waiting.is_empty(), "undelivered notifications wait in the outbox to be tried again");
}
