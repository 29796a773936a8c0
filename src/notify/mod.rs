//! Webhook notifications of rollout events: a JSON payload (or a Slack-compatible `{"text"}`)
//! POSTed to URLs configured for the controller or per Rollout.
//!
//! Delivery never holds a rollout up: `notify` only queues (a full queue drops and counts), and
//! one background task per URL posts in order, with a short timeout and a couple of retries.
//! Failures are logged and counted in `sluice_notifications_total{outcome}`, never returned.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::warn;

use crate::api::{Rollout, RolloutStatus};
use crate::controller::OutcomeLabel;
use crate::engine::{Event, EventReason};

/// Comma-separated URLs notified of this Rollout's events, besides the controller's own.
pub const ANNOTATION: &str = "sluice.dev/notify-webhook";
/// A URL written `slack+https://...` gets a Slack-compatible payload.
const SLACK_PREFIX: &str = "slack+";

const QUEUE: usize = 1024;
const QUEUE_PER_URL: usize = 256;
/// URLs with a delivery task of their own; notifications to more are dropped (and counted).
const MAX_URLS: usize = 64;
const TIMEOUT: Duration = Duration::from_secs(3);
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Json,
    Slack,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub url: String,
    pub format: Format,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (format, url) = match text.strip_prefix(SLACK_PREFIX) {
            Some(url) => (Format::Slack, url),
            None => (Format::Json, text),
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`{text}` is not an http(s) URL (prefix it with slack+ for a Slack-compatible payload)"));
        }
        Ok(Target { url: url.to_string(), format })
    }
}

/// The URLs of a Rollout's annotation; the ones that do not parse are reported.
pub fn targets_of(rollout: &Rollout) -> (Vec<Target>, Vec<String>) {
    let Some(value) = rollout.annotations().get(ANNOTATION) else { return (Vec::new(), Vec::new()) };
    let (mut targets, mut problems) = (Vec::new(), Vec::new());
    for entry in value.split(',').filter(|e| !e.trim().is_empty()) {
        match entry.parse() {
            Ok(target) => targets.push(target),
            Err(problem) => problems.push(problem),
        }
    }
    (targets, problems)
}

