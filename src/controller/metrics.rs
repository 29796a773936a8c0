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

#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Family<ControllerLabel, Counter>,
    pub failures: Family<ErrorLabel, Counter>,
    pub duration: Family<ControllerLabel, Histogram>,
    pub rollouts: Family<PhaseLabel, Gauge>,
    pub decisions: Family<EventLabel, Counter>,
    pub leader: Gauge,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 14))),
            rollouts: Family::default(),
            decisions: Family::default(),
            leader: Gauge::default(),
        };
        let sluice = registry.sub_registry_with_prefix("sluice");
        sluice.register("reconciles", "Reconcile passes", metrics.reconciles.clone());
        sluice.register("reconcile_errors", "Failed reconcile passes by error category", metrics.failures.clone());
        sluice.register("reconcile_duration_seconds", "Time one reconcile pass takes", metrics.duration.clone());
        sluice.register("rollouts", "Rollouts by phase, as last reconciled", metrics.rollouts.clone());
        sluice.register("decisions", "Engine decisions (step transitions, aborts, promotions) by reason", metrics.decisions.clone());
        sluice.register("leader", "1 while this replica holds the leader lease", metrics.leader.clone());
        metrics
    }

    pub fn observe(&self, controller: &'static str, took: Duration) {
        self.reconciles.get_or_create(&ControllerLabel { controller }).inc();
        self.duration.get_or_create(&ControllerLabel { controller }).observe(took.as_secs_f64());
    }
}
