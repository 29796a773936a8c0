//! CloudWatch metrics: GetMetricData over `window` ending at `now`, with the metric's
//! metricDataQueries. The value is the series of the first query that returns data: one
//! datapoint gives a number, several a vector in time order (oldest first), none no data.

use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{self as cw, ScanBy, StandardUnit, StatusCode};
use jiff::{SignedDuration, Timestamp};

use super::ProviderError;
use crate::analysis::condition::MeasuredValue;
use crate::api::{CloudWatchMetric, MetricDataQuery};

/// Pages of GetMetricData read for one measurement at most.
const MAX_PAGES: usize = 20;

/// CloudWatch clients: the default region's, and one per other region a metric names.
pub struct Clients(crate::aws::Regional<aws_sdk_cloudwatch::Client>);

impl Clients {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self(crate::aws::Regional::new(config, aws_sdk_cloudwatch::Client::new))
    }

    pub fn client(&self, region: Option<&str>) -> aws_sdk_cloudwatch::Client {
        self.0.client(region)
    }

    pub async fn measure(&self, spec: &CloudWatchMetric, now: Timestamp) -> Result<MeasuredValue, ProviderError> {
        let window = spec.window.to_duration().map_err(|e| ProviderError::Config(format!("provider.cloudWatch.window: {e}")))?;
        let Some(wanted) = spec.metric_data_queries.iter().find(|q| q.return_data != Some(false)) else {
            return Err(ProviderError::Config(
                "provider.cloudWatch: every metricDataQuery has returnData: false; let one return data".into(),
            ));
        };
        let start = now - SignedDuration::try_from(window).unwrap_or(SignedDuration::ZERO);
        let queries: Vec<cw::MetricDataQuery> = spec.metric_data_queries.iter().map(query).collect();
        let client = self.client(spec.region.as_deref());
        let what = format!("CloudWatch GetMetricData (query {})", wanted.id);

        let mut points: Vec<(DateTime, f64)> = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let output = client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(DateTime::from_millis(start.as_millisecond()))
                .end_time(DateTime::from_millis(now.as_millisecond()))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| aws_error(&what, e))?;
            for result in output.metric_data_results().iter().filter(|r| r.id() == Some(wanted.id.as_str())) {
                if let Some(status @ (StatusCode::InternalError | StatusCode::Forbidden)) = result.status_code() {
                    let messages: Vec<String> =
                        result.messages().iter().map(|m| format!("{}: {}", m.code().unwrap_or("-"), m.value().unwrap_or(""))).collect();
                    return Err(ProviderError::Query(format!("{what}: status {status}: {}", messages.join("; "))));
                }
                points.extend(result.timestamps().iter().copied().zip(result.values().iter().copied()));
            }
            next_token = output.next_token().map(str::to_string);
            if next_token.is_none() {
                break;
            }
        }
        points.sort_by_key(|(at, _)| (at.secs(), at.subsec_nanos()));
        let values: Vec<f64> = points.into_iter().map(|(_, v)| v).filter(|v| v.is_finite()).collect();
        Ok(match values.as_slice() {
            [] => MeasuredValue::NoData,
            [one] => MeasuredValue::scalar(*one),
            _ => MeasuredValue::vector(values),
        })
    }
}

fn query(spec: &MetricDataQuery) -> cw::MetricDataQuery {
    let metric_stat = spec.metric_stat.as_ref().map(|stat| {
        let dimensions = stat.dimensions.iter().map(|d| cw::Dimension::builder().name(&d.name).value(&d.value).build()).collect();
        cw::MetricStat::builder()
            .metric(
                cw::Metric::builder().namespace(&stat.namespace).metric_name(&stat.metric_name).set_dimensions(Some(dimensions)).build(),
            )
            .period(stat.period)
            .stat(&stat.stat)
            .set_unit(stat.unit.as_deref().map(StandardUnit::from))
            .build()
    });
    cw::MetricDataQuery::builder()
        .id(&spec.id)
        .set_expression(spec.expression.clone())
        .set_metric_stat(metric_stat)
        .set_return_data(spec.return_data)
        .build()
}

/// An AWS SDK failure as a provider error.
pub fn aws_error<E, R>(what: &str, error: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            ProviderError::Query(format!("{what}: {}: {}", err.code().unwrap_or("error"), err.message().unwrap_or("no message")))
        }
        SdkError::TimeoutError(_) => ProviderError::Timeout(format!("{what}: timed out: {}", DisplayErrorContext(&error))),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            ProviderError::Timeout(format!("{what}: timed out: {}", DisplayErrorContext(&error)))
        }
        SdkError::DispatchFailure(failure) if failure.is_io() => ProviderError::Unreachable(format!(
            "{what}: cannot reach the AWS endpoint: {}; check the network and AWS_ENDPOINT_URL",
            DisplayErrorContext(&error)
        )),
        SdkError::ConstructionFailure(_) => ProviderError::Config(format!(
            "{what}: the request cannot be built: {}; is a region set (the metric's region, or AWS_REGION)?",
            DisplayErrorContext(&error)
        )),
        _ => ProviderError::Unreachable(format!("{what}: {}", DisplayErrorContext(&error))),
    }
}
