//! The `sluice.dev/v1alpha1` API: Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun.

mod analysis;
pub mod crd;
mod duration;
mod rollout;

pub use analysis::*;
pub use duration::{DURATION_PATTERN, DurationString, InvalidDuration, format_duration, parse_duration};
pub use rollout::*;
