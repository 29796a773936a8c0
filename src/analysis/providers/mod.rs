//! Metric providers: each takes one measurement of a metric (Prometheus, CloudWatch metrics,
//! CloudWatch alarms, web) and returns a value for the conditions to judge.
