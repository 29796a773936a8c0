//! A scenario: what happens around a rollout while it is simulated.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::world::{MetricSource, Sample};
use crate::api::{DurationString, RolloutSpec};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// The version running before the simulation starts (image, or ECS task definition).
    /// Default: the rollout's version with `-previous` appended.
    #[serde(default)]
    pub stable_version: Option<String>,
    /// Time for a new pod or task to become ready (default 10s).
    #[serde(default)]
    pub ready_after: Option<DurationString>,
    /// Stop after this long (default 2h).
    #[serde(default)]
    pub until: Option<DurationString>,
    /// Values each metric reads over time, by metric name. A metric not listed has no data.
    #[serde(default)]
    pub metrics: BTreeMap<String, Vec<MetricPoint>>,
    /// New versions applied to the spec while the rollout runs.
    #[serde(default)]
    pub updates: Vec<VersionUpdate>,
    /// What people do, and when.
    #[serde(default)]
    pub commands: Vec<CommandAt>,
}

/// From `at` on, the metric reads `value` (or no data, or an error).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricPoint {
    pub at: DurationString,
    /// A number, or a string such as an alarm state (`ALARM`, `OK`).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    #[serde(default)]
    pub no_data: bool,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionUpdate {
    pub at: DurationString,
    pub version: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandAt {
    pub at: DurationString,
    pub command: Command,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Command {
    Promote,
    PromoteFull,
    Abort,
    Retry,
    Pause,
    Resume,
}

/// Replays the scenario's metric points.
pub struct ScriptedMetrics {
    points: BTreeMap<String, Vec<(Duration, Sample)>>,
}

impl ScriptedMetrics {
    pub fn new(scenario: &Scenario) -> Result<Self, String> {
        let mut points = BTreeMap::new();
        for (metric, series) in &scenario.metrics {
            let mut parsed = Vec::new();
            for point in series {
                let at = point.at.to_duration().map_err(|e| format!("metric {metric}: {e}"))?;
                let sample = match (&point.value, point.no_data, &point.error) {
                    (Some(v), false, None) => Sample::Value(match v {
                        serde_json::Value::Number(n) => serde_json::json!(n.as_f64().unwrap_or_default()),
                        other => other.clone(),
                    }),
                    (None, true, None) => Sample::NoData,
                    (None, false, Some(e)) => Sample::Error(e.clone()),
                    _ => return Err(format!("metric {metric} at {}: give exactly one of value, noData: true or error", point.at.0)),
                };
                parsed.push((at, sample));
            }
            parsed.sort_by_key(|(at, _)| *at);
            points.insert(metric.clone(), parsed);
        }
        Ok(Self { points })
    }
}

impl MetricSource for ScriptedMetrics {
    fn sample(&mut self, metric: &str, elapsed: Duration) -> Sample {
        self.points
            .get(metric)
            .and_then(|series| series.iter().rev().find(|(at, _)| *at <= elapsed))
            .map_or(Sample::NoData, |(_, sample)| sample.clone())
    }
}

/// The version a spec runs: the first container's image, or the ECS task definition.
pub fn version_of(spec: &RolloutSpec) -> String {
    if let Some(ecs) = &spec.workload.ecs {
        return ecs.task_definition.clone();
    }
    spec.workload
        .kubernetes
        .as_ref()
        .and_then(|k| k.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// The same spec running another version.
pub fn with_version(spec: &RolloutSpec, version: &str) -> RolloutSpec {
    let mut spec = spec.clone();
    if let Some(ecs) = &mut spec.workload.ecs {
        ecs.task_definition = version.to_string();
    }
    if let Some(container) = spec.workload.kubernetes.as_mut().and_then(|k| k.template.spec.as_mut()).and_then(|p| p.containers.first_mut())
    {
        container.image = Some(version.to_string());
    }
    spec
}
