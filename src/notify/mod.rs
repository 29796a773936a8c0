//! Webhook notifications of rollout events: a JSON payload (or a Slack-compatible `{"text"}`)
//! POSTed to URLs configured for the controller or per Rollout.
//!
//! Delivery is at least once, and never holds a rollout up. A pass writes the notifications its
//! decisions call for into the Rollout's status (its outbox) with the decision, then `send` queues
//! them; one background task per URL posts in order, with a short timeout and a couple of quick
//! retries, and an undelivered one is sent again every 30 s for 15 minutes. Each pass takes out
//! of the outbox what has reached every URL (`settled`); the notifier wakes the Rollout's pass
//! when that changes. A controller stopped in between sends the outbox again after its restart,
//! with the same ids, which receivers use to drop repeats. Outcomes are counted in
//! `sluice_notifications_total{outcome}`, never returned.
//!
//! URLs carry tokens: logs show only their scheme and host. Every request goes through the
//! outbound policy ([`crate::egress`]): a Rollout's URLs are checked against its namespace's
//! allowed hosts, the controller's against the cluster's; redirects are never followed. Each
//! namespace has a quota of URLs and queued notifications, and a URL's task ends once idle, so
//! one namespace's slow or dead URLs cannot hold up another's.

use std::collections::{HashMap, HashSet};
use std::path::Path;
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
use crate::egress::{Egress, redact};
use crate::engine::{Event, EventReason};

/// How a notification ended: delivered, failed, denied or dropped.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Comma-separated URLs notified of this Rollout's events, besides the controller's own.
pub const ANNOTATION: &str = "sluice.dev/notify-webhook";
/// A URL written `slack+https://...` gets a Slack-compatible payload.
const SLACK_PREFIX: &str = "slack+";
/// The header that carries a notification's [`Payload::id`], for receivers to drop repeats.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

const QUEUE: usize = 1024;
const QUEUE_PER_URL: usize = 64;
/// URLs with a delivery task at once, over all namespaces.
const MAX_URLS: usize = 512;
/// URLs of one namespace (or of the controller's own list) with a delivery task at once.
pub const MAX_URLS_PER_NAMESPACE: usize = 16;
/// Notifications of one namespace waiting for delivery at once: a full queue for each of its
/// URLs, so that its dead URLs never crowd out its live ones; more are held back (and counted).
pub const MAX_QUEUED_PER_NAMESPACE: usize = MAX_URLS_PER_NAMESPACE * QUEUE_PER_URL;
/// A URL's task ends after this long without a notification, freeing its slot.
const IDLE: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(3);
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Json,
    Slack,
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub url: String,
    pub format: Format,
}

/// Never the path or query: they carry tokens.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("url", &self.redacted()).field("format", &self.format).finish()
    }
}

impl Target {
    /// The URL as it may be logged.
    pub fn redacted(&self) -> String {
        reqwest::Url::parse(&self.url).map_or_else(|_| "(not a URL)".to_string(), |url| redact(&url))
    }
}

impl std::str::FromStr for Target {
    type Err = String;

    /// Problems never quote the URL, which may hold a token.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (format, url) = match text.strip_prefix(SLACK_PREFIX) {
            Some(url) => (Format::Slack, url),
            None => (Format::Json, text),
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("a webhook URL does not parse ({e}); write http(s)://host/path"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "a webhook URL of scheme {} is not an http(s) URL (prefix it with slack+ for a Slack-compatible payload)",
                parsed.scheme()
            ));
        }
        Ok(Target { url: url.to_string(), format })
    }
}

/// The webhook URLs in a file (mounted from a Secret): one per line or comma-separated; blank
/// lines and lines starting with `#` are skipped.
pub fn targets_in_file(path: &Path) -> Result<Vec<Target>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the webhooks file {}: {e}", path.display()))?;
    let mut targets = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().starts_with('#') {
            continue;
        }
        for entry in line.split(',').filter(|e| !e.trim().is_empty()) {
            targets.push(entry.parse().map_err(|problem| format!("{}, line {}: {problem}", path.display(), number + 1))?);
        }
    }
    Ok(targets)
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

/// What is POSTed to a URL of this format.
pub fn body(format: Format, payload: &Payload) -> serde_json::Value {
    match format {
        Format::Json => serde_json::to_value(payload).expect("payload serializes"),
        Format::Slack => {
            let mut text = format!("*{}/{}* {}: {}", payload.namespace, payload.rollout, payload.reason, payload.message);
            if let Some(revision) = payload.revision.as_ref().filter(|r| !payload.message.contains(r.as_str())) {
                text.push_str(&format!(" (revision {revision})"));
            }
            serde_json::json!({ "text": text })
        }
    }
}

/// Whose quota a notification counts against: a namespace's, or the controller's own URLs'.
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

/// Where a notification stands for one URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    Queued,
    /// Delivered, denied by the outbound policy, or given up on after [`GIVE_UP_AFTER`].
    Done,
    /// Not delivered yet; sent again once this time has come.
    RetryAt(std::time::Instant),
}

