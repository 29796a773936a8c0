//! Notifications of rollout events: a JSON payload (or a Slack-compatible `{"text"}`) POSTed to
//! webhook URLs, and CDEvents ([`cdevents`]) published to SNS topics and EventBridge buses
//! ([`aws`]), configured for the controller or per Rollout ([`target`]).
//!
//! Delivery is at least once, and never holds a rollout up. A pass writes the notifications its
//! decisions call for into the Rollout's status (its outbox) with the decision, then `send` queues
//! them; one background task per destination sends in order, with a short timeout and a couple
//! of quick retries, and an undelivered one is sent again every 30 s for 15 minutes. Each pass
//! takes out of the outbox what has reached every destination (`settled`); the notifier wakes
//! the Rollout's pass when that changes. A controller stopped in between sends the outbox again
//! after its restart, with the same ids, which receivers use to drop repeats. Outcomes are
//! counted in `sluice_notifications_total{outcome}`, never returned.
//!
//! URLs carry tokens: logs show only their scheme and host. Every request to a URL goes through
//! the outbound policy ([`crate::egress`]): a Rollout's URLs are checked against its namespace's
//! allowed hosts, the controller's against the cluster's; redirects are never followed. A
//! Rollout's ARNs must be allowed in its namespace like its other AWS resources ([`AllowList`]);
//! the controller's are trusted. Each namespace has a quota of destinations and queued
//! notifications, and a destination's task ends once idle, so one namespace's slow or dead
//! destinations cannot hold up another's.

pub mod aws;
pub mod cdevents;
pub mod target;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::warn;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{PendingNotification, Rollout, RolloutStatus};
use crate::egress::Egress;
use crate::engine::{Event, EventReason};
pub use aws::{AllowList, Publisher};
pub use target::{ANNOTATION, Sink, Target, targets_in_file, targets_of};

/// How a notification ended: delivered, failed, denied or dropped.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// The header that carries a notification's [`Payload::id`], for receivers to drop repeats.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

const QUEUE: usize = 1024;
const QUEUE_PER_URL: usize = 64;
/// Destinations with a delivery task at once, over all namespaces.
const MAX_URLS: usize = 512;
/// Destinations of one namespace (or of the controller's own list) with a delivery task at once.
pub const MAX_URLS_PER_NAMESPACE: usize = 16;
/// Notifications of one namespace waiting for delivery at once: a full queue for each of its
/// destinations, so that its dead ones never crowd out its live ones; more are held back (and
/// counted).
pub const MAX_QUEUED_PER_NAMESPACE: usize = MAX_URLS_PER_NAMESPACE * QUEUE_PER_URL;
/// A destination's task ends after this long without a notification, freeing its slot.
const IDLE: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(3);
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

