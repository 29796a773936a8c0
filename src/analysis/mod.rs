//! Measurements: how a metric's value is judged (`condition`, `judge`), the verdict rules over
//! measurements (`verdict`) and how runs record them (`run`), all pure; the providers that take
//! them (Prometheus, CloudWatch, web) live beside these.

pub mod condition;
pub mod field_ref;
pub mod judge;
pub mod providers;
pub mod run;
pub mod verdict;