/// A notification not delivered is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// A notification that could not be delivered for this long since its decision is given up on.
const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);

/// Where each notification (id) stands for each URL.
type Slots = HashMap<(String, String), Progress>;

/// Each Rollout's notifications, by id and URL, while they are in its outbox. Lost on restart:
/// then the outbox (in the status) is sent again, with the same ids.
#[derive(Clone, Default)]
struct Ledger {
    entries: Arc<std::sync::Mutex<HashMap<RolloutKey, Slots>>>,
    /// Wakes a Rollout's pass, to take what is done out of its outbox or send it again.
    wake: Option<mpsc::UnboundedSender<RolloutKey>>,
}

impl Ledger {
    fn mark(&self, rollout: &RolloutKey, id: &str, url: &str, progress: Progress) {
        let mut entries = self.entries.lock().expect("ledger lock");
        // A notification no longer in the outbox (pruned by `send`) stays forgotten.
        if let Some(entry) = entries.get_mut(rollout).and_then(|e| e.get_mut(&(id.to_string(), url.to_string()))) {
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
                warn!(url = %delivery.target.redacted(), "notification given up after {}s undelivered", GIVE_UP_AFTER.as_secs());
                Progress::Done
            }
            _ => Progress::RetryAt(std::time::Instant::now() + RETRY_AFTER),
        };
        self.mark(&delivery.rollout, &delivery.id, &delivery.target.url, progress);
    }
}

/// Delivers the notifications kept in Rollouts' statuses (their outbox), at least once each:
/// `send` queues what is due, `settled` says what has reached every URL. Cheap to call from a
/// reconcile; delivery runs in the background.
pub struct Notifier {
    queue: mpsc::Sender<Delivery>,
    global: Vec<Target>,
    outcomes: Family<OutcomeLabel, Counter>,
    ledger: Ledger,
}

impl Notifier {
    /// Starts the delivery task on the current Tokio runtime; requests go where `egress` allows.
    /// The receiver yields a Rollout each time its outbox may have changed (a delivery done, a
    /// retry due), for the controller to run its pass.
    pub fn start(
        global: Vec<Target>,
        outcomes: Family<OutcomeLabel, Counter>,
        egress: Arc<Egress>,
    ) -> (Self, mpsc::UnboundedReceiver<RolloutKey>) {
        let (queue, received) = mpsc::channel(QUEUE);
        let (wake, woken) = mpsc::unbounded_channel();
        let ledger = Ledger { entries: Default::default(), wake: Some(wake) };
        tokio::spawn(dispatch(received, egress, outcomes.clone(), ledger.clone()));
        (Self { queue, global, outcomes, ledger }, woken)
    }

    /// Where this Rollout's notifications go: the controller's URLs, then its own.
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

    /// The ids of `outbox` that every URL has received (or that none will).
    pub fn settled(&self, rollout: &Rollout, outbox: &[PendingNotification]) -> HashSet<String> {
        let targets = self.targets(rollout);
        let entries = self.ledger.entries.lock().expect("ledger lock");
        let progress = entries.get(&key_of(rollout));
        outbox
            .iter()
            .filter(|n| {
                targets.iter().all(|(_, target)| progress.and_then(|p| p.get(&(n.id.clone(), target.url.clone()))) == Some(&Progress::Done))
            })
            .map(|n| n.id.clone())
            .collect()
    }

    /// Queues every notification of `outbox` not yet sent to a URL, or whose retry is due; forgets
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
            let payload = Payload::new(&key.0, &key.1, notification);
            for (owner, target) in &targets {
                let slot = (notification.id.clone(), target.url.clone());
                let due = match progress.get(&slot) {
                    None => true,
                    Some(Progress::RetryAt(at)) => *at <= now,
                    Some(Progress::Queued | Progress::Done) => false,
                };
                if !due {
                    continue;
                }
                progress.insert(slot, Progress::Queued);
                let delivery = Delivery {
                    owner: owner.clone(),
                    target: target.clone(),
                    id: notification.id.clone(),
                    body: body(target.format, &payload),
                    rollout: key.clone(),
                    decided_at: notification.time.0,
                };
                if let Err(refused) = self.queue.try_send(delivery) {
                    let delivery = match refused {
                        mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
                    };
                    self.outcomes.get_or_create(&OutcomeLabel { outcome: "dropped" }).inc();
                    warn!(url = %target.redacted(), "notification queue full; trying again later");
                    full.push(delivery);
                }
            }
        }
        drop(entries);
        for delivery in full {
            self.ledger.mark(&delivery.rollout, &delivery.id, &delivery.target.url, Progress::RetryAt(now + RETRY_AFTER));
        }
    }
}

fn key_of(rollout: &Rollout) -> RolloutKey {
    (rollout.namespace().unwrap_or_default(), rollout.name_any())
}

