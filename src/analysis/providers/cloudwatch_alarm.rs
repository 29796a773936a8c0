//! CloudWatch alarms: DescribeAlarms by name; the value is the state as a string (`OK`, `ALARM`).
//! INSUFFICIENT_DATA is no data (never success); an alarm that does not exist is an error.

use aws_sdk_cloudwatch::types::{AlarmType, StateValue};

use super::ProviderError;
use super::cloudwatch::{Clients, aws_error};
use crate::analysis::condition::MeasuredValue;
use crate::api::CloudWatchAlarmMetric;

pub async fn measure(clients: &Clients, spec: &CloudWatchAlarmMetric) -> Result<MeasuredValue, ProviderError> {
    let client = clients.client(spec.region.as_deref());
    let what = format!("CloudWatch alarm {}", spec.alarm_name);
    let output = client
        .describe_alarms()
        .alarm_names(&spec.alarm_name)
        .alarm_types(AlarmType::MetricAlarm)
        .alarm_types(AlarmType::CompositeAlarm)
        .send()
        .await
        .map_err(|e| aws_error(&what, e))?;
    let metric = output.metric_alarms().iter().find(|a| a.alarm_name() == Some(spec.alarm_name.as_str())).map(|a| a.state_value());
    let composite = output.composite_alarms().iter().find(|a| a.alarm_name() == Some(spec.alarm_name.as_str())).map(|a| a.state_value());
    let Some(state) = metric.or(composite) else {
        let region = spec.region.clone().or_else(|| client.config().region().map(|r| r.to_string()));
        return Err(ProviderError::NotFound(format!(
            "alarm {} not found{}; check provider.cloudWatchAlarm.alarmName and region",
            spec.alarm_name,
            region.map(|r| format!(" in region {r}")).unwrap_or_default()
        )));
    };
    Ok(match state {
        None | Some(StateValue::InsufficientData) => MeasuredValue::NoData,
        Some(state) => MeasuredValue::Json(serde_json::Value::String(state.as_str().to_string())),
    })
}
