use std::sync::Arc;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricDatum, StateValue, Statistic};
use jiff::Timestamp;
use sluice::analysis::condition::MeasuredValue;
use sluice::api::{
    AnalysisPhase, CloudWatchAlarmMetric, CloudWatchMetric, Metric, MetricDataQuery, MetricDimension, MetricProvider, MetricStat,
};

use crate::common::{Run, Server, unique};
use crate::support::Stack;
use crate::support::cbor;

/// The real SDK, reaching moto through the protocol bridge (see `cbor.rs`); keep the server alive.
struct CloudWatch {
    client: aws_sdk_cloudwatch::Client,
    providers: sluice::analysis::providers::Providers,
    _bridge: Server,
}

async fn cloudwatch(stack: &Stack) -> CloudWatch {
    let bridge = cbor::bridge(&stack.aws_endpoint).await;
    let aws = stack.aws().to_builder().endpoint_url(&bridge.address).build();
    let egress = sluice::egress::Egress::new(Default::default(), None, sluice::egress::DEFAULT_MAX_ANSWER);
    let providers = sluice::analysis::providers::Providers::new(&aws, Some(stack.kube().await), std::sync::Arc::new(egress));
    CloudWatch { client: aws_sdk_cloudwatch::Client::new(&aws), providers, _bridge: bridge }
}