/// The events people are told about, named for them.
pub fn reason_of(reason: EventReason) -> Option<&'static str> {
    match reason {
        EventReason::RolloutStarted | EventReason::NewRevision | EventReason::Retried => Some("Started"),
        EventReason::StepCompleted => Some("StepCompleted"),
        EventReason::Paused => Some("Paused"),
        EventReason::Promoted => Some("Promoted"),
        EventReason::Aborted => Some("Aborted"),
        EventReason::Completed => Some("Healthy"),
        // Someone changed production traffic by hand: people want to know.
        EventReason::TrafficDrift => Some("TrafficDrift"),
        EventReason::WeightSet
        | EventReason::AnalysisStarted
        | EventReason::AnalysisPassed
        | EventReason::AnalysisFailed
        | EventReason::AnalysisInconclusive
        | EventReason::Resumed
        | EventReason::ProgressDeadlineExceeded
        | EventReason::Restarted
        | EventReason::InvalidSpec
        | EventReason::TenancyRefused
        | EventReason::ReconcileFailed => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Payload {
    /// The same for the same decision (rollout uid, reason, message, revision, phase, step), so
    /// a receiver can drop a notification delivered twice; also sent as `Idempotency-Key`.
    pub id: String,
    pub rollout: String,
    pub namespace: String,
    pub reason: String,
    pub message: String,
    /// The revision the spec asks for.
    pub revision: Option<String>,
    pub phase: Option<String>,
    pub step: Option<i32>,
    /// When it was decided, RFC 3339.
    pub time: String,
}

impl Payload {
    pub fn new(namespace: &str, rollout: &str, pending: &PendingNotification) -> Self {
        Payload {
            id: pending.id.clone(),
            rollout: rollout.to_string(),
            namespace: namespace.to_string(),
            reason: pending.reason.clone(),
            message: pending.message.clone(),
            revision: pending.revision.clone(),
            phase: pending.phase.clone(),
            step: pending.step,
            time: pending.time.0.to_string(),
        }
    }
}

/// The notifications one pass's events call for, with the status the pass wrote; `uid` and
/// `generation` are the Rollout's. The same decision taken again from the same spec (a pass
/// repeated after a failed write) gets the same id; reaching the same state again after a spec
/// change (Healthy on the same revision after an undo) is news, with a new id.
pub fn decided(uid: &str, generation: Option<i64>, status: &RolloutStatus, events: &[Event], now: Timestamp) -> Vec<PendingNotification> {
    events
        .iter()
        .filter_map(|event| {
            let reason = reason_of(event.reason)?;
            let revision = status.update_revision.clone();
            let phase = status.phase.map(|p| p.to_string());
            let step = status.current_step_index;
            let decision = serde_json::json!([uid, generation, reason, event.message, revision, phase, step]);
            let id = Sha256::digest(decision.to_string().as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect();
            Some(PendingNotification {
                id,
                reason: reason.to_string(),
                message: event.message.clone(),
                revision,
                stable_revision: status.stable_revision.clone(),
                phase,
                step,
                time: Time(now),
            })
        })
        .collect()
}

/// Notifications a Rollout's status keeps at most; past that the oldest are dropped (and counted).
pub const MAX_PENDING: usize = 32;

/// The outbox to write with a pass: what was waiting, less what has been delivered everywhere,
/// plus what this pass decided (a decision already waiting is not added twice), the newest
/// [`MAX_PENDING`]. Returns it and how many were dropped for room.
pub fn outbox(
    waiting: &[PendingNotification],
    settled: &HashSet<String>,
    decided: Vec<PendingNotification>,
) -> (Vec<PendingNotification>, usize) {
    let mut outbox: Vec<PendingNotification> = waiting.iter().filter(|n| !settled.contains(&n.id)).cloned().collect();
    for notification in decided {
        if !outbox.iter().any(|n| n.id == notification.id) {
            outbox.push(notification);
        }
    }
    let dropped = outbox.len().saturating_sub(MAX_PENDING);
    outbox.drain(..dropped);
    (outbox, dropped)
}

/// What is sent to a destination of this kind: `None` when it is not told of this reason (a
/// CDEvents destination, of a reason CDEvents has no type for).
pub fn body(sink: Sink, namespace: &str, rollout: &str, notification: &PendingNotification) -> Option<serde_json::Value> {
    let payload = Payload::new(namespace, rollout, notification);
    match sink {
        Sink::Json => Some(serde_json::to_value(&payload).expect("payload serializes")),
        Sink::Slack => {
            let mut text = format!("*{}/{}* {}: {}", payload.namespace, payload.rollout, payload.reason, payload.message);
            if let Some(revision) = payload.revision.as_ref().filter(|r| !payload.message.contains(r.as_str())) {
                text.push_str(&format!(" (revision {revision})"));
            }
            Some(serde_json::json!({ "text": text }))
        }
        Sink::Sns | Sink::EventBridge => cdevents::event(namespace, rollout, notification),
    }
}

/// Whose quota a notification counts against: a namespace's, or the controller's own destinations'.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Owner {
    Controller,
    Namespace(String),
}

struct Delivery {
    owner: Owner,
    target: Target,
    id: String,
    body: serde_json::Value,
    /// The Rollout it is about (`namespace/name`), and when it was decided.
    rollout: RolloutKey,
    decided_at: Timestamp,
}

/// A Rollout by namespace and name.
pub type RolloutKey = (String, String);

/// Where a notification stands for one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    Queued,
    /// Delivered, denied (by the outbound or tenancy policy), not meant for that destination, or
    /// given up on after [`GIVE_UP_AFTER`].
    Done,
    /// Not delivered yet; sent again once this time has come.
    RetryAt(std::time::Instant),
}

/// A notification not delivered is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// A notification that could not be delivered for this long since its decision is given up on.
const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);

