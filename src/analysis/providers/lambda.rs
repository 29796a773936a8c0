//! AWS Lambda functions called the way ECS and CodeDeploy call lifecycle hooks: the function
//! answers a `hookStatus`, and IN_PROGRESS has it called again after its `callBackDelay`, given
//! back the `hookDetails` it answered, until the metric's timeout. The value judged is the
//! function's whole answer (a TIMED_OUT status when it ran out of time).

use std::time::Duration;

use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_lambda::primitives::Blob;
use serde_json::{Map, Value, json};

use super::ProviderError;
use crate::analysis::condition::MeasuredValue;
use crate::api::{LambdaMetric, format_duration};
use crate::ports::Measuring;

/// How long a function may answer IN_PROGRESS when the metric sets no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The wait before calling again when an IN_PROGRESS answer names no `callBackDelay`, as in ECS.
pub const DEFAULT_CALLBACK_DELAY: Duration = Duration::from_secs(30);
/// The longest one invocation may take: Lambda's own limit for a function.
pub const MAX_INVOCATION: Duration = Duration::from_secs(900);
/// The most of an answer read; a hook answers a status, not data.
const MAX_ANSWER: usize = 256 * 1024;

/// Lambda clients: the default region's, and one per region a function's ARN names. A call may
/// take as long as Lambda lets a function run, and is not retried once it timed out, so a slow
/// function is never invoked twice by one measurement.
pub struct Clients(crate::aws::Regional<aws_sdk_lambda::Client>);

impl Clients {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self(crate::aws::Regional::new(config, |config| {
            let timeouts = crate::aws::Timeouts { operation: MAX_INVOCATION, attempt: MAX_INVOCATION, ..Default::default() };
            let config = aws_sdk_lambda::config::Builder::from(config).timeout_config(timeouts.config()).build();
            aws_sdk_lambda::Client::from_conf(config)
        }))
    }
}

/// The region of a function ARN (`arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`).
pub fn region_of(arn: &str) -> Result<&str, ProviderError> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", region, _, "function", name] if !region.is_empty() && !name.is_empty() => Ok(region),
        _ => Err(ProviderError::Config(format!(
            "provider.lambda.functionArn `{arn}` is not a function ARN: write arn:aws:lambda:REGION:ACCOUNT:function:NAME"
        ))),
    }
}

/// The timeout of the whole measurement, IN_PROGRESS answers included.
pub fn timeout_of(spec: &LambdaMetric) -> Result<Duration, ProviderError> {
    match &spec.timeout {
        None => Ok(DEFAULT_TIMEOUT),
        Some(d) => d.to_duration().map_err(|e| ProviderError::Config(format!("provider.lambda.timeout: {e}"))),
    }
}

/// What the function is given: where it is called from, the run's arguments (the built-in
/// `sluice.*` revisions, target groups and stage among them), the metric's details, and the
/// `hookDetails` of its last IN_PROGRESS answer.
pub fn payload(at: &Measuring<'_>, metric: &str, spec: &LambdaMetric) -> Value {
    let args: Map<String, Value> =
        at.args.iter().filter_map(|a| a.value.as_ref().map(|v| (a.name.clone(), Value::String(v.clone())))).collect();
    let mut payload = json!({
        "namespace": at.namespace,
        "analysisRun": at.run,
        "metric": metric,
        "measurement": at.number,
        "args": args,
        "details": spec.details,
    });
    if let Some(carried) = at.resumed.as_ref().and_then(|r| r.carried.clone()) {
        payload["hookDetails"] = carried;
    }
    payload
}

pub async fn measure(clients: &Clients, at: &Measuring<'_>, metric: &str, spec: &LambdaMetric) -> Result<MeasuredValue, ProviderError> {
    let function = spec.function_arn.as_str();
    let region = region_of(function)?;
    let timeout = timeout_of(spec)?;
    let waited = Duration::try_from(at.now.duration_since(at.since())).unwrap_or_default();
    if waited >= timeout {
        return Ok(MeasuredValue::Json(json!({
            "hookStatus": "TIMED_OUT",
            "reason": format!("{function} answered IN_PROGRESS for {}, past provider.lambda.timeout", format_duration(waited)),
        })));
    }
    let body = serde_json::to_vec(&payload(at, metric, spec)).expect("payload serializes");
    let what = format!("Lambda Invoke of {function}");
    let output = clients
        .0
        .client(Some(region))
        .invoke()
        .function_name(function)
        .payload(Blob::new(body))
        .send()
        .await
        .map_err(|e| invoke_error(&what, e))?;
    let answer = output.payload().map(|p| p.as_ref()).unwrap_or_default();
    if answer.len() > MAX_ANSWER {
        return Err(ProviderError::Response(format!("{what}: answer larger than {}", crate::text::size(MAX_ANSWER))));
    }
    let text = String::from_utf8_lossy(answer);
    if let Some(kind) = output.function_error() {
        return Err(ProviderError::Response(format!("{what}: the function failed ({kind}): {}", super::excerpt(&text))));
    }
    judge_answer(&what, &text, timeout.saturating_sub(waited))
}