/// A delivery waiting in a URL's queue, counted against its owner's quota until it is done.
struct Queued {
    delivery: Delivery,
    waiting: Arc<AtomicUsize>,
}

/// Hands each delivery to its URL's task, so a slow URL delays only itself and each URL gets its
/// notifications in order; enforces each owner's quotas.
async fn dispatch(mut received: mpsc::Receiver<Delivery>, egress: Arc<Egress>, outcomes: Family<OutcomeLabel, Counter>, ledger: Ledger) {
    let mut workers: HashMap<(Owner, String), mpsc::Sender<Queued>> = HashMap::new();
    let mut waiting: HashMap<Owner, Arc<AtomicUsize>> = HashMap::new();
    let dropped = |why: &str, delivery: &Delivery| {
        outcomes.get_or_create(&OutcomeLabel { outcome: "dropped" }).inc();
        warn!(url = %delivery.target.redacted(), owner = ?delivery.owner, "notification held back: {why}; trying again later");
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
        let key = (delivery.owner.clone(), delivery.target.url.clone());
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
                tokio::spawn(deliver(queue, egress.clone(), outcomes.clone(), ledger.clone()));
                workers.insert(key.clone(), sender);
            }
            count.fetch_add(1, Ordering::Relaxed);
            match workers[&key].try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(item)) => {
                    count.fetch_sub(1, Ordering::Relaxed);
                    dropped("the queue of this URL is full", &item.delivery);
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
            dropped(&format!("this namespace already has {MAX_URLS_PER_NAMESPACE} webhook URLs being delivered to"), &item.delivery);
        }
    }
}
/// Delivers one URL's notifications in order; ends after [`IDLE`] without one.
async fn deliver(mut queue: mpsc::Receiver<Queued>, egress: Arc<Egress>, outcomes: Family<OutcomeLabel, Counter>, ledger: Ledger) {
    while let Ok(Some(Queued { delivery, waiting })) = tokio::time::timeout(IDLE, queue.recv()).await {
        let outcome = deliver_one(&delivery, &egress).await;
        waiting.fetch_sub(1, Ordering::Relaxed);
        outcomes.get_or_create(&OutcomeLabel { outcome }).inc();
        ledger.finished(&delivery, outcome);
    }
}

async fn deliver_one(delivery: &Delivery, egress: &Egress) -> &'static str {
    let url_text = delivery.target.redacted();
    let Ok(url) = reqwest::Url::parse(&delivery.target.url) else { return "failed" };
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

    /// The outbound policy with loopback listed, as an admin would for local receivers.
    fn loopback() -> Arc<Egress> {
        Arc::new(Egress::new(crate::egress::Policy::new(vec!["127.0.0.1".parse().unwrap()]), None, crate::egress::DEFAULT_MAX_ANSWER))
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
        let closed = Notifier::start(Vec::new(), outcomes.clone(), Arc::new(Egress::new(Default::default(), None, 1 << 20))).0;
        closed.notify(&rollout_in("shop", &[address]), &status(), &[event(EventReason::Promoted, "stable")]);
        let denied = OutcomeLabel { outcome: "denied" };
        wait_until("the loopback URL to be denied", || outcomes.get_or_create(&denied).get() == 1).await;
        assert!(hits.lock().unwrap().is_empty());
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
        let payloads = payloads("shop", "checkout", "uid-1", &status(), &events, now);
        assert_eq!(payloads.len(), 1, "weight changes are not notified");
        assert_eq!(
            body(Format::Json, &payloads[0]),
            serde_json::json!({
                "id": payloads[0].id, "rollout": "checkout", "namespace": "shop", "reason": "Paused", "message": "paused: CanaryPauseStep",
                "revision": "7f9c2", "phase": "Paused", "step": 3, "time": "2026-03-01T10:00:00Z"
            })
        );
    }

    #[test]
    fn the_slack_payload_is_one_line_of_text() {
        let now: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        let named =
            payloads("shop", "checkout", "uid-1", &status(), &[event(EventReason::Aborted, "aborted revision 7f9c2: error rate")], now);
        assert_eq!(
            body(Format::Slack, &named[0]),
            serde_json::json!({"text": "*shop/checkout* Aborted: aborted revision 7f9c2: error rate"}),
            "a message that names its revision is not told it twice"
        );
        let unnamed = payloads("shop", "checkout", "uid-1", &status(), &[event(EventReason::Aborted, "aborted: error rate")], now);
        assert_eq!(
            body(Format::Slack, &unnamed[0]),
            serde_json::json!({"text": "*shop/checkout* Aborted: aborted: error rate (revision 7f9c2)"})
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
        let problem = "ftp://hooks.test/T0/B0/token".parse::<Target>().unwrap_err();
        assert!(!problem.contains("token"), "problems never quote the URL: {problem}");
        let target: Target = "slack+https://hooks.slack.com/services/T0/B0/token?x=1".parse().unwrap();
        assert_eq!(format!("{target:?}"), r#"Target { url: "https://hooks.slack.com", format: Slack }"#);

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