/// Where each notification (id) stands for each destination (address).
type Slots = HashMap<(String, String), Progress>;

/// Each Rollout's notifications, by id and destination, while they are in its outbox. Lost on restart:
/// then the outbox (in the status) is sent again, with the same ids.
#[derive(Clone, Default)]
struct Ledger {
    entries: Arc<std::sync::Mutex<HashMap<RolloutKey, Slots>>>,
    /// Wakes a Rollout's pass, to take what is done out of its outbox or send it again.
    wake: Option<mpsc::UnboundedSender<RolloutKey>>,
}

impl Ledger {
    fn mark(&self, rollout: &RolloutKey, id: &str, address: &str, progress: Progress) {
        let mut entries = self.entries.lock().expect("ledger lock");
        // A notification no longer in the outbox (pruned by `send`) stays forgotten.
        if let Some(entry) = entries.get_mut(rollout).and_then(|e| e.get_mut(&(id.to_string(), address.to_string()))) {
            *entry = progress;
        }
        drop(entries);
        let Some(wake) = self.wake.clone() else { return };
        match progress {
            Progress::Queued => {}
            Progress::Done => {
                let _ = wake.send(rollout.clone());
            }
            Progress::RetryAt(at) => {
                let rollout = rollout.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    let _ = wake.send(rollout);
                });
            }
        }
    }

    /// What became of a delivery attempt.
    fn finished(&self, delivery: &Delivery, outcome: &str) {
        let given_up =
            Timestamp::now().duration_since(delivery.decided_at) > jiff::SignedDuration::try_from(GIVE_UP_AFTER).unwrap_or_default();
        let progress = match outcome {
            "delivered" | "denied" => Progress::Done,
            _ if given_up => {
                warn!(to = %delivery.target.redacted(), "notification given up after {}s undelivered", GIVE_UP_AFTER.as_secs());
                Progress::Done
            }
            _ => Progress::RetryAt(std::time::Instant::now() + RETRY_AFTER),
        };
        self.mark(&delivery.rollout, &delivery.id, &delivery.target.address, progress);
    }
}

/// Delivers the notifications kept in Rollouts' statuses (their outbox), at least once each:
/// `send` queues what is due, `settled` says what has reached every destination. Cheap to call from a
/// reconcile; delivery runs in the background.
pub struct Notifier {
    queue: mpsc::Sender<Delivery>,
    global: Vec<Target>,
    outcomes: Family<OutcomeLabel, Counter>,
    ledger: Ledger,
}

/// How destinations are reached: URLs where the outbound policy allows, ARNs through the AWS
/// SDK where the namespace's AWS resources allow (the controller's own always).
#[derive(Clone)]
pub struct Reach {
    pub egress: Arc<Egress>,
    pub publisher: Arc<Publisher>,
    pub allowed: Arc<dyn AllowList>,
}

impl Notifier {
    /// Starts the delivery task on the current Tokio runtime. The receiver yields a Rollout each
    /// time its outbox may have changed (a delivery done, a retry due), for the controller to run
    /// its pass.
    pub fn start(
        global: Vec<Target>,
        outcomes: Family<OutcomeLabel, Counter>,
        reach: Reach,
    ) -> (Self, mpsc::UnboundedReceiver<RolloutKey>) {
        let (queue, received) = mpsc::channel(QUEUE);
        let (wake, woken) = mpsc::unbounded_channel();
        let ledger = Ledger { entries: Default::default(), wake: Some(wake) };
        tokio::spawn(dispatch(received, reach, outcomes.clone(), ledger.clone()));
        (Self { queue, global, outcomes, ledger }, woken)
    }

    /// Where this Rollout's notifications go: the controller's destinations, then its own.
    fn targets(&self, rollout: &Rollout) -> Vec<(Owner, Target)> {
        let (own, problems) = targets_of(rollout);
        for problem in problems {
            warn!(rollout = %rollout.name_any(), annotation = ANNOTATION, "{problem}");
        }
        let namespace = rollout.namespace().unwrap_or_default();
        let global = self.global.iter().map(|t| (Owner::Controller, t.clone()));
        global.chain(own.into_iter().map(|t| (Owner::Namespace(namespace.clone()), t))).collect()
    }