/// The events people are told about, named for them.
pub fn reason_of(reason: EventReason) -> Option<&'static str> {
    match reason {
        EventReason::RolloutStarted | EventReason::NewRevision | EventReason::Retried => Some("Started"),
        EventReason::StepCompleted => Some("StepCompleted"),
        EventReason::Paused => Some("Paused"),
        EventReason::Promoted => Some("Promoted"),
        EventReason::Aborted => Some("Aborted"),
        EventReason::Completed => Some("Healthy"),
        EventReason::WeightSet
        | EventReason::AnalysisStarted
        | EventReason::AnalysisPassed
        | EventReason::AnalysisFailed
        | EventReason::AnalysisInconclusive
        | EventReason::Resumed
        | EventReason::ProgressDeadlineExceeded
        | EventReason::InvalidSpec
        | EventReason::TenancyRefused
        | EventReason::ReconcileFailed => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Payload {
    pub rollout: String,
    pub namespace: String,
    pub reason: &'static str,
    pub message: String,
    /// The revision the spec asks for.
    pub revision: Option<String>,
    pub phase: Option<String>,
    pub step: Option<i32>,
    /// RFC 3339.
    pub time: String,
}

/// The payloads of one pass's events, with the status the pass wrote.
pub fn payloads(namespace: &str, rollout: &str, status: &RolloutStatus, events: &[Event], now: Timestamp) -> Vec<Payload> {
    events
        .iter()
        .filter_map(|event| {
            Some(Payload {
                rollout: rollout.to_string(),
                namespace: namespace.to_string(),
                reason: reason_of(event.reason)?,
                message: event.message.clone(),
                revision: status.update_revision.clone(),
                phase: status.phase.map(|p| p.to_string()),
                step: status.current_step_index,
                time: now.to_string(),
            })
        })
        .collect()
}

/// What is POSTed to a URL of this format.
pub fn body(format: Format, payload: &Payload) -> serde_json::Value {
    match format {
        Format::Json => serde_json::to_value(payload).expect("payload serializes"),
        Format::Slack => {
            let mut text = format!("*{}/{}* {}: {}", payload.namespace, payload.rollout, payload.reason, payload.message);
            if let Some(revision) = &payload.revision {
                text.push_str(&format!(" (revision {revision})"));
            }
            serde_json::json!({ "text": text })
        }
    }
}

struct Delivery {
    target: Target,
    body: serde_json::Value,
}

/// Queues notifications for the background delivery task; cheap to call from a reconcile.
pub struct Notifier {
    queue: mpsc::Sender<Delivery>,
    global: Vec<Target>,
    outcomes: Family<OutcomeLabel, Counter>,
}

impl Notifier {
    /// Starts the delivery task on the current Tokio runtime.
    pub fn start(global: Vec<Target>, outcomes: Family<OutcomeLabel, Counter>) -> Self {
        let (queue, received) = mpsc::channel(QUEUE);
        let client = reqwest::Client::builder().timeout(TIMEOUT).build().expect("HTTP client builds");
        tokio::spawn(dispatch(received, client, outcomes.clone()));
        Self { queue, global, outcomes }
    }

    pub fn notify(&self, rollout: &Rollout, status: &RolloutStatus, events: &[Event]) {
        let (own, problems) = targets_of(rollout);
        for problem in problems {
            warn!(rollout = %rollout.name_any(), annotation = ANNOTATION, "{problem}");
        }
        if self.global.is_empty() && own.is_empty() {
            return;
        }
        let payloads = payloads(&rollout.namespace().unwrap_or_default(), &rollout.name_any(), status, events, Timestamp::now());
        for payload in &payloads {
            for target in self.global.iter().chain(&own) {
                let delivery = Delivery { target: target.clone(), body: body(target.format, payload) };
                if self.queue.try_send(delivery).is_err() {
                    self.outcomes.get_or_create(&OutcomeLabel { outcome: "dropped" }).inc();
                    warn!(url = %target.url, "notification queue full; notification dropped");
                }
            }
        }
    }
}

/// Hands each delivery to its URL's task, so a slow URL delays only itself and each URL gets
/// its notifications in order.
async fn dispatch(mut received: mpsc::Receiver<Delivery>, client: reqwest::Client, outcomes: Family<OutcomeLabel, Counter>) {
    let mut per_url: HashMap<String, mpsc::Sender<Delivery>> = HashMap::new();
    while let Some(delivery) = received.recv().await {
        per_url.retain(|_, sender| !sender.is_closed());
        let url = delivery.target.url.clone();
        if !per_url.contains_key(&url) && per_url.len() < MAX_URLS {
            let (sender, queue) = mpsc::channel(QUEUE_PER_URL);
            tokio::spawn(deliver(queue, client.clone(), outcomes.clone()));
            per_url.insert(url.clone(), sender);
        }
        let queued = per_url.get(&url).is_some_and(|sender| sender.try_send(delivery).is_ok());
        if !queued {
            outcomes.get_or_create(&OutcomeLabel { outcome: "dropped" }).inc();
            warn!(%url, "notification queue for this URL full; notification dropped");
        }
    }
}

async fn deliver(mut queue: mpsc::Receiver<Delivery>, client: reqwest::Client, outcomes: Family<OutcomeLabel, Counter>) {
    while let Some(delivery) = queue.recv().await {
        let mut attempt = 0;
        let outcome = loop {
            let error = match client.post(&delivery.target.url).json(&delivery.body).send().await {
                Ok(response) if response.status().is_success() => break "delivered",
                Ok(response) => format!("answered {}", response.status()),
                Err(error) => error.to_string(),
            };
            match RETRY_DELAYS.get(attempt) {
                Some(delay) => {
                    attempt += 1;
                    tokio::time::sleep(*delay).await;
                }
                None => {
                    warn!(url = %delivery.target.url, %error, "notification not delivered after {} attempts", attempt + 1);
                    break "failed";
                }
            }
        };
        outcomes.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RolloutPhase;

    fn event(reason: EventReason, message: &str) -> Event {
        Event { reason, message: message.into() }
    }

    fn rollout() -> Rollout {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"workload": {}, "strategy": {}}
        }))
        .unwrap()
    }

    fn status() -> RolloutStatus {
        RolloutStatus {
            phase: Some(RolloutPhase::Paused),
            update_revision: Some("7f9c2".into()),
            current_step_index: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn the_json_payload_carries_the_rollout_the_reason_and_where_it_stands() {
        let now: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        let events = [event(EventReason::Paused, "paused: CanaryPauseStep"), event(EventReason::WeightSet, "canary weight is 50%")];
        let payloads = payloads("shop", "checkout", &status(), &events, now);
        assert_eq!(payloads.len(), 1, "weight changes are not notified");
        assert_eq!(
            body(Format::Json, &payloads[0]),
            serde_json::json!({
                "rollout": "checkout", "namespace": "shop", "reason": "Paused", "message": "paused: CanaryPauseStep",
                "revision": "7f9c2", "phase": "Paused", "step": 3, "time": "2026-03-01T10:00:00Z"
            })
        );
    }

    #[test]
    fn the_slack_payload_is_one_line_of_text() {
        let now: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        let payloads = payloads("shop", "checkout", &status(), &[event(EventReason::Aborted, "aborted revision 7f9c2: error rate")], now);
        assert_eq!(
            body(Format::Slack, &payloads[0]),
            serde_json::json!({"text": "*shop/checkout* Aborted: aborted revision 7f9c2: error rate (revision 7f9c2)"})
        );
    }

    #[test]
    fn engine_reasons_map_to_the_lifecycle_people_follow() {
        let mapped: Vec<(EventReason, Option<&str>)> = [
            EventReason::NewRevision,
            EventReason::StepCompleted,
            EventReason::Paused,
            EventReason::Promoted,
            EventReason::Aborted,
            EventReason::Completed,
            EventReason::AnalysisFailed,
        ]
        .into_iter()
        .map(|r| (r, reason_of(r)))
        .collect();
        assert_eq!(
            mapped,
            [
                (EventReason::NewRevision, Some("Started")),
                (EventReason::StepCompleted, Some("StepCompleted")),
                (EventReason::Paused, Some("Paused")),
                (EventReason::Promoted, Some("Promoted")),
                (EventReason::Aborted, Some("Aborted")),
                (EventReason::Completed, Some("Healthy")),
                (EventReason::AnalysisFailed, None),
            ]
        );
    }

    #[test]
    fn targets_are_json_unless_prefixed_with_slack() {
        assert_eq!("https://hooks.example.com/a".parse(), Ok(Target { url: "https://hooks.example.com/a".into(), format: Format::Json }));
        assert_eq!(
            " slack+https://hooks.slack.com/services/T/B/X".parse(),
            Ok(Target { url: "https://hooks.slack.com/services/T/B/X".into(), format: Format::Slack })
        );
        assert!("ftp://example.com".parse::<Target>().unwrap_err().contains("not an http(s) URL"));
        assert!("not a url".parse::<Target>().is_err());

        let mut rollout = rollout();
        rollout.metadata.annotations =
            Some([(ANNOTATION.to_string(), "http://a.test/x, slack+https://b.test/y,,bogus".to_string())].into());
        let (targets, problems) = targets_of(&rollout);
        assert_eq!(
            targets.iter().map(|t| (t.url.as_str(), t.format)).collect::<Vec<_>>(),
            [("http://a.test/x", Format::Json), ("https://b.test/y", Format::Slack)]
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[tokio::test]
    async fn a_refusing_url_is_retried_then_counted_as_failed_and_notify_never_waits() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let outcomes = Family::<OutcomeLabel, Counter>::default();
        let notifier = Notifier::start(vec![format!("http://127.0.0.1:{port}/hook").parse().unwrap()], outcomes.clone());
        let rollout = rollout();
        let started = std::time::Instant::now();
        notifier.notify(&rollout, &status(), &[event(EventReason::Promoted, "revision 7f9c2 is now stable")]);
        assert!(started.elapsed() < Duration::from_millis(50), "notify queues and returns");
        let failed = OutcomeLabel { outcome: "failed" };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while outcomes.get_or_create(&failed).get() == 0 {
            assert!(std::time::Instant::now() < deadline, "the failure was never counted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(started.elapsed() >= RETRY_DELAYS.iter().sum::<Duration>(), "retried before giving up");
        assert_eq!(outcomes.get_or_create(&OutcomeLabel { outcome: "delivered" }).get(), 0);
    }
}
