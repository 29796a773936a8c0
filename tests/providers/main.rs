//! Metric providers against the real local stack: Prometheus fed by remote write, moto's
//! CloudWatch through the real AWS SDK, Secrets in the real API server, and local HTTP servers
//! started (and stopped) by the tests. Starts its own stack unless one is attached through the
//! environment (`eval "$(e2e/stack up)"`), and stops what it started, also when a test fails.

#[path = "../support/mod.rs"]
mod support;

mod cbor;
mod cloudwatch;
mod common;
mod egress;
mod judge;
mod prometheus;
mod web;

use std::sync::Arc;

use support::Stack;

fn main() -> std::process::ExitCode {
    let all = tests![
        prometheus::a_low_value_succeeds,
        prometheus::a_high_value_fails,
        prometheus::between_the_conditions_is_inconclusive,
        prometheus::no_series_is_no_data,
        prometheus::a_range_query_gives_a_vector,
        prometheus::an_unreachable_server_is_an_error,
        prometheus::errors_in_a_row_beyond_the_limit_err_the_metric,
        prometheus::a_server_that_never_answers_times_out,
        prometheus::a_refused_query_says_why,
        prometheus::the_auth_header_comes_from_a_secret,
        cloudwatch::put_metric_data_is_measured,
        cloudwatch::an_alarm_in_alarm_fails_the_metric,
        cloudwatch::an_alarm_without_data_is_inconclusive,
        cloudwatch::an_unknown_alarm_is_an_error,
        web::a_json_path_picks_the_value,
        web::a_header_comes_from_a_secret,
        web::a_failing_status_is_an_error,
        web::a_post_sends_its_body,
        web::a_server_that_never_answers_times_out,
        judge::a_regression_fails_and_an_equal_canary_passes,
        judge::sparse_errors_fail_as_proportions,
        judge::too_few_samples_is_no_data,
        judge::the_api_server_enforces_the_judge_rules,
        egress::loopback_is_denied_by_default_and_allowed_when_listed,
        egress::a_namespace_annotation_extends_the_allowed_hosts,
        egress::link_local_and_metadata_addresses_are_denied,
        egress::a_redirect_is_not_followed,
        egress::an_answer_over_the_limit_is_refused,
        egress::a_huge_value_is_judged_whole_and_stored_cut,
        egress::a_secret_is_read_only_once_offered,
        egress::a_hand_made_analysis_run_is_not_measured,
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let stack = Arc::new(Stack::start_or_attach());
    let (passed, failed) = support::run_tests(&runtime, stack.clone(), all, |_| {});
    stack.down();
    support::summary("providers", passed, failed)
}