    /// Whether anyone is notified of this Rollout's events.
    pub fn has_targets(&self, rollout: &Rollout) -> bool {
        !self.global.is_empty() || !targets_of(rollout).0.is_empty()
    }

    /// The ids of `outbox` that every destination has received (or that none will).
    pub fn settled(&self, rollout: &Rollout, outbox: &[PendingNotification]) -> HashSet<String> {
        let targets = self.targets(rollout);
        let entries = self.ledger.entries.lock().expect("ledger lock");
        let progress = entries.get(&key_of(rollout));
        outbox
            .iter()
            .filter(|n| {
                targets
                    .iter()
                    .all(|(_, target)| progress.and_then(|p| p.get(&(n.id.clone(), target.address.clone()))) == Some(&Progress::Done))
            })
            .map(|n| n.id.clone())
            .collect()
    }

    /// Queues every notification of `outbox` not yet sent to a destination, or whose retry is due; forgets
    /// those no longer in it.
    pub fn send(&self, rollout: &Rollout, outbox: &[PendingNotification]) {
        let key = key_of(rollout);
        let targets = self.targets(rollout);
        let mut entries = self.ledger.entries.lock().expect("ledger lock");
        if outbox.is_empty() || targets.is_empty() {
            entries.remove(&key);
            return;
        }
        let progress = entries.entry(key.clone()).or_default();
        progress.retain(|(id, _), _| outbox.iter().any(|n| &n.id == id));
        let now = std::time::Instant::now();
        let mut full = Vec::new();
        for notification in outbox {
            for (owner, target) in &targets {
                let slot = (notification.id.clone(), target.address.clone());
                let due = match progress.get(&slot) {
                    None => true,
                    Some(Progress::RetryAt(at)) => *at <= now,
                    Some(Progress::Queued | Progress::Done) => false,
                };
                if !due {
                    continue;
                }
                let Some(body) = body(target.sink, &key.0, &key.1, notification) else {
                    // Nothing to send there: it is done with, without counting.
                    progress.insert(slot, Progress::Done);
                    continue;
                };
                progress.insert(slot, Progress::Queued);
                let delivery = Delivery {
                    owner: owner.clone(),
                    target: target.clone(),
                    id: notification.id.clone(),
                    body,
                    rollout: key.clone(),
                    decided_at: notification.time.0,
                };
                if let Err(refused) = self.queue.try_send(delivery) {
                    let delivery = match refused {
                        mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
                    };
                    self.outcomes.get_or_create(&OutcomeLabel { outcome: "dropped" }).inc();
                    warn!(to = %target.redacted(), "notification queue full; trying again later");
                    full.push(delivery);
                }
            }
        }
        drop(entries);
        for delivery in full {
            self.ledger.mark(&delivery.rollout, &delivery.id, &delivery.target.address, Progress::RetryAt(now + RETRY_AFTER));
        }
    }
}

fn key_of(rollout: &Rollout) -> RolloutKey {
    (rollout.namespace().unwrap_or_default(), rollout.name_any())
}

/// A delivery waiting in a destination's queue, counted against its owner's quota until it is done.
struct Queued {
    delivery: Delivery,
    waiting: Arc<AtomicUsize>,
}

