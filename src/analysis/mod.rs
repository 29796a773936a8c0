//! Measurements: how a metric's value is judged. Providers (Prometheus, CloudWatch, web) live
//! beside this; the verdict rules over measurements are in `engine::analysis`.

pub mod condition;
pub mod judge;
pub mod providers;
pub mod run;