fn metric_stat(namespace: &str, service: &str) -> Metric {
    Metric {
        name: "error-rate".into(),
        success_condition: Some("result < 0.5".into()),
        provider: MetricProvider {
            cloud_watch: Some(CloudWatchMetric {
                window: "10m".into(),
                metric_data_queries: vec![MetricDataQuery {
                    id: "errors".into(),
                    metric_stat: Some(MetricStat {
                        namespace: namespace.into(),
                        metric_name: "ErrorRate".into(),
                        dimensions: vec![MetricDimension { name: "Service".into(), value: service.into() }],
                        period: 60,
                        stat: "Average".into(),
                        unit: None,
                    }),
                    ..Default::default()
                }],
                region: None,
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

register_test!(110, put_metric_data_is_measured);
pub async fn put_metric_data_is_measured(stack: Arc<Stack>) {
    let cw = cloudwatch(&stack).await;
    let (client, providers) = (&cw.client, &cw.providers);
    // moto matches a query with dimensions by metric name and dimensions, not namespace: keep
    // the dimension unique too, so samples of earlier runs stay out.
    let namespace = format!("Sluice/{}", unique("test"));
    let service = unique("checkout");
    let at = Timestamp::now().as_millisecond() - 90_000;
    client
        .put_metric_data()
        .namespace(&namespace)
        .metric_data(
            MetricDatum::builder()
                .metric_name("ErrorRate")
                .dimensions(Dimension::builder().name("Service").value(&service).build())
                .value(0.42)
                .timestamp(DateTime::from_millis(at))
                .build(),
        )
        .send()
        .await
        .expect("PutMetricData");
    let mut run = Run::of(metric_stat(&namespace, &service));
    let value = run.measure(providers, "default").await.expect("measured");
    assert_eq!(value, MeasuredValue::scalar(0.42));
    assert_eq!(run.status.phase, AnalysisPhase::Successful, "{:?}", run.status.message);

    // Several periods with data: a vector, oldest first.
    let series = unique("series");
    let datum = |value: f64, ago_ms: i64| {
        MetricDatum::builder()
            .metric_name("ErrorRate")
            .dimensions(Dimension::builder().name("Service").value(&series).build())
            .value(value)
            .timestamp(DateTime::from_millis(Timestamp::now().as_millisecond() - ago_ms))
            .build()
    };
    let put = client.put_metric_data().namespace(&namespace).metric_data(datum(0.3, 30_000)).metric_data(datum(0.1, 150_000));
    put.send().await.expect("PutMetricData");
    let value = Run::of(metric_stat(&namespace, &series)).measure(providers, "default").await.expect("measured");
    assert_eq!(value, MeasuredValue::vector(vec![0.1, 0.3]));

    // Nothing under another dimension value: no data, never success.
    let other = metric_stat(&namespace, &unique("cart"));
    let mut run = Run::of(other);
    assert_eq!(run.measure(providers, "default").await, Ok(MeasuredValue::NoData));
    assert_eq!(run.status.phase, AnalysisPhase::Inconclusive);
}

fn alarm_metric(name: &str, region: Option<&str>) -> Metric {
    Metric {
        name: "alarm".into(),
        provider: MetricProvider {
            cloud_watch_alarm: Some(CloudWatchAlarmMetric { alarm_name: name.into(), region: region.map(str::to_string) }),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn alarm(client: &aws_sdk_cloudwatch::Client) -> String {
    let name = unique("checkout-5xx");
    client
        .put_metric_alarm()
        .alarm_name(&name)
        .namespace("Sluice/Test")
        .metric_name("Errors")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("PutMetricAlarm");
    name
}

register_test!(120, an_alarm_in_alarm_fails_the_metric);
pub async fn an_alarm_in_alarm_fails_the_metric(stack: Arc<Stack>) {
    let cw = cloudwatch(&stack).await;
    let (client, providers) = (&cw.client, &cw.providers);
    let name = alarm(client).await;
    for (state, phase) in [(StateValue::Ok, AnalysisPhase::Successful), (StateValue::Alarm, AnalysisPhase::Failed)] {
        client.set_alarm_state().alarm_name(&name).state_value(state.clone()).state_reason("test").send().await.expect("SetAlarmState");
        let mut run = Run::of(alarm_metric(&name, None));
        let value = run.measure(providers, "default").await.expect("measured");
        assert_eq!(value, MeasuredValue::Json(serde_json::json!(state.as_str())));
        assert_eq!(run.status.phase, phase, "{:?}", run.status.message);
    }
    let mut run = Run::of(alarm_metric(&name, None));
    run.measure(providers, "default").await.expect("measured");
    let message = run.status.message.clone().unwrap_or_default();
    assert!(message.contains(r#"last value "ALARM""#), "the message shows the alarm state: {message}");
}

register_test!(130, an_alarm_without_data_is_inconclusive);
pub async fn an_alarm_without_data_is_inconclusive(stack: Arc<Stack>) {
    let cw = cloudwatch(&stack).await;
    let name = alarm(&cw.client).await;
    let insufficient = cw.client.set_alarm_state().alarm_name(&name).state_value(StateValue::InsufficientData).state_reason("test");
    insufficient.send().await.expect("SetAlarmState");
    let mut run = Run::of(alarm_metric(&name, None));
    let value = run.measure(&cw.providers, "default").await.expect("measured");
    assert_eq!(value, MeasuredValue::NoData, "INSUFFICIENT_DATA is no data");
    assert_eq!(run.status.phase, AnalysisPhase::Inconclusive);
}

register_test!(140, an_unknown_alarm_is_an_error);
pub async fn an_unknown_alarm_is_an_error(stack: Arc<Stack>) {
    let cw = cloudwatch(&stack).await;
    let providers = &cw.providers;
    let missing = unique("no-such-alarm");
    let mut run = Run::of(alarm_metric(&missing, None));
    let error = run.measure(providers, "default").await.unwrap_err();
    assert_eq!(error.category(), "not-found");
    assert!(error.to_string().starts_with(&format!("alarm {missing} not found in region us-east-1")), "{error}");
    assert_eq!(run.last_phase(), AnalysisPhase::Error);

    // An alarm of another region is not found through the metric's region.
    let name = alarm(&cw.client).await;
    let error = Run::of(alarm_metric(&name, Some("eu-west-1"))).measure(providers, "default").await.unwrap_err();
    assert!(error.to_string().contains("not found in region eu-west-1"), "{error}");
}