/// Hands each delivery to its destination's task, so a slow one delays only itself and each gets its
/// notifications in order; enforces each owner's quotas.
async fn dispatch(mut received: mpsc::Receiver<Delivery>, reach: Reach, outcomes: Family<OutcomeLabel, Counter>, ledger: Ledger) {
    let mut workers: HashMap<(Owner, String), mpsc::Sender<Queued>> = HashMap::new();
    let mut waiting: HashMap<Owner, Arc<AtomicUsize>> = HashMap::new();
    let dropped = |why: &str, delivery: &Delivery| {
        outcomes.get_or_create(&OutcomeLabel { outcome: "dropped" }).inc();
        warn!(to = %delivery.target.redacted(), owner = ?delivery.owner, "notification held back: {why}; trying again later");
        ledger.finished(delivery, "dropped");
    };
    while let Some(delivery) = received.recv().await {
        // Tasks that ended (idle) free their slot here.
        workers.retain(|_, sender| !sender.is_closed());
        waiting.retain(|owner, count| count.load(Ordering::Relaxed) > 0 || workers.keys().any(|(o, _)| o == owner));
        let count = waiting.entry(delivery.owner.clone()).or_default().clone();
        if count.load(Ordering::Relaxed) >= MAX_QUEUED_PER_NAMESPACE {
            dropped(&format!("{MAX_QUEUED_PER_NAMESPACE} notifications of this namespace are already waiting"), &delivery);
            continue;
        }
        let key = (delivery.owner.clone(), delivery.target.address.clone());
        let mut pending = Some(Queued { delivery, waiting: count.clone() });
        for _attempt in 0..2 {
            let Some(item) = pending.take() else { break };
            if !workers.contains_key(&key) {
                let owned = workers.keys().filter(|(owner, _)| *owner == key.0).count();
                if owned >= MAX_URLS_PER_NAMESPACE || workers.len() >= MAX_URLS {
                    pending = Some(item);
                    break;
                }
                let (sender, queue) = mpsc::channel(QUEUE_PER_URL);
                tokio::spawn(deliver(queue, reach.clone(), outcomes.clone(), ledger.clone()));
                workers.insert(key.clone(), sender);
            }
            count.fetch_add(1, Ordering::Relaxed);
            match workers[&key].try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(item)) => {
                    count.fetch_sub(1, Ordering::Relaxed);
                    dropped("the queue of this destination is full", &item.delivery);
                }
                Err(mpsc::error::TrySendError::Closed(item)) => {
                    // The task ended as idle just now: start another.
                    count.fetch_sub(1, Ordering::Relaxed);
                    workers.remove(&key);
                    pending = Some(item);
                }
            }
        }
        if let Some(item) = pending {
            dropped(&format!("this namespace already has {MAX_URLS_PER_NAMESPACE} destinations being delivered to"), &item.delivery);
        }
    }
}
/// Delivers one destination's notifications in order; ends after [`IDLE`] without one.
async fn deliver(mut queue: mpsc::Receiver<Queued>, reach: Reach, outcomes: Family<OutcomeLabel, Counter>, ledger: Ledger) {
    while let Ok(Some(Queued { delivery, waiting })) = tokio::time::timeout(IDLE, queue.recv()).await {
        let outcome = match delivery.target.sink.is_aws() {
            true => publish_one(&delivery, &reach).await,
            false => deliver_one(&delivery, &reach.egress).await,
        };
        waiting.fetch_sub(1, Ordering::Relaxed);
        outcomes.get_or_create(&OutcomeLabel { outcome }).inc();
        ledger.finished(&delivery, outcome);
    }
}

/// Publishes one CDEvent to an SNS topic or EventBridge bus, if the namespace may; the SDK's own
/// retries stand in for the webhooks' quick ones.
async fn publish_one(delivery: &Delivery, reach: &Reach) -> &'static str {
    let arn = &delivery.target.address;
    let (namespace, rollout) = &delivery.rollout;
    if let Owner::Namespace(namespace) = &delivery.owner
        && let Err(why) = reach.allowed.check(namespace, arn)
    {
        warn!(%namespace, %rollout, to = %arn, "notification not published: {why}");
        return "denied";
    }
    match reach.publisher.publish(&delivery.target, &delivery.body, &format!("{namespace}/{rollout}"), delivery.decided_at).await {
        Ok(()) => "delivered",
        Err(error) => {
            warn!(%namespace, %rollout, to = %arn, %error, "notification not published");
            "failed"
        }
    }
}

