//! The controller's Prometheus metrics.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub controller: &'static str,
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub reason: String,
}

/// One series per Rollout; `rollout` is empty when the chart drops the label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabel {
    pub namespace: String,
    pub rollout: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabel {
    pub namespace: String,
    pub rollout: String,
    pub outcome: &'static str,
}

/// Lead times and restores run from minutes to weeks.
const DELIVERY_BUCKETS: [f64; 14] =
    [60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0, 345600.0, 604800.0, 1209600.0, 2592000.0];

#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Family<ControllerLabel, Counter>,
    pub failures: Family<ErrorLabel, Counter>,
    pub duration: Family<ControllerLabel, Histogram>,
    pub rollouts: Family<PhaseLabel, Gauge>,
    pub decisions: Family<EventLabel, Counter>,
    pub leader: Gauge,
    pub deployments: Family<DeploymentLabel, Counter>,
    pub lead_time: Family<RolloutLabel, Histogram>,
    pub time_to_restore: Family<RolloutLabel, Histogram>,
    pub notifications: Family<crate::notify::OutcomeLabel, Counter>,
    pub step_delay: Histogram,
    /// Label delivery metrics with the Rollout's name (one series per Rollout), or only its namespace.
    pub per_rollout: bool,
}

impl Metrics {
    pub fn new(registry: &mut Registry, per_rollout: bool) -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 14))),
            rollouts: Family::default(),
            decisions: Family::default(),
            leader: Gauge::default(),
            deployments: Family::default(),
            lead_time: Family::new_with_constructor(|| Histogram::new(DELIVERY_BUCKETS)),
            time_to_restore: Family::new_with_constructor(|| Histogram::new(DELIVERY_BUCKETS)),
            notifications: Family::default(),
            step_delay: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            per_rollout,
        };
        let sluice = registry.sub_registry_with_prefix("sluice");
        sluice.register("reconciles", "Reconcile passes", metrics.reconciles.clone());
        sluice.register("reconcile_errors", "Failed reconcile passes by error category", metrics.failures.clone());
        sluice.register("reconcile_duration_seconds", "Time one reconcile pass takes", metrics.duration.clone());
        sluice.register("rollouts", "Rollouts by phase, as last reconciled", metrics.rollouts.clone());
        sluice.register("decisions", "Engine decisions (step transitions, aborts, promotions) by reason", metrics.decisions.clone());
        sluice.register("leader", "1 while this replica holds the leader lease", metrics.leader.clone());
        sluice.register(
            "deployments",
            "Rollouts of a new revision that ended, by outcome (promoted or aborted)",
            metrics.deployments.clone(),
        );
        sluice.register(
            "lead_time_seconds",
            "From the commit (sluice.dev/commit-time) or the revision's first appearance to Healthy with it",
            metrics.lead_time.clone(),
        );
        sluice.register("time_to_restore_seconds", "From an abort to Healthy again", metrics.time_to_restore.clone());
        sluice.register("notifications", "Webhook notifications by outcome (delivered, failed, dropped)", metrics.notifications.clone());
        sluice.register(
            "step_delay_seconds",
            "From the time the engine asked to look again (a pause or delay ending) to the actions it then decided applied",
            metrics.step_delay.clone(),
        );
        metrics
    }

    pub fn record_delivery(&self, namespace: &str, rollout: &str, observations: &[crate::engine::delivery::Observation]) {
        use crate::engine::delivery::Observation;
        let rollout = if self.per_rollout { rollout.to_string() } else { String::new() };
        let label = RolloutLabel { namespace: namespace.to_string(), rollout };
        for observation in observations {
            match observation {
                Observation::Deployment(outcome) => {
                    let label =
                        DeploymentLabel { namespace: label.namespace.clone(), rollout: label.rollout.clone(), outcome: outcome.label() };
                    self.deployments.get_or_create(&label).inc();
                }
                Observation::LeadTime(took) => self.lead_time.get_or_create(&label).observe(took.as_secs_f64()),
                Observation::TimeToRestore(took) => self.time_to_restore.get_or_create(&label).observe(took.as_secs_f64()),
            }
        }
    }

    pub fn observe(&self, controller: &'static str, took: Duration) {
        self.reconciles.get_or_create(&ControllerLabel { controller }).inc();
        self.duration.get_or_create(&ControllerLabel { controller }).observe(took.as_secs_f64());
    }
}