/// The function's answer as a measured value: SUCCEEDED and FAILED are final, IN_PROGRESS is
/// taken up again after its delay (at most what is left of the timeout).
pub fn judge_answer(what: &str, text: &str, left: Duration) -> Result<MeasuredValue, ProviderError> {
    let answer: Value = serde_json::from_str(text)
        .map_err(|e| ProviderError::Response(format!("{what}: the answer is not JSON ({e}): {}", super::excerpt(text))))?;
    let status = answer.get("hookStatus").and_then(Value::as_str);
    match status {
        Some("SUCCEEDED" | "FAILED") => Ok(MeasuredValue::Json(answer)),
        Some("IN_PROGRESS") => {
            let asked = answer.get("callBackDelay").and_then(Value::as_f64).filter(|d| d.is_finite() && *d >= 0.0);
            let delay = asked.map_or(DEFAULT_CALLBACK_DELAY, |seconds| Duration::from_secs_f64(seconds.min(MAX_INVOCATION.as_secs_f64())));
            let retry_after = delay.min(left).max(Duration::from_secs(1));
            let note = format!("{what} answered IN_PROGRESS; called again in {}", format_duration(retry_after));
            Ok(MeasuredValue::InProgress { retry_after, carried: answer.get("hookDetails").cloned(), note })
        }
        _ => Err(ProviderError::Response(format!(
            "{what}: the answer has no hookStatus of SUCCEEDED, FAILED or IN_PROGRESS: {}",
            super::excerpt(text)
        ))),
    }
}

fn invoke_error<E, R>(what: &str, error: aws_sdk_lambda::error::SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = error.code().unwrap_or_default().to_string();
    let detail = DisplayErrorContext(&error).to_string();
    match code.as_str() {
        "ResourceNotFoundException" => ProviderError::NotFound(format!("{what}: no such function; check provider.lambda.functionArn")),
        "AccessDeniedException" | "AccessDenied" => {
            ProviderError::Denied(format!("{what}: the controller may not invoke it (lambda:InvokeFunction): {detail}"))
        }
        "" => ProviderError::Unreachable(format!("{what}: {detail}")),
        _ => ProviderError::Query(format!("{what}: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEFT: Duration = Duration::from_secs(600);

    #[test]
    fn a_function_arn_names_its_region() {
        assert_eq!(region_of("arn:aws:lambda:eu-west-1:123456789012:function:smoke").unwrap(), "eu-west-1");
        assert_eq!(region_of("arn:aws:lambda:eu-west-1:123456789012:function:smoke:live").unwrap(), "eu-west-1");
        for wrong in ["smoke", "arn:aws:sns:eu-west-1:1:topic", "arn:aws:lambda::1:function:smoke", "arn:aws:lambda:eu-west-1:1:function:"]
        {
            assert!(matches!(region_of(wrong), Err(ProviderError::Config(_))), "{wrong}");
        }
    }

    #[test]
    fn final_answers_are_judged_and_in_progress_waits_its_delay() {
        let succeeded = judge_answer("f", r#"{"hookStatus": "SUCCEEDED"}"#, LEFT).unwrap();
        assert_eq!(succeeded, MeasuredValue::Json(json!({"hookStatus": "SUCCEEDED"})));
        let waiting = judge_answer("f", r#"{"hookStatus": "IN_PROGRESS", "callBackDelay": 5, "hookDetails": {"step": 2}}"#, LEFT).unwrap();
        let MeasuredValue::InProgress { retry_after, carried, note } = waiting else { panic!("in progress: {waiting:?}") };
        assert_eq!(retry_after, Duration::from_secs(5));
        assert_eq!(carried, Some(json!({"step": 2})));
        assert!(note.contains("called again in 5s"), "{note}");
        let default = judge_answer("f", r#"{"hookStatus": "IN_PROGRESS"}"#, LEFT).unwrap();
        assert!(matches!(default, MeasuredValue::InProgress { retry_after, .. } if retry_after == DEFAULT_CALLBACK_DELAY));
        let near_the_end = judge_answer("f", r#"{"hookStatus": "IN_PROGRESS", "callBackDelay": 60}"#, Duration::from_secs(3)).unwrap();
        assert!(matches!(near_the_end, MeasuredValue::InProgress { retry_after, .. } if retry_after == Duration::from_secs(3)));
    }

    #[test]
    fn an_answer_without_a_hook_status_is_an_error_that_quotes_it() {
        for wrong in [r#"{"status": "ok"}"#, r#"{"hookStatus": "DONE"}"#, "ok", "null"] {
            let error = judge_answer("f", wrong, LEFT).unwrap_err();
            assert_eq!(error.category(), "response", "{wrong}");
        }
        let error = judge_answer("f", r#"{"hookStatus": "DONE"}"#, LEFT).unwrap_err();
        assert!(error.to_string().contains("SUCCEEDED, FAILED or IN_PROGRESS") && error.to_string().contains("DONE"), "{error}");
    }
}