async fn deliver_one(delivery: &Delivery, egress: &Egress) -> &'static str {
    let url_text = delivery.target.redacted();
    let Ok(url) = reqwest::Url::parse(&delivery.target.address) else { return "failed" };
    let namespace = match &delivery.owner {
        Owner::Controller => None,
        Owner::Namespace(namespace) => Some(namespace.as_str()),
    };
    let mut attempt = 0;
    loop {
        let error = match egress.client(namespace, &url).await {
            Err(crate::egress::EgressError::Denied(why)) => {
                warn!(url = %url_text, "notification not sent: {why}");
                return "denied";
            }
            Err(other) => other.to_string(),
            Ok(client) => {
                let request = client.post(url.clone()).timeout(TIMEOUT).header(IDEMPOTENCY_HEADER, &delivery.id).json(&delivery.body);
                match request.send().await {
                    Ok(response) if response.status().is_success() => return "delivered",
                    Ok(response) if response.status().is_redirection() => {
                        warn!(url = %url_text, status = %response.status(), "notification not delivered: redirects are not followed; configure the address it redirects to");
                        return "failed";
                    }
                    Ok(response) => format!("answered {}", response.status()),
                    Err(error) => crate::egress::describe(&error.without_url()),
                }
            }
        };
        match RETRY_DELAYS.get(attempt) {
            Some(delay) => {
                attempt += 1;
                tokio::time::sleep(*delay).await;
            }
            None => {
                warn!(url = %url_text, %error, "notification not delivered after {} attempts", attempt + 1);
                return "failed";
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RolloutPhase;

    fn event(reason: EventReason, message: &str) -> Event {
        Event { reason, message: message.into() }
    }

    /// The payloads of one pass's events, as the URLs receive them.
    fn payloads(namespace: &str, rollout: &str, uid: &str, status: &RolloutStatus, events: &[Event], now: Timestamp) -> Vec<Payload> {
        decided(uid, Some(1), status, events, now).iter().map(|pending| Payload::new(namespace, rollout, pending)).collect()
    }

    impl Notifier {
        /// What a pass does: decide the notifications of its events and send the outbox.
        fn notify(&self, rollout: &Rollout, status: &RolloutStatus, events: &[Event]) {
            let pending = decided(&rollout.uid().unwrap_or_default(), rollout.metadata.generation, status, events, Timestamp::now());
            self.send(rollout, &pending);
        }
    }

    fn rollout() -> Rollout {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"workload": {}, "strategy": {}}
        }))
        .unwrap()
    }

    /// A namespace's AWS resources as its Namespace annotation would allow them.
    struct Allowing(Vec<String>);

    impl AllowList for Allowing {
        fn check(&self, namespace: &str, arn: &str) -> Result<(), String> {
            self.0.iter().any(|a| a == arn).then_some(()).ok_or_else(|| format!("{arn} is not allowed in namespace {namespace}"))
        }
    }

    /// AWS at an address that answers nothing: a publish attempted there fails.
    fn nowhere() -> Arc<Publisher> {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url("http://127.0.0.1:9")
            .build();
        Arc::new(Publisher::new(&config))
    }

    fn reach(egress: Egress, allowed: &[&str]) -> Reach {
        Reach {
            egress: Arc::new(egress),
            publisher: nowhere(),
            allowed: Arc::new(Allowing(allowed.iter().map(|a| a.to_string()).collect())),
        }
    }

    /// The outbound policy with loopback listed, as an admin would for local receivers.
    fn loopback() -> Reach {
        reach(Egress::new(crate::egress::Policy::new(vec!["127.0.0.1".parse().unwrap()]), None, crate::egress::DEFAULT_MAX_ANSWER), &[])
    }

    fn rollout_in(namespace: &str, urls: &[String]) -> Rollout {
        let mut rollout = rollout();
        rollout.metadata.namespace = Some(namespace.into());
        rollout.metadata.uid = Some(format!("uid-{namespace}"));
        rollout.metadata.annotations = Some([(ANNOTATION.to_string(), urls.join(","))].into());
        rollout
    }

    /// A receiver recording each request's Idempotency-Key and body; `redirect_to` makes it answer
    /// 302 to that URL instead.
    async fn receiver(redirect_to: Option<String>) -> (String, Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>) {
        let hits: Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>> = Default::default();
        let recorded = hits.clone();
        let handler = move |headers: axum::http::HeaderMap, body: axum::Json<serde_json::Value>| {
            let recorded = recorded.clone();
            let redirect_to = redirect_to.clone();
            async move {
                let key = headers.get(IDEMPOTENCY_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                recorded.lock().unwrap().push((key, body.0));
                match redirect_to {
                    Some(to) => (axum::http::StatusCode::FOUND, [(axum::http::header::LOCATION, to)]).into_response(),
                    None => axum::http::StatusCode::NO_CONTENT.into_response(),
                }
            }
        };
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, axum::Router::new().route("/hook", axum::routing::post(handler))).await });
        (address, hits)
    }

    /// A listener that accepts connections and never answers.
    async fn blackhole() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        address
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn the_id_is_the_same_for_the_same_decision_only() {
        let now: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-03-01T10:05:00Z".parse().unwrap();
        let paused = [event(EventReason::Paused, "paused: CanaryPauseStep")];
        let id = |uid: &str, status: &RolloutStatus, at| payloads("shop", "checkout", uid, status, &paused, at)[0].id.clone();
        assert_eq!(id("uid-1", &status(), now), id("uid-1", &status(), later), "a repeat of the same decision");
        assert_eq!(id("uid-1", &status(), now).len(), 32);
        assert_ne!(id("uid-1", &status(), now), id("uid-2", &status(), now), "another rollout");
        let next_step = RolloutStatus { current_step_index: Some(4), ..status() };
        assert_ne!(id("uid-1", &status(), now), id("uid-1", &next_step, now), "another step");
        let healthy = [event(EventReason::Completed, "revision 7f9c2 is stable: 2/2 ready")];
        let at_generation = |generation| decided("uid-1", Some(generation), &status(), &healthy, now)[0].id.clone();
        assert_ne!(at_generation(3), at_generation(5), "the same state reached again after a spec change");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dead_urls_of_one_namespace_do_not_hold_up_another() {
        let outcomes = Family::<OutcomeLabel, Counter>::default();
        let notifier = Notifier::start(Vec::new(), outcomes.clone(), loopback()).0;
        let mut dead = Vec::new();
        for _ in 0..(MAX_URLS_PER_NAMESPACE * 3) {
            dead.push(blackhole().await);
        }
        let noisy = rollout_in("noisy", &dead);
        for step in 0..20 {
            let status = RolloutStatus { current_step_index: Some(step), ..status() };
            notifier.notify(&noisy, &status, &[event(EventReason::Paused, "paused")]);
        }
        let (address, hits) = receiver(None).await;
        let quiet = rollout_in("quiet", std::slice::from_ref(&address));
        let started = std::time::Instant::now();
        notifier.notify(&quiet, &status(), &[event(EventReason::Promoted, "revision 7f9c2 is now stable")]);
        wait_until("the quiet namespace's notification", || !hits.lock().unwrap().is_empty()).await;
        assert!(started.elapsed() < Duration::from_secs(2), "delivered in {:?}", started.elapsed());
        let (key, body) = hits.lock().unwrap()[0].clone();
        assert_eq!(body["id"], serde_json::json!(key), "the id is both in the body and the Idempotency-Key header");
        assert_eq!(body["namespace"], "quiet");
        let dropped = outcomes.get_or_create(&OutcomeLabel { outcome: "dropped" }).get();
        // Past its 16 URLs, every notification of the noisy namespace is held back.
        assert!(dropped as usize >= 20 * MAX_URLS_PER_NAMESPACE * 2, "over the quota: dropped {dropped}");
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_denied_hosts_not_contacted() {
        let (final_address, final_hits) = receiver(None).await;
        let (redirecting, redirect_hits) = receiver(Some(final_address)).await;
        let outcomes = Family::<OutcomeLabel, Counter>::default();
        let notifier = Notifier::start(Vec::new(), outcomes.clone(), loopback()).0;
        notifier.notify(&rollout_in("shop", &[redirecting]), &status(), &[event(EventReason::Promoted, "stable")]);
        let failed = OutcomeLabel { outcome: "failed" };
        wait_until("the redirect to count as failed", || outcomes.get_or_create(&failed).get() == 1).await;
        assert_eq!(redirect_hits.lock().unwrap().len(), 1, "asked once, not retried");
        assert!(final_hits.lock().unwrap().is_empty(), "the redirect was not followed");

        let (address, hits) = receiver(None).await;
        let closed = Notifier::start(Vec::new(), outcomes.clone(), reach(Egress::new(Default::default(), None, 1 << 20), &[])).0;
        closed.notify(&rollout_in("shop", &[address]), &status(), &[event(EventReason::Promoted, "stable")]);
        let denied = OutcomeLabel { outcome: "denied" };
        wait_until("the loopback URL to be denied", || outcomes.get_or_create(&denied).get() == 1).await;
        assert!(hits.lock().unwrap().is_empty());
    }

    fn status() -> RolloutStatus {
        RolloutStatus {
            phase: Some(RolloutPhase::Paused),
            update_revision: Some("7f9c2".into()),
            stable_revision: Some("5d1e8".into()),
            current_step_index: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn the_json_payload_carries_the_rollout_the_reason_and_where_it_stands() {
        let now: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        let events = [event(EventReason::Paused, "paused: CanaryPauseStep"), event(EventReason::WeightSet, "canary weight is 50%")];
        let decided = decided("uid-1", Some(1), &status(), &events, now);
        assert_eq!(decided.len(), 1, "weight changes are not notified");
        assert_eq!(
            body(Sink::Json, "shop", "checkout", &decided[0]),
            Some(serde_json::json!({
                "id": decided[0].id, "rollout": "checkout", "namespace": "shop", "reason": "Paused", "message": "paused: CanaryPauseStep",
                "revision": "7f9c2", "phase": "Paused", "step": 3, "time": "2026-03-01T10:00:00Z"
            })),
            "the stable revision is kept for CDEvents, not added to the webhook payload"
        );
        assert_eq!(decided[0].stable_revision.as_deref(), Some("5d1e8"));
        let cdevent = body(Sink::Sns, "shop", "checkout", &decided[0]);
        assert_eq!(cdevent, None, "a pause has no CDEvents type");
    }

    #[test]
    fn the_slack_payload_is_one_line_of_text() {
        let now: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        let named = decided("uid-1", Some(1), &status(), &[event(EventReason::Aborted, "aborted revision 7f9c2: error rate")], now);
        assert_eq!(
            body(Sink::Slack, "shop", "checkout", &named[0]),
            Some(serde_json::json!({"text": "*shop/checkout* Aborted: aborted revision 7f9c2: error rate"})),
            "a message that names its revision is not told it twice"
        );
        let unnamed = decided("uid-1", Some(1), &status(), &[event(EventReason::Aborted, "aborted: error rate")], now);
        assert_eq!(
            body(Sink::Slack, "shop", "checkout", &unnamed[0]),
            Some(serde_json::json!({"text": "*shop/checkout* Aborted: aborted: error rate (revision 7f9c2)"}))
        );
        let rolled_back = body(Sink::EventBridge, "shop", "checkout", &unnamed[0]).expect("an abort is a CDEvent");
        assert_eq!(rolled_back["context"]["type"], cdevents::SERVICE_ROLLED_BACK);
        assert_eq!(rolled_back["context"]["id"], serde_json::json!(unnamed[0].id));
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

    #[tokio::test]
    async fn a_rollouts_arn_its_namespace_does_not_allow_is_denied_and_the_controllers_own_is_trusted() {
        let (allowed, denied_arn) = ("arn:aws:sns:us-east-1:123456789012:allowed", "arn:aws:events:eu-west-1:123456789012:event-bus/other");
        let global = "arn:aws:sns:us-east-1:123456789012:platform";
        let outcomes = Family::<OutcomeLabel, Counter>::default();
        let reach = reach(Egress::new(Default::default(), None, 1 << 20), &[allowed]);
        let notifier = Notifier::start(vec![global.parse().unwrap()], outcomes.clone(), reach).0;
        let rollout = rollout_in("shop", &[allowed.to_string(), denied_arn.to_string()]);
        notifier.notify(&rollout, &status(), &[event(EventReason::Promoted, "stable"), event(EventReason::Paused, "paused")]);
        let count = |outcome| outcomes.get_or_create(&OutcomeLabel { outcome }).get();
        // AWS answers nothing here: what is published to fails, what is denied is never tried.
        wait_until("every destination's outcome", || count("denied") + count("failed") == 3).await;
        assert_eq!(count("denied"), 1, "only the Rollout's own ARN its namespace does not allow");
        assert_eq!(count("failed"), 2, "the allowed ARN and the controller's were tried");
        assert_eq!(count("delivered"), 0);
        let outbox = decided("uid-shop", None, &status(), &[event(EventReason::Paused, "paused")], Timestamp::now());
        assert_eq!(
            notifier.settled(&rollout, &outbox).len(),
            1,
            "a pause is done with at once for CDEvents destinations: it has no type to send"
        );
    }

    #[tokio::test]
    async fn a_refusing_url_is_retried_then_counted_as_failed_and_notify_never_waits() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let outcomes = Family::<OutcomeLabel, Counter>::default();
        let notifier = Notifier::start(vec![format!("http://127.0.0.1:{port}/hook").parse().unwrap()], outcomes.clone(), loopback()).0;
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
