//! The `sluice.dev/v1alpha1` API: Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun.

// Several `printcolumn(type_ = ...)` attributes read as duplicates to clippy; they are distinct columns.
#![allow(clippy::duplicated_attributes)]

mod analysis;
pub mod crd;
mod duration;
mod kinds;
mod rollout;
mod templated;

pub use analysis::*;
pub use duration::{DURATION_PATTERN, DurationString, InvalidDuration, MAX_DURATION, format_duration, parse_duration};
pub use kinds::{CanaryScale, NotExactlyOne, StepKind, StrategyKind, WorkloadKind};
pub use rollout::*;
pub use templated::{ARG_REFERENCE_PATTERN, IntOrArg};
